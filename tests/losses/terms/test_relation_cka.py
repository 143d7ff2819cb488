"""Relation-CKA (fsdkit.losses.terms.relation_cka) against docs/math.md: golden value, NumPy reference,
uncentred form, padding invariance, float64 gradients, option errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from baseline_helpers import ctx, feats, pad
from fsdkit.errors import ConfigError
from fsdkit.losses import build_term
from fsdkit.losses.similarities import linear_cka


def np_alignment(x: np.ndarray, y: np.ndarray) -> float:
    k, lam = x @ x.T, y @ y.T
    return float(np.sum(k * lam) / np.linalg.norm(k) / np.linalg.norm(lam))


def test_relation_cka_golden_value():
    """Z_S = I, Z_T = [[1, 0], [1, 0]]: B × B Grams I and 11ᵀ → 2/(√2·2); C × C Grams I and diag(2, 0) → same.
    Loss = 2·(1 − 1/√2) = 0.585786 (feature part off)."""
    term = build_term("relation_cka", ctx(), {"feature_weight": 0})
    zero = torch.zeros(2, 1, 4)
    value = term(feats(zero, logits=torch.eye(2)), feats(zero, logits=torch.tensor([[1.0, 0.0], [1.0, 0.0]])), {})
    assert value.item() == pytest.approx(2 * (1 - 2**-0.5), rel=1e-6)
    assert not term.request().hidden_states


@pytest.fixture
def relation_batch():
    g = torch.Generator().manual_seed(8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    return SimpleNamespace(
        mask=mask,
        hs=torch.randn(4, 4, 6, generator=g, dtype=torch.float64),
        ht=torch.randn(4, 4, 5, generator=g, dtype=torch.float64),
        zs=torch.randn(4, 3, generator=g, dtype=torch.float64),
        zt=torch.randn(4, 3, generator=g, dtype=torch.float64),
    )


def test_relation_cka_equals_numpy_reference(relation_batch):
    r = relation_batch
    term = build_term("relation_cka", ctx(), {"feature_weight": 2.0, "intra_weight": 0.5, "inter_weight": 3.0})
    value = term(feats(r.hs, r.mask, logits=r.zs), feats(r.ht, r.mask, logits=r.zt), {}).item()
    m = r.mask.numpy()[..., None]
    f_s, f_t = (r.hs.numpy() * m).reshape(4, -1), (r.ht.numpy() * m).reshape(4, -1)
    zs, zt = r.zs.numpy(), r.zt.numpy()
    expected = 2 * (1 - np_alignment(f_s, f_t)) + 0.5 * (1 - np_alignment(zs, zt)) + 3 * (1 - np_alignment(zs.T, zt.T))
    assert value == pytest.approx(expected, rel=1e-10)


def test_relation_cka_is_uncentred(relation_batch):
    """Unlike (centred) CKA, the alignment changes when a constant is added to every row."""
    r = relation_batch
    term = build_term("relation_cka", ctx(), {"intra_weight": 0, "inter_weight": 0, "pooling": "cls"})
    base = term(feats(r.hs, logits=r.zs), feats(r.ht, logits=r.zt), {}).item()
    shifted = term(feats(r.hs + 3.0, logits=r.zs), feats(r.ht, logits=r.zt), {}).item()
    assert base == pytest.approx(1 - np_alignment(r.hs[:, 0].numpy(), r.ht[:, 0].numpy()), rel=1e-10)
    assert abs(shifted - base) > 1e-3
    cka = linear_cka(r.hs[:, 0], r.ht[:, 0]).item()
    assert linear_cka(r.hs[:, 0] + 3.0, r.ht[:, 0]).item() == pytest.approx(cka, rel=1e-10)


def test_relation_cka_ignores_padding_and_gradcheck(relation_batch):
    r = relation_batch
    term = build_term("relation_cka", ctx(), {})
    base = term(feats(r.hs, r.mask, logits=r.zs), feats(r.ht, r.mask, logits=r.zt), {}).item()
    padded = term(
        feats(pad(r.hs, 3, [1], 8.0), pad(r.mask, 3, [1], 0), logits=r.zs),
        feats(pad(r.ht, 3, [1], -2.0), pad(r.mask, 3, [1], 0), logits=r.zt),
        {},
    ).item()
    assert padded == pytest.approx(base, rel=1e-12)
    hs, zs = r.hs.clone().requires_grad_(True), r.zs.clone().requires_grad_(True)
    assert gradcheck(
        lambda h, z: term(feats(h, r.mask, logits=z), feats(r.ht, r.mask, logits=r.zt), {}),
        (hs, zs),
        eps=1e-6,
        atol=1e-6,
    )


def test_relation_cka_option_errors():
    with pytest.raises(ConfigError, match="not all 0"):
        build_term("relation_cka", ctx(), {"feature_weight": 0, "intra_weight": 0, "inter_weight": 0})
    with pytest.raises(ConfigError, match="unknown pooling"):
        build_term("relation_cka", ctx(), {"pooling": "max"})
