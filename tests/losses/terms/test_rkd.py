"""Relational KD (fsdkit.losses.terms.rkd) against its definition in docs/math.md: golden values, NumPy
reference, float64 gradients, batch-size limits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from baseline_helpers import ctx, feats
from fsdkit.errors import ConfigError
from fsdkit.losses import build_term


def rkd_term(**options):
    return build_term("rkd", ctx(), {"student_layer": 1, "teacher_layer": 1, **options})


def test_rkd_golden_values():
    """Teacher: the right triangle (0,0), (1,0), (0,1); student: (0,0), (2,0), (0,1).

    Distances: ψ_T = (1, 1, √2)/μ_T, μ_T = (2 + √2)/3; ψ_S = (2, 1, √5)/μ_S, μ_S = (3 + √5)/3;
    L_D = mean of 0.5·Δ² over the 3 pairs = 0.0277267. Angles (cosines at each vertex): teacher (0, √½, √½),
    student (0, 2/√5, 1/√5); each vertex appears in 2 ordered triples: L_A = 0.0171056.
    """
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:, None, :]
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])[:, None, :]
    distance = rkd_term(distance_weight=1, angle_weight=0)(feats(s), feats(t), {}).item()
    angle = rkd_term(distance_weight=0, angle_weight=1)(feats(s), feats(t), {}).item()
    assert distance == pytest.approx(0.0277267, abs=1e-6)
    assert angle == pytest.approx(0.0171056, abs=1e-6)
    assert rkd_term()(feats(s), feats(t), {}).item() == pytest.approx(25 * distance + 50 * angle, rel=1e-6)


def np_rkd(s: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """RKD by loops over distinct pairs and triples (Park et al.'s potentials, smooth-L1 with β = 1)."""

    def huber(x):
        return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5

    b = s.shape[0]
    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    mu_s = np.mean([np.linalg.norm(s[i] - s[j]) for i, j in pairs])
    mu_t = np.mean([np.linalg.norm(t[i] - t[j]) for i, j in pairs])
    l_d = np.mean([huber(np.linalg.norm(s[i] - s[j]) / mu_s - np.linalg.norm(t[i] - t[j]) / mu_t) for i, j in pairs])

    def cos_at(x, i, j, k):
        a, c = x[i] - x[j], x[k] - x[j]
        return a @ c / np.linalg.norm(a) / np.linalg.norm(c)

    triples = [p for p in itertools.permutations(range(b), 3)]
    l_a = np.mean([huber(cos_at(s, *p) - cos_at(t, *p)) for p in triples])
    return l_d, l_a


def test_rkd_equals_numpy_reference():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(5, 3, 6, generator=g, dtype=torch.float64) * 3
    t = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    l_d, l_a = np_rkd(s[:, 0].numpy(), t[:, 0].numpy())
    value = rkd_term(distance_weight=2.0, angle_weight=3.0)(feats(s), feats(t), {}).item()
    assert value == pytest.approx(2 * l_d + 3 * l_a, rel=1e-10)


def test_rkd_gradcheck_and_batch_size():
    g = torch.Generator().manual_seed(5)
    t = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    s = torch.randn(4, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    term = rkd_term()
    assert gradcheck(lambda h: term(feats(h), feats(t), {}), (s,), eps=1e-6, atol=1e-5)
    assert term.min_batch_size == 3 and rkd_term(angle_weight=0).min_batch_size == 2
    with pytest.raises(ValueError, match="at least 3 samples"):
        term(feats(s[:2]), feats(t[:2]), {})
    assert torch.isfinite(rkd_term(angle_weight=0)(feats(s[:2]), feats(t[:2]), {}))
    with pytest.raises(ConfigError, match="not both 0"):
        rkd_term(distance_weight=0, angle_weight=0)


def test_rkd_coincident_rows_stay_finite():
    t = torch.randn(4, 1, 3, dtype=torch.float64)
    s = torch.ones(4, 1, 3, dtype=torch.float64, requires_grad=True)
    value = rkd_term()(feats(s), feats(t), {})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
