"""Baseline loss terms and presets against their definitions in docs/math.md: golden values, NumPy references,
padding invariance, float64 gradients, option errors, and the staged schedules of internal-representation KD."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck
from transformers import TrainerState, get_linear_schedule_with_warmup

from fsdkit.config import DistillConfig, make_config
from fsdkit.errors import ConfigError, ModelError
from fsdkit.features import Features
from fsdkit.losses import TermContext, build_term
from fsdkit.losses.similarities import linear_cka
from fsdkit.losses.layer_maps import count_layer_pairs, resolve_layer_map
from fsdkit.training.presets import get_method, run_terms
from fsdkit.training.trainer import DistillationTrainer, stage_of, stage_start, staged_linear_factor


def ctx(hidden=4, teacher_hidden=4, layers=2, teacher_layers=2, heads=1, teacher_heads=1):
    student = SimpleNamespace(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads)
    teacher = SimpleNamespace(hidden_size=teacher_hidden, num_hidden_layers=teacher_layers, num_attention_heads=teacher_heads)
    return TermContext(student, teacher, SimpleNamespace(name="toy", is_regression=False, num_labels=2))


def feats(hidden, mask=None, attentions=None, values=None, logits=None) -> Features:
    """Features whose every hidden state is ``hidden`` (a tensor) or ``hidden[l]`` (a list, index = layer)."""
    layers = hidden if isinstance(hidden, (list, tuple)) else [hidden] * 3
    b, length, _ = layers[0].shape
    mask = mask if mask is not None else torch.ones(b, length, dtype=torch.long)
    logits = logits if logits is not None else torch.zeros(b, 2, dtype=layers[0].dtype)
    return Features(logits, mask, hidden_states=tuple(layers), attentions=attentions, values=values or {})


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention maps as a model gives them: rows over the real keys, 0 on padded keys."""
    return scores.masked_fill(~mask[:, None, None, :].bool(), float("-inf")).softmax(-1)


def np_kl_rows(p_t: np.ndarray, p_s: np.ndarray, mask: np.ndarray) -> float:
    """mean over heads and real query rows of Σ_j p_T log(p_T / p_S) over real keys, by loops."""
    values = []
    for b, h, i in itertools.product(range(p_t.shape[0]), range(p_t.shape[1]), range(p_t.shape[2])):
        if mask[b, i]:
            keys = mask[b].astype(bool)
            values.append(np.sum(p_t[b, h, i, keys] * np.log(p_t[b, h, i, keys] / p_s[b, h, i, keys])))
    return float(np.mean(values))


def np_value_relation(v: np.ndarray, mask: np.ndarray, heads: int) -> np.ndarray:
    b, length, width = v.shape
    d_k = width // heads
    out = np.zeros((b, heads, length, length))
    for bi, h in itertools.product(range(b), range(heads)):
        vh = v[bi, :, h * d_k:(h + 1) * d_k]
        scores = vh @ vh.T / np.sqrt(d_k)
        scores[:, ~mask[bi].astype(bool)] = -np.inf
        e = np.exp(scores - scores.max(-1, keepdims=True))
        out[bi, h] = e / e.sum(-1, keepdims=True)
    return out


@pytest.fixture
def attention_batch():
    """Two heads, widths 6 (student) and 4 (teacher), one padded sample, float64."""
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    scores_s = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    scores_t = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    values_s = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    values_t = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    hidden_s = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    hidden_t = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    return SimpleNamespace(mask=mask, scores_s=scores_s, scores_t=scores_t, values_s=values_s, values_t=values_t,
                           hidden_s=hidden_s, hidden_t=hidden_t)


def pad(x: torch.Tensor, n: int, dims, fill: float) -> torch.Tensor:
    """Append ``n`` positions filled with ``fill`` along each of ``dims``."""
    for d in dims:
        shape = list(x.shape)
        shape[d] = n
        x = torch.cat([x, torch.full(shape, fill, dtype=x.dtype)], dim=d)
    return x


# ---------------------------------------------------------------------------------------------- layer maps
def test_named_layer_maps():
    assert resolve_layer_map("skip", 3, 6, include_last=False) == [(1, 2), (2, 4)]
    assert resolve_layer_map("skip", 6, 12, include_last=False) == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    assert resolve_layer_map("last", 6, 12, include_last=False) == [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert resolve_layer_map("last", 3, 6, include_last=False) == [(1, 4), (2, 5)]
    assert resolve_layer_map("skip", 3, 6, include_last=True) == [(1, 2), (2, 4), (3, 6)]
    assert count_layer_pairs("skip", 3, include_last=True) == 3 and count_layer_pairs("last", 3, include_last=False) == 2


@pytest.mark.parametrize("spec", ["1:2,2:4", "1:2;2:4", " 1:2  2:4 ", [[1, 2], [2, 4]], [(1, 2), (2, 4)]])
def test_explicit_layer_maps(spec):
    assert resolve_layer_map(spec, 3, 6, include_last=False) == [(1, 2), (2, 4)]
    assert count_layer_pairs(spec, 3, include_last=False) == 2


@pytest.mark.parametrize("spec, match", [
    ("1:7", r"out of range.*teacher layers 1\.\.6"),
    ([[4, 2]], r"out of range: student layers are 1\.\.3"),
    ([[0, 2]], "out of range"),
    ("1-2", "not a pair of integers"),
    (62, "not a pair of integers"),  # what YAML makes of an unquoted 1:2 (base 60)
    ("", "no layer pairs"),
])
def test_bad_layer_maps(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_layer_map(spec, 3, 6, include_last=False)


def test_named_map_needs_a_deep_enough_teacher_and_an_intermediate_layer():
    with pytest.raises(ConfigError, match="at least as deep"):
        resolve_layer_map("skip", 6, 3, include_last=False)
    with pytest.raises(ConfigError, match="no intermediate layer"):
        build_term("pkd", ctx(layers=1, teacher_layers=6), {})


# ---------------------------------------------------------------------------------------------- PKD
def test_pkd_golden_value():
    """Sample 1: [3, 4]/5 − [1, 0] → ‖(−0.4, 0.8)‖² = 0.8; sample 2: [0, 2] vs [0, 5] → 0; batch mean 0.4."""
    term = build_term("pkd", ctx(hidden=2, teacher_hidden=2), {"layers": [[1, 1]]})
    hs = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])
    ht = torch.tensor([[[1.0, 0.0]], [[0.0, 5.0]]])
    assert term(feats(hs), feats(ht), {}).item() == pytest.approx(0.4, rel=1e-6)


def test_pkd_equals_numpy_reference_with_projection():
    """D_S = 6 ≠ D_T = 4: each pair owns a projection; L_PT = mean_b Σ_j ‖Wh_S/‖Wh_S‖ − h_T/‖h_T‖‖²."""
    torch.manual_seed(0)
    term = build_term("pkd", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6), {}).double()
    assert term.pairs == [(1, 2), (2, 4)]
    assert [n for n, _ in term.named_parameters()] == ["projections.0.weight", "projections.1.weight"]
    g = torch.Generator().manual_seed(1)
    hs = [torch.randn(4, 3, 6, generator=g, dtype=torch.float64) for _ in range(4)]
    ht = [torch.randn(4, 3, 4, generator=g, dtype=torch.float64) for _ in range(7)]
    value = term(feats(hs), feats(ht), {}).item()

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    total = np.zeros(4)
    for i, (j, k) in enumerate(term.pairs):
        w = term.projections[i].weight.detach().numpy()
        total += ((unit(hs[j][:, 0].numpy() @ w.T) - unit(ht[k][:, 0].numpy())) ** 2).sum(-1)
    assert value == pytest.approx(total.mean(), rel=1e-10)


def test_pkd_has_no_parameters_for_equal_widths_and_gradcheck():
    term = build_term("pkd", ctx(hidden=4, teacher_hidden=4, layers=3, teacher_layers=6), {"layers": "last"}).double()
    assert term.projections is None and not list(term.parameters())
    g = torch.Generator().manual_seed(2)
    ht = [torch.randn(3, 2, 4, generator=g, dtype=torch.float64) for _ in range(7)]
    hs = torch.randn(4, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda h: term(feats(list(h)), feats(ht), {}), (hs,), eps=1e-6, atol=1e-6)


def test_pkd_gradcheck_through_projection():
    torch.manual_seed(0)
    term = build_term("pkd", ctx(hidden=3, teacher_hidden=2, layers=2, teacher_layers=2), {"layers": [[1, 2]]}).double()
    g = torch.Generator().manual_seed(3)
    hs = torch.randn(3, 4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ht = [torch.randn(4, 2, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    w = term.projections[0].weight.detach().clone().requires_grad_(True)

    def loss(h, weight):
        args = (feats(list(h)), feats(ht), {})
        return torch.func.functional_call(term, {"projections.0.weight": weight}, args)

    assert gradcheck(loss, (hs, w), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------- RKD
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


# ---------------------------------------------------------------------------------------------- MiniLM
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
    value = term(feats(zero, attentions=(att_s,) * 2, values={-1: v_s}),
                 feats(zero, attentions=(att_t,) * 2, values={-1: v_t}), {})
    assert value.item() == pytest.approx(0.1373265 + 0.0587998, abs=1e-6)


def test_minilm_equals_numpy_reference(attention_batch):
    b = attention_batch
    term = build_term("minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {})
    student, teacher = minilm_features(b)
    value = term(student, teacher, {}).item()
    m = b.mask.numpy()
    att = np_kl_rows(teacher.attentions[-1].numpy(), student.attentions[-1].numpy(), m)
    val = np_kl_rows(np_value_relation(b.values_t.numpy(), m, 2), np_value_relation(b.values_s.numpy(), m, 2), m)
    assert value == pytest.approx(att + val, rel=1e-10)


def test_minilm_ignores_padding(attention_batch):
    """Three more padded positions — garbage scores in padded rows, garbage values — change nothing."""
    b = attention_batch
    term = build_term("minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {})
    base = term(*minilm_features(b), {}).item()
    mask_p = pad(b.mask, 3, [1], 0)
    padded = minilm_features(
        b, mask=mask_p, scores_s=pad(b.scores_s, 3, [2, 3], 9.0), scores_t=pad(b.scores_t, 3, [2, 3], -4.0),
        values_s=pad(b.values_s, 3, [1], 50.0), values_t=pad(b.values_t, 3, [1], -20.0),
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
    expected = np.mean([
        np.sum(p_t[i][support[i]] * np.log(p_t[i][support[i]] / p_s[i][support[i]]))
        for i in itertools.product(range(3), range(2), range(5)) if b.mask[i[0], i[2]]
    ])
    assert term(student, teacher, {}).item() == pytest.approx(expected, rel=1e-10)


def test_minilm_gradcheck(attention_batch):
    b = attention_batch
    term = build_term("minilm", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {})
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


# ---------------------------------------------------------------------------------------------- internal
def internal_features(batch, mask=None, scores_s=None, scores_t=None, hidden_s=None, hidden_t=None):
    """Layers that differ from each other: layer l has hidden states h·l and attention softmax(scores·l)."""
    mask = batch.mask if mask is None else mask
    scores_s = batch.scores_s if scores_s is None else scores_s
    scores_t = batch.scores_t if scores_t is None else scores_t
    hs = batch.hidden_s if hidden_s is None else hidden_s
    ht = batch.hidden_t if hidden_t is None else hidden_t
    student = feats([hs * l for l in range(4)], mask, attentions=tuple(masked_softmax(scores_s * l, mask) for l in range(1, 4)))
    teacher = feats([ht * l for l in range(7)], mask, attentions=tuple(masked_softmax(scores_t * l, mask) for l in range(1, 7)))
    return student, teacher


def test_internal_golden_value():
    """Attention part as in the MiniLM golden value (0.1373265); [CLS] (1, 0) vs (1, 1): 1 − cos = 1 − 1/√2."""
    term = build_term("internal", ctx(hidden=2, teacher_hidden=2), {"layers": [[1, 1]]})
    att_t = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])
    att_s = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    hs = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    ht = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    value = term(feats(hs, attentions=(att_s,) * 2), feats(ht, attentions=(att_t,) * 2), {}).item()
    assert value == pytest.approx(0.1373265 + 1 - 2 ** -0.5, abs=1e-6)


def test_internal_equals_numpy_reference(attention_batch):
    """Skip map 3 → 6 with the last layer: (1, 2), (2, 4), (3, 6); widths 6 → 4 through learned projections."""
    torch.manual_seed(0)
    b = attention_batch
    c = ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2)
    term = build_term("internal", c, {}).double()
    assert term.pairs == [(1, 2), (2, 4), (3, 6)]
    student, teacher = internal_features(b)
    value = term(student, teacher, {}).item()
    m = b.mask.numpy()
    expected = 0.0
    for i, (j, k) in enumerate(term.pairs):
        kl = np_kl_rows(teacher.attentions[k - 1].numpy(), student.attentions[j - 1].numpy(), m)
        s = student.hidden_states[j][:, 0].numpy() @ term.projections[i].weight.detach().numpy().T
        t = teacher.hidden_states[k][:, 0].numpy()
        cos = (s * t).sum(-1) / np.linalg.norm(s, axis=-1) / np.linalg.norm(t, axis=-1)
        expected += kl + np.mean(1 - cos)
    assert value == pytest.approx(expected, rel=1e-10)
    # one pair of the map: what a staged schedule trains
    second = build_term("internal", c, {"pairs": [2]}).double()
    second.projections[0].weight.data.copy_(term.projections[1].weight.data)
    kl = np_kl_rows(teacher.attentions[3].numpy(), student.attentions[1].numpy(), m)
    s = student.hidden_states[2][:, 0].numpy() @ term.projections[1].weight.detach().numpy().T
    t = teacher.hidden_states[4][:, 0].numpy()
    cos = (s * t).sum(-1) / np.linalg.norm(s, axis=-1) / np.linalg.norm(t, axis=-1)
    assert second.pairs == [(2, 4)]
    assert second(student, teacher, {}).item() == pytest.approx(kl + np.mean(1 - cos), rel=1e-10)


def test_internal_ignores_padding(attention_batch):
    b = attention_batch
    term = build_term("internal", ctx(hidden=6, teacher_hidden=6, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {})
    hidden_t = torch.randn(3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    base = term(*internal_features(b, hidden_t=hidden_t), {}).item()
    padded = internal_features(
        b, mask=pad(b.mask, 2, [1], 0), scores_s=pad(b.scores_s, 2, [2, 3], 3.0), scores_t=pad(b.scores_t, 2, [2, 3], -1.0),
        hidden_s=pad(b.hidden_s, 2, [1], 40.0), hidden_t=pad(hidden_t, 2, [1], -7.0),
    )
    assert term(*padded, {}).item() == pytest.approx(base, rel=1e-12)


def test_internal_gradcheck(attention_batch):
    torch.manual_seed(0)
    b = attention_batch
    term = build_term("internal", ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2),
                      {"layers": "1:2;3:6"}).double()
    scores = b.scores_s.clone().requires_grad_(True)
    hidden = b.hidden_s.clone().requires_grad_(True)
    assert gradcheck(lambda sc, h: term(*internal_features(b, scores_s=sc, hidden_s=h), {}), (scores, hidden),
                     eps=1e-6, atol=1e-6, fast_mode=True)


def test_internal_option_errors():
    c = ctx(layers=3, teacher_layers=6)
    for bad in ([4], [0], [], ["a"]):
        with pytest.raises(ConfigError, match=r"positions 1\.\.3"):
            build_term("internal", c, {"pairs": bad})
    with pytest.raises(ModelError, match="same number of heads"):
        build_term("internal", ctx(heads=2, teacher_heads=4), {})
    with pytest.raises(ConfigError, match="out of range"):
        build_term("internal", c, {"layers": "3:7"})


# ---------------------------------------------------------------------------------------------- Relation CKA
def np_alignment(x: np.ndarray, y: np.ndarray) -> float:
    k, lam = x @ x.T, y @ y.T
    return float(np.sum(k * lam) / np.linalg.norm(k) / np.linalg.norm(lam))


def test_relation_cka_golden_value():
    """Z_S = I, Z_T = [[1, 0], [1, 0]]: B × B Grams I and 11ᵀ → 2/(√2·2); C × C Grams I and diag(2, 0) → same.
    Loss = 2·(1 − 1/√2) = 0.585786 (feature part off)."""
    term = build_term("relation_cka", ctx(), {"feature_weight": 0})
    zero = torch.zeros(2, 1, 4)
    value = term(feats(zero, logits=torch.eye(2)), feats(zero, logits=torch.tensor([[1.0, 0.0], [1.0, 0.0]])), {})
    assert value.item() == pytest.approx(2 * (1 - 2 ** -0.5), rel=1e-6)
    assert not term.request().hidden_states


@pytest.fixture
def relation_batch():
    g = torch.Generator().manual_seed(8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    return SimpleNamespace(
        mask=mask,
        hs=torch.randn(4, 4, 6, generator=g, dtype=torch.float64), ht=torch.randn(4, 4, 5, generator=g, dtype=torch.float64),
        zs=torch.randn(4, 3, generator=g, dtype=torch.float64), zt=torch.randn(4, 3, generator=g, dtype=torch.float64),
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
    padded = term(feats(pad(r.hs, 3, [1], 8.0), pad(r.mask, 3, [1], 0), logits=r.zs),
                  feats(pad(r.ht, 3, [1], -2.0), pad(r.mask, 3, [1], 0), logits=r.zt), {}).item()
    assert padded == pytest.approx(base, rel=1e-12)
    hs, zs = r.hs.clone().requires_grad_(True), r.zs.clone().requires_grad_(True)
    assert gradcheck(lambda h, z: term(feats(h, r.mask, logits=z), feats(r.ht, r.mask, logits=r.zt), {}), (hs, zs),
                     eps=1e-6, atol=1e-6)


def test_relation_cka_option_errors():
    with pytest.raises(ConfigError, match="not all 0"):
        build_term("relation_cka", ctx(), {"feature_weight": 0, "intra_weight": 0, "inter_weight": 0})
    with pytest.raises(ConfigError, match="unknown pooling"):
        build_term("relation_cka", ctx(), {"pooling": "max"})


# ---------------------------------------------------------------------------------------------- presets
def config(**values) -> DistillConfig:
    return make_config(DistillConfig, {"teacher": "t", **values})


def terms_of(method: str, **values) -> dict[str, tuple]:
    return {s.label: (s.name, s.weight, s.options, s.stages) for s in run_terms(config(method=method, **values))}


def test_baseline_presets():
    assert terms_of("pkd", alpha=0.3)["pkd"] == ("pkd", 100.0, {"layers": "skip"}, None)
    assert terms_of("pkd")["task"][1] == 0.5 and terms_of("pkd")["kd"][1] == 0.5
    assert terms_of("rkd", lambda_rkd_angle=0)["rkd"] == ("rkd", 1.0, {"distance_weight": 25.0, "angle_weight": 0.0}, None)
    assert terms_of("minilm", lambda_minilm=2)["minilm"] == ("minilm", 2.0, {}, None)
    assert terms_of("relation-cka")["relation_cka"] == ("relation_cka", 15.0, {}, None)
    for similarity in ("procrustes", "gram"):
        terms = terms_of(f"geometry-{similarity}", lambda_geometry=7)
        assert set(terms) == {"task", "kd", "intra", "local"}
        assert terms["intra"][:2] == ("structure", 7.0) and terms["intra"][2]["similarity"] == similarity
        assert terms["local"][2] == {"view": "local", "similarity": similarity, "pooling": "flatten"}
    fsd = terms_of("fsd-procrustes", memory="m")
    assert {label: t[2]["similarity"] for label, t in fsd.items() if "similarity" in t[2]} == {
        "intra": "procrustes", "local": "procrustes", "global": "procrustes"}
    assert get_method("fsd-procrustes").needs_memory and fsd["intra"][1] == 30.0


def test_pkd_layers_from_a_config_file_or_flag():
    assert config(pkd_layers=[[1, 2], [2, 4]]).pkd_layers == [[1, 2], [2, 4]]
    assert config(pkd_layers="1:2,2:4").pkd_layers == "1:2,2:4"
    with pytest.raises(ConfigError, match="pkd-layers"):
        config(pkd_layers=[["a"]])


def test_internal_schedules():
    """3 student layers, skip map: 3 pairs. PID trains pair k in stage k, SID pairs 1..k, VKD alone at the end."""
    stages = {label: spec[3] for label, spec in terms_of("internal-pid").items()}
    assert stages == {"internal_1": {0}, "internal_2": {1}, "internal_3": {2}, "task": {3}, "kd": {3}}
    stages = {label: spec[3] for label, spec in terms_of("internal-sid").items()}
    assert stages == {"internal_1": {0, 1, 2}, "internal_2": {1, 2}, "internal_3": {2}, "task": {3}, "kd": {3}}
    stages = {label: spec[3] for label, spec in terms_of("internal-all").items()}
    assert stages == dict.fromkeys(["task", "kd", "internal_1", "internal_2", "internal_3"])
    assert terms_of("internal-pid")["internal_2"][2] == {"layers": "skip", "pairs": [2]}
    assert get_method("internal-pid").stages(config()) == 4 and get_method("internal-all").stages(config()) == 1
    assert get_method("internal-sid").stages(config(internal_layers="1:2;3:6")) == 3
    assert get_method("internal-sid").stages(config(student_layers=[0, 2, 4, 5])) == 5


def test_stage_follows_the_global_step():
    assert [stage_of(step, 8, 4) for step in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [stage_of(step, 10, 3) for step in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert stage_of(5, 8, 1) == 0 and stage_of(8, 8, 4) == 3


def test_active_terms_follow_the_global_step_as_after_a_resume():
    """A trainer whose state was restored at global step g (as after --resume) selects the terms of g's stage."""
    specs = get_method("internal-pid").build(config())
    trainer = DistillationTrainer.__new__(DistillationTrainer)
    trainer.term_specs, trainer.n_stages = specs, 4
    model = SimpleNamespace(terms={s.label: s.name for s in specs})
    active = []
    for step in range(8):
        trainer.state = TrainerState(global_step=step, max_steps=8)
        active.append(sorted(spec.label for spec, _ in trainer.active_terms(model)))
    assert active == [["internal_1"]] * 2 + [["internal_2"]] * 2 + [["internal_3"]] * 2 + [["kd", "task"]] * 2


def test_staged_schedule_restarts_its_warm_up_and_decay_in_every_stage():
    """40 steps, 4 stages of 10, warm-up ratio 0.1 (one step): 0, then 10/9·(10 − u)/10 … in every stage."""
    factors = [staged_linear_factor(t, total_steps=40, n_stages=4, warmup_ratio=0.1) for t in range(40)]
    one_stage = [0.0] + [(10 - u) / 9 for u in range(1, 10)]
    assert factors == pytest.approx(one_stage * 4)
    assert [stage_start(s, 10, 3) for s in range(4)] == [0, 4, 7, 10]  # the stages of stage_of(·, 10, 3)


def _hf_linear_factors(total: int, warmup: int) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    scheduler = get_linear_schedule_with_warmup(torch.optim.SGD([parameter], lr=1.0), warmup, total)
    return [scheduler.lr_lambdas[0](t) for t in range(total)]


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 300), n_stages=st.integers(1, 6), ratio=st.sampled_from([0.0, 0.06, 0.1, 0.25]))
def test_each_stage_follows_transformers_linear_schedule_of_its_own_length(total, n_stages, ratio):
    """Restarted per stage, the factor at local step u of a stage of m steps is transformers' linear
    warm-up/decay schedule of m steps with ⌈ratio · m⌉ warm-up steps, at step u (one stage: the same schedule)."""
    factors = [staged_linear_factor(t, total_steps=total, n_stages=n_stages, warmup_ratio=ratio) for t in range(total)]
    starts = sorted({stage_start(s, total, n_stages) for s in range(n_stages + 1)})
    expected = []
    for begin, end in zip(starts, starts[1:]):
        expected += _hf_linear_factors(end - begin, int(np.ceil(ratio * (end - begin))))
    assert factors == pytest.approx(expected)
    assert all(0.0 <= f <= 1.0 for f in factors)
    assert [stage_of(t, total, n_stages) for t in starts[:-1]] == sorted({stage_of(t, total, n_stages) for t in range(total)})


def test_unknown_stage_schedule_is_refused():
    with pytest.raises(ValueError, match="stage_lr must be one of"):
        DistillationTrainer(model=None, args=None, term_specs=[], stage_lr="cosine")
