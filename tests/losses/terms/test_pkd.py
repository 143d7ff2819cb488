"""Patient KD (fsdkit.losses.terms.pkd) against its definition in docs/math.md: golden value, NumPy reference,
float64 gradients, and the teacher layers the layer-matching terms read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from baseline_helpers import ctx, feats
from fsdkit.losses import build_term


def test_layer_matching_terms_name_the_teacher_layers_they_read():
    """The teacher-output cache stores what the terms read: PKD's and internal KD's paired teacher layers (skip map,
    6 → 3 layers: teacher layers 2 and 4; 2, 4 and 6 for internal KD, which matches the last layer too), the
    structure and memory terms' one layer — not every layer."""
    from fsdkit.features import FeatureRequest

    c = ctx(hidden=4, teacher_hidden=4, layers=3, teacher_layers=6)
    assert build_term("pkd", c, {}).request().hidden_layers_read() == {2, 4}
    assert build_term("internal", c, {}).request().hidden_layers_read() == {2, 4, 6}
    together = build_term("pkd", c, {}).request() | build_term("structure", c, {"view": "local"}).request()
    assert together.hidden_layers_read() == {2, 4, "penultimate"}
    assert (together | FeatureRequest(hidden_states=True)).hidden_layers_read() is None  # a term that names none: all
    assert (together | FeatureRequest(attentions=True)).hidden_layers_read() == {2, 4, "penultimate"}
    parts = [build_term(n, c, o).request() for n, o in (("pkd", {}), ("structure", {"view": "local"}), ("minilm", {}))]
    assert FeatureRequest.union(*parts) == parts[0] | parts[1] | parts[2] and FeatureRequest.union() == FeatureRequest()


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
