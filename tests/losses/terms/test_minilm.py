"""MiniLM's attention and value-relation KL (fsdkit.losses.terms.minilm) against docs/math.md: golden value,
NumPy reference, padding invariance, float64 gradients, option errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from baseline_helpers import ctx, feats, masked_softmax, np_kl_rows, np_value_relation, pad
from fsdkit.errors import ConfigError, ModelError
from fsdkit.losses import build_term


def minilm_features(batch, mask=None, scores_s=None, scores_t=None, values_s=None, values_t=None):
    mask = batch.mask if mask is None else mask
    att_s = masked_softmax(batch.scores_s if scores_s is None else scores_s, mask)
    att_t = masked_softmax(batch.scores_t if scores_t is None else scores_t, mask)
    vs = batch.values_s if values_s is None else values_s
    vt = batch.values_t if values_t is None else values_t
    zero_s, zero_t = vs.new_zeros(vs.shape), vt.new_zeros(vt.shape)
    student = feats([zero_s] * 4, mask, attentions=(att_s,) * 3, values={-1: vs})
    teacher = feats([zero_t] * 7, mask, attentions=(att_t,) * 6, values={-1: vt})
    return student, teacher


def test_minilm_golden_value():
    """One sample, one head, 2 tokens. Attention rows T = (½, ½), (¼, ¾), S = (¼, ¾), (½, ½):
    KL = [½ ln 2 + ½ ln ⅔ + ¼ ln ½ + ¾ ln 3/2] / 2 = 0.1373265. Value relations: V_T = I gives the rows
    (σ, 1 − σ) and (1 − σ, σ), σ = e^{1/√2}/(e^{1/√2} + 1); V_S rows equal give (½, ½):
    KL = σ ln 2σ + (1 − σ) ln 2(1 − σ) = 0.0587998."""
    term = build_term("minilm", ctx(hidden=2, teacher_hidden=2), {})
    att_t = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])
    att_s = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    v_t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    v_s = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    zero = torch.zeros(1, 2, 2)
    value = term(
        feats(zero, attentions=(att_s,) * 2, values={-1: v_s}),
        feats(zero, attentions=(att_t,) * 2, values={-1: v_t}),
        {},
    )
    assert value.item() == pytest.approx(0.1373265 + 0.0587998, abs=1e-6)


def test_minilm_equals_numpy_reference(attention_batch):
    b = attention_batch
    term = build_term(
        "minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {}
    )
    student, teacher = minilm_features(b)
    value = term(student, teacher, {}).item()
    m = b.mask.numpy()
    att = np_kl_rows(teacher.attentions[-1].numpy(), student.attentions[-1].numpy(), m)
    val = np_kl_rows(np_value_relation(b.values_t.numpy(), m, 2), np_value_relation(b.values_s.numpy(), m, 2), m)
    assert value == pytest.approx(att + val, rel=1e-10)


def test_minilm_ignores_padding(attention_batch):
    """Three more padded positions — garbage scores in padded rows, garbage values — change nothing."""
    b = attention_batch
    term = build_term(
        "minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {}
    )
    base = term(*minilm_features(b), {}).item()
    mask_p = pad(b.mask, 3, [1], 0)
    padded = minilm_features(
        b,
        mask=mask_p,
        scores_s=pad(b.scores_s, 3, [2, 3], 9.0),
        scores_t=pad(b.scores_t, 3, [2, 3], -4.0),
        values_s=pad(b.values_s, 3, [1], 50.0),
        values_t=pad(b.values_t, 3, [1], -20.0),
    )
    assert term(*padded, {}).item() == pytest.approx(base, rel=1e-12)


def test_minilm_is_zero_for_identical_maps_even_after_attention_dropout(attention_batch):
    """HF returns training-mode attention maps after dropout (zeros, rest scaled by 1/(1 − p)); identical
    pre-dropout maps must still score 0, and the value equals the KL on the kept keys, renormalised."""
    b = attention_batch
    term = build_term("minilm", ctx(hidden=4, teacher_hidden=4, heads=2, teacher_heads=2), {})
    att = masked_softmax(b.scores_t, b.mask)
    keep = torch.rand(att.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64) > 0.3
    dropped = att * keep / 0.7
    student = feats([b.values_t * 0] * 3, b.mask, attentions=(dropped,) * 2, values={-1: b.values_t})
    teacher = feats([b.values_t * 0] * 3, b.mask, attentions=(att,) * 2, values={-1: b.values_t})
    assert term(student, teacher, {}).item() == pytest.approx(0.0, abs=1e-12)

    other = masked_softmax(b.scores_s, b.mask) * keep / 0.7
    student = feats([b.values_t * 0] * 3, b.mask, attentions=(other,) * 2, values={-1: b.values_t})
    support = (keep & b.mask[:, None, None, :].bool()).numpy()
    p_t = np.where(support, att.numpy(), 0)
    p_s = np.where(support, other.numpy(), 0)
    p_t, p_s = p_t / p_t.sum(-1, keepdims=True), p_s / p_s.sum(-1, keepdims=True)
    expected = np.mean(
        [
            np.sum(p_t[i][support[i]] * np.log(p_t[i][support[i]] / p_s[i][support[i]]))
            for i in itertools.product(range(3), range(2), range(5))
            if b.mask[i[0], i[2]]
        ]
    )
    assert term(student, teacher, {}).item() == pytest.approx(expected, rel=1e-10)


def test_minilm_gradcheck(attention_batch):
    b = attention_batch
    term = build_term(
        "minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {}
    )
    scores = b.scores_s.clone().requires_grad_(True)
    values = b.values_s.clone().requires_grad_(True)

    def loss(sc, v):
        return term(*minilm_features(b, scores_s=sc, values_s=v), {})

    assert gradcheck(loss, (scores, values), eps=1e-6, atol=1e-6, fast_mode=True)


def test_minilm_options_and_head_mismatch():
    term = build_term("minilm", ctx(layers=3, teacher_layers=6), {"layer": -2})
    assert term.request().value_layers == frozenset({-2}) and term.request().attentions
    for bad in (2, -4, "penultimate", 0):
        with pytest.raises(ConfigError, match="negative index"):
            build_term("minilm", ctx(layers=3, teacher_layers=6), {"layer": bad})
    with pytest.raises(ModelError, match="student has 12 heads and the teacher 16"):
        build_term("minilm", ctx(heads=12, teacher_heads=16), {})
