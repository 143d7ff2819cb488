"""Internal-representation KD (fsdkit.losses.terms.internal) against docs/math.md: golden value, NumPy
reference, padding invariance, float64 gradients, option errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from baseline_helpers import ctx, feats, masked_softmax, np_kl_rows, pad
from fsdkit.errors import ConfigError, ModelError
from fsdkit.losses import build_term


def internal_features(batch, mask=None, scores_s=None, scores_t=None, hidden_s=None, hidden_t=None):
    """Layers that differ from each other: layer l has hidden states h·l and attention softmax(scores·l)."""
    mask = batch.mask if mask is None else mask
    scores_s = batch.scores_s if scores_s is None else scores_s
    scores_t = batch.scores_t if scores_t is None else scores_t
    hs = batch.hidden_s if hidden_s is None else hidden_s
    ht = batch.hidden_t if hidden_t is None else hidden_t
    student = feats(
        [hs * l for l in range(4)], mask, attentions=tuple(masked_softmax(scores_s * l, mask) for l in range(1, 4))
    )
    teacher = feats(
        [ht * l for l in range(7)], mask, attentions=tuple(masked_softmax(scores_t * l, mask) for l in range(1, 7))
    )
    return student, teacher


def test_internal_golden_value():
    """Attention part as in the MiniLM golden value (0.1373265); [CLS] (1, 0) vs (1, 1): 1 − cos = 1 − 1/√2."""
    term = build_term("internal", ctx(hidden=2, teacher_hidden=2), {"layers": [[1, 1]]})
    att_t = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])
    att_s = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    hs = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    ht = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    value = term(feats(hs, attentions=(att_s,) * 2), feats(ht, attentions=(att_t,) * 2), {}).item()
    assert value == pytest.approx(0.1373265 + 1 - 2**-0.5, abs=1e-6)


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
    term = build_term(
        "internal", ctx(hidden=6, teacher_hidden=6, layers=3, teacher_layers=6, heads=2, teacher_heads=2), {}
    )
    hidden_t = torch.randn(3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    base = term(*internal_features(b, hidden_t=hidden_t), {}).item()
    padded = internal_features(
        b,
        mask=pad(b.mask, 2, [1], 0),
        scores_s=pad(b.scores_s, 2, [2, 3], 3.0),
        scores_t=pad(b.scores_t, 2, [2, 3], -1.0),
        hidden_s=pad(b.hidden_s, 2, [1], 40.0),
        hidden_t=pad(hidden_t, 2, [1], -7.0),
    )
    assert term(*padded, {}).item() == pytest.approx(base, rel=1e-12)


def test_internal_gradcheck(attention_batch):
    torch.manual_seed(0)
    b = attention_batch
    term = build_term(
        "internal",
        ctx(hidden=6, teacher_hidden=4, layers=3, teacher_layers=6, heads=2, teacher_heads=2),
        {"layers": "1:2;3:6"},
    ).double()
    scores = b.scores_s.clone().requires_grad_(True)
    hidden = b.hidden_s.clone().requires_grad_(True)
    assert gradcheck(
        lambda sc, h: term(*internal_features(b, scores_s=sc, hidden_s=h), {}),
        (scores, hidden),
        eps=1e-6,
        atol=1e-6,
        fast_mode=True,
    )


def test_internal_option_errors():
    c = ctx(layers=3, teacher_layers=6)
    for bad in ([4], [0], [], ["a"]):
        with pytest.raises(ConfigError, match=r"positions 1\.\.3"):
            build_term("internal", c, {"pairs": bad})
    with pytest.raises(ModelError, match="same number of heads"):
        build_term("internal", ctx(heads=2, teacher_heads=4), {})
    with pytest.raises(ConfigError, match="out of range"):
        build_term("internal", c, {"layers": "3:7"})
