"""Tests of fsdkit.losses.similarities: golden values, independent NumPy/SciPy references, invariances
(hypothesis), masking/batching, gradients and the degenerate-input policy."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes
from scipy.optimize import brentq

from fsdkit.losses import similarities as sim
from fsdkit.losses.similarities import debiased_cka, gram_distance, linear_cka, procrustes_distance, rbf_cka
from read_counting import count_reads

pytestmark = pytest.mark.usefixtures("single_thread")

CKAS = [linear_cka, rbf_cka, debiased_cka]
DISTANCES = [procrustes_distance, gram_distance]
ALL = CKAS + DISTANCES
MIN_ROWS = {debiased_cka: 4}
FAST = settings(max_examples=20, deadline=None)


seeds = st.integers(0, 2**32 - 1)
widths = st.integers(1, 7)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _data(seed: int, n: int, p: int, q: int, batch: tuple = ()):
    """Random x: (*batch, n, p), y: (*batch, n, q) in float64, anisotropic and off-centre."""
    rng = np.random.default_rng(seed)

    def side(w):
        return rng.standard_normal((*batch, n, w)) * rng.uniform(0.2, 3.0, w) + rng.normal(0, 5, w)

    return _t(side(p)), _t(side(q))


def _orthogonal(seed: int, p: int) -> torch.Tensor:
    return torch.linalg.qr(_t(np.random.default_rng(seed).standard_normal((p, p)))).Q


# ---------------------------------------------------------------- independent NumPy references


def np_linear_cka(x, y):
    """The HSIC definition with an explicit centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, lam = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, lam) / math.sqrt(hsic(k, k) * hsic(lam, lam))


def np_debiased_cka(x, y):
    """Kornblith et al.'s ``cka(gram_linear(x), gram_linear(y), debiased=True)`` (U-centred Grams)."""

    def u_centre(g):
        g = g.copy()
        n = g.shape[0]
        np.fill_diagonal(g, 0)
        means = g.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        g -= means[:, None] + means[None, :]
        np.fill_diagonal(g, 0)
        return g

    k, lam = u_centre(x @ x.T), u_centre(y @ y.T)
    return (k * lam).sum() / math.sqrt((k * k).sum() * (lam * lam).sum())


def np_rbf_cka(x, y, sigma=1.0):
    """RBF CKA with explicit distances; bandwidth = sigma × lower median of the distinct-pair distances."""

    def centred_gram(z):
        n = z.shape[0]
        d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
        pairs = np.sort(d[np.triu_indices(n, 1)])
        width = sigma * pairs[(len(pairs) - 1) // 2]
        h = np.eye(n) - 1 / n
        return h @ np.exp(-(d**2) / (2 * width**2)) @ h

    k, lam = centred_gram(x), centred_gram(y)
    return (k * lam).sum() / math.sqrt((k * k).sum() * (lam * lam).sum())


def np_normalise(z):
    z = z - z.mean(0)
    return z / np.linalg.norm(z)


def np_gram_distance(x, y):
    x, y = np_normalise(x), np_normalise(y)
    return np.linalg.norm(x @ x.T - y @ y.T)


# ---------------------------------------------------------------- golden, hand-checked values

# Rows already centred before the translations added below:
#   X = [[1, 1], [-1, 1], [0, -2]],  Y = [[1, 0], [-1, 0], [0, 0]]
#   K = XXᵀ = [[2, 0, -2], [0, 2, -2], [-2, -2, 4]],  Λ = YYᵀ = [[1, -1, 0], [-1, 1, 0], [0, 0, 0]]
#   tr(KHΛH) = tr(KΛ) = 4, tr(KHKH) = 40, tr(ΛHΛH) = 4; with (n-1)² = 4: HSIC = 1, 10, 1
#   CKA = 1 / sqrt(10 · 1) = 0.31622776601683794
#   X̃ = X/√8, Ỹ = Y/√2 (tr K = 8, tr Λ = 2); XᵀY = [[2, 0], [0, 0]] so ‖X̃ᵀỸ‖_* = 2/4 = 1/2, D_P² = 2 − 1 = 1
#   K/8 − Λ/2 = [[-.25, .5, -.25], [.5, -.25, -.25], [-.25, -.25, .5]], squared entries sum to 1.125
GOLD_X = [[1.0, 1.0], [-1.0, 1.0], [0.0, -2.0]]
GOLD_Y = [[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]


def _gold():
    return _t(GOLD_X) + _t([3.0, -1.0]), _t(GOLD_Y) + _t([2.0, 5.0])


def test_golden_3x2_linear_cka():
    x, y = _gold()
    assert linear_cka(x, y).item() == pytest.approx(0.31622776601683794, abs=1e-12)
    assert linear_cka(x.float(), y.float()).item() == pytest.approx(0.31622776601683794, abs=1e-6)


def test_golden_3x2_distances():
    x, y = _gold()
    assert procrustes_distance(x, y).item() == pytest.approx(1.0, abs=1e-12)
    assert procrustes_distance(x, y, squared=True).item() == pytest.approx(1.0, abs=1e-12)
    assert gram_distance(x, y).item() == pytest.approx(1.0606601717798212, abs=1e-12)  # sqrt(1.125)


def test_golden_orthogonal_column_spaces():
    """x̃ᵀỹ = 0: CKA = 0, D_P² = 2 − 0, D_FG² = ‖K̃‖² + ‖Λ̃‖² = 1 + 1 (rank-one unit Grams)."""
    x, y = _t([[1], [-1], [0], [0]]), _t([[0], [0], [1], [-1]])
    assert linear_cka(x, y).item() == pytest.approx(0.0, abs=1e-15)
    assert procrustes_distance(x, y).item() == pytest.approx(math.sqrt(2), abs=1e-12)
    assert gram_distance(x, y).item() == pytest.approx(math.sqrt(2), abs=1e-12)


def test_golden_rotation_has_zero_distance():
    x = _t([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    rot = _t([[0.6, -0.8], [0.8, 0.6]])  # cos = 0.6, sin = 0.8
    assert procrustes_distance(x, x @ rot).item() == pytest.approx(0.0, abs=1e-7)
    assert gram_distance(x, 5 * x @ rot + 2).item() == pytest.approx(0.0, abs=1e-7)
    assert linear_cka(x, x @ rot).item() == pytest.approx(1.0, abs=1e-12)


def test_golden_rbf_cka():
    """X = points 0, 1, 3 on a line: distances 1, 3, 2, median 2, so K = exp(−d²/8) off the diagonal.
    Y = an equilateral triangle: its kernel is a(I) + b(11ᵀ), so HΛH ∝ H and
    CKA = ⟨HKH, H⟩ / (‖HKH‖ ‖H‖) = tr(HKH) / (√2 ‖HKH‖) = 0.7753623834951825."""
    x = _t([[0.0], [1.0], [3.0]])
    y = _t([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3)]])
    assert rbf_cka(x, y).item() == pytest.approx(0.7753623834951825, abs=1e-12)


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("n,p,q", [(2, 1, 1), (5, 3, 7), (6, 40, 30), (50, 4, 3), (12, 12, 5), (9, 2, 64)])
def test_linear_cka_matches_numpy_hsic(n, p, q):
    x, y = _data(n * 100 + p * 10 + q, n, p, q)
    assert linear_cka(x, y).item() == pytest.approx(np_linear_cka(x.numpy(), y.numpy()), abs=1e-10)
    assert gram_distance(x, y).item() == pytest.approx(np_gram_distance(x.numpy(), y.numpy()), abs=1e-8)


@pytest.mark.parametrize("n,p,q", [(4, 2, 3), (7, 30, 5), (40, 3, 3)])
def test_debiased_and_rbf_match_numpy(n, p, q):
    x, y = _data(n + p + q, n, p, q)
    assert debiased_cka(x, y).item() == pytest.approx(np_debiased_cka(x.numpy(), y.numpy()), abs=1e-10)
    for sigma in (0.5, 1.0, 2.0):
        assert rbf_cka(x, y, sigma=sigma).item() == pytest.approx(np_rbf_cka(x.numpy(), y.numpy(), sigma), abs=1e-10)


def test_rbf_cka_tends_to_linear_for_wide_kernels():
    x, y = _data(3, 9, 4, 6)
    assert rbf_cka(x, y, sigma=1e4).item() == pytest.approx(linear_cka(x, y).item(), abs=1e-7)


def test_debiased_cka_can_be_negative():
    """Documented: the unbiased estimator is not clamped; for small unrelated sets it can be below 0."""
    rng = np.random.default_rng(19)
    x, y = _t(rng.standard_normal((6, 2))), _t(rng.standard_normal((6, 2)))
    value = debiased_cka(x, y).item()
    assert value == pytest.approx(np_debiased_cka(x.numpy(), y.numpy()), abs=1e-12)
    assert value < -0.1 < 0 < linear_cka(x, y).item()


def test_gram_and_feature_forms_agree():
    x, y = _data(11, 9, 5, 13)
    c = sim._prepare("test", x, y, None, 2)
    x_gram, y_gram = ((z @ z.mT) * r.square() for z, r in ((c.x, c.rx), (c.y, c.ry)))  # the features centred
    k, lam, _ = sim._unit_grams("test", x, y, None, 2)  # H G H: the Grams centred
    for gram in ((x_gram, y_gram), (k, lam)):
        gram_terms = (sim._inner(gram[0], gram[1]), sim._inner(gram[0], gram[0]), sim._inner(gram[1], gram[1]))
        for a, b in zip(gram_terms, sim._feature_terms(c)):
            assert a.item() == pytest.approx(b.item(), abs=1e-12)
    # through the public API: 5 real rows, p = q = 4 use the Gram form, 20 rows (15 padding) the feature form
    x, y = _data(12, 20, 4, 4)
    mask = torch.arange(20) < 5
    for fn in (linear_cka, gram_distance):
        assert fn(x, y, mask).item() == pytest.approx(fn(x[:5], y[:5]).item(), abs=1e-12)


def test_gram_centring_falls_back_to_centred_features_where_the_mean_dominates(monkeypatch):
    """Centring the n × n Gram cancels ‖mean‖² against the centred energy in float32: a side whose mean holds
    more than GRAM_CENTRING_LIMIT times its centred energy is centred as features instead — and stays precise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(32, 4096, generator=g)
    x = y + torch.randn(32, 4096, generator=g)
    offset = 300 * x.std() * torch.randn(4096, generator=g) / 4096**0.5 * 32**0.5  # ‖mean‖² ≈ 10⁵ × the spread
    fns = (linear_cka, debiased_cka, gram_distance)
    exact = [fn((x + offset).double(), y.double()).item() for fn in fns]
    calls = []
    real_centre = sim._centre
    monkeypatch.setattr(sim, "_centre", lambda *a, **k: calls.append((a[0], a[1])) or real_centre(*a, **k))
    for fn, value in zip(fns, exact):
        assert fn(x + offset, y).item() == pytest.approx(value, abs=2e-6), fn.__name__
    # each centred the features of x, whose mean dominates, and the Gram of y
    assert calls == [("linear_cka", "x"), ("debiased_cka", "x"), ("gram_distance", "x")]
    calls.clear()
    linear_cka(x, y)  # an ordinary side: Grams centred, the features untouched
    assert calls == []


@pytest.mark.parametrize(
    "fn", [linear_cka, debiased_cka, gram_distance, procrustes_distance, rbf_cka], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("shape", [(4, 8, 96), (4, 96, 8)], ids=["gram-form", "feature-form"])
def test_one_host_synchronisation_per_call(fn, shape, monkeypatch):
    """The value checks of a call (mask values, row counts, finiteness, the Gram route's precision) are read
    together: one read of tensor values into Python per call, whichever form computes it — and they still raise."""
    reads = count_reads(monkeypatch)
    x, y = torch.randn(*shape), torch.randn(*shape)
    mask = torch.ones(shape[:-1])
    mask[:, -3:] = 0
    fn(x, y, mask)
    monkeypatch.undo()
    assert len(reads) == 1, reads
    with pytest.raises(ValueError, match="0/1"):
        fn(x, y, mask * 2)
    with pytest.raises(ValueError, match="at least"):
        fn(x, y, torch.zeros_like(mask))
    x[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite values in x"):
        fn(x, y, mask)


@pytest.mark.parametrize("fn", [linear_cka, debiased_cka, gram_distance], ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(4, 8, 96), (4, 96, 8)], ids=["gram-form", "feature-form"])
def test_no_read_on_an_accelerator_inside_deferred_checks(fn, shape, monkeypatch):
    """On an accelerator (the CPU taken for one here), inside deferred_checks the CKAs and the Gram distance read no
    tensor value — the Gram form centres the features instead of reading whether it may centre the Gram —, give the
    CPU route's value and gradient, and their checks raise at the collector's read."""
    g = torch.Generator().manual_seed(5)
    x0, y = torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)
    x0 = x0 + 3.0  # a mean the Gram form has to take away
    mask = torch.ones(shape[:-1])
    mask[:, -3:] = 0

    def value_and_grad():
        x = x0.clone().requires_grad_(True)
        value = fn(x, y, mask)
        value.sum().backward()
        return value.detach(), x.grad

    expected, expected_grad = value_and_grad()
    monkeypatch.setattr(sim, "_on_accelerator", lambda z: True)
    with pytest.MonkeyPatch.context() as mp:
        reads = count_reads(mp)
        with sim.deferred_checks() as checks:
            got, got_grad = value_and_grad()
    assert reads == []
    assert checks.read(torch.isfinite(got).all()) is True
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=1e-10)
    for bad_mask, message in ((mask * 2, "0/1"), (torch.zeros_like(mask), "at least")):
        with sim.deferred_checks() as checks:
            fn(x0, y, bad_mask)  # nothing raised yet
        with pytest.raises(ValueError, match=message):
            checks.read()
    with pytest.raises(ValueError, match="0/1"):  # outside deferred_checks: raised by the call
        fn(x0, y, mask * 2)


@pytest.mark.parametrize(
    "fn", [linear_cka, debiased_cka, gram_distance, procrustes_distance, rbf_cka], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("path", ["cpu", "accelerator"])
def test_a_precomputed_target_gives_the_same_value_and_gradient(fn, path, monkeypatch):
    """compare_to_target(fn, x, y, target_gram(fn, y), x_gram) is fn(x, y): value and gradient (the FSDG centroid
    part, which passes the product x xᵀ it has already), on the CPU and on the accelerator path (which centres x)."""
    g = torch.Generator().manual_seed(3)
    y = torch.randn(12, 300, generator=g, dtype=torch.float64)
    x0 = (y @ torch.randn(300, 200, generator=g, dtype=torch.float64)) + torch.randn(
        12, 200, generator=g, dtype=torch.float64
    )
    if path == "accelerator":
        monkeypatch.setattr(sim, "_on_accelerator", lambda z: True)
    target = sim.target_gram(fn, y)
    assert (target is None) == (fn in (procrustes_distance, rbf_cka))
    values, grads = [], []
    for compute in (lambda x: fn(x, y), lambda x: sim.compare_to_target(fn, x, y, target, x_gram=x @ x.T)):
        x = x0.clone().requires_grad_(True)
        value = compute(x)
        value.backward()
        values.append(value.item())
        grads.append(x.grad)
    assert values[1] == pytest.approx(values[0], abs=1e-12)
    assert torch.allclose(grads[1], grads[0], atol=1e-12)


# ---------------------------------------------------------------- invariances (hypothesis)


@FAST
@pytest.mark.parametrize("fn", CKAS, ids=lambda f: f.__name__)
@given(seed=seeds, extra=st.integers(0, 6), p=widths, q=widths, scale=st.floats(1e-3, 1e3))
def test_cka_invariances(fn, seed, extra, p, q, scale):
    n = MIN_ROWS.get(fn, 2) + extra
    x, y = _data(seed, n, p, q)
    value = fn(x, y).item()
    shift = _t(np.random.default_rng(seed + 1).normal(0, 10, q))
    assert fn(x, x).item() == pytest.approx(1.0, abs=1e-9)
    assert fn(y, x).item() == pytest.approx(value, abs=1e-9)
    assert fn(x @ _orthogonal(seed, p), y).item() == pytest.approx(value, abs=1e-9)
    assert fn(x, y @ _orthogonal(seed + 2, q)).item() == pytest.approx(value, abs=1e-9)
    assert fn(scale * x, y).item() == pytest.approx(value, abs=1e-9)
    # y / 1e3 + a shift of ~10: four digits of y's signal are lost to the shift before centring (float64: ~1e-12
    # relative, squared by the Gram and the U-centring of the debiased estimator: ~1e-9); seed 238 found 1.03e-9
    assert fn(x, y / scale + shift).item() == pytest.approx(value, abs=1e-8)
    low = -1.0 if fn is debiased_cka else 0.0
    assert low - 1e-12 <= value <= 1 + 1e-12


@FAST
@pytest.mark.parametrize("fn", DISTANCES, ids=lambda f: f.__name__)
@given(seed=seeds, n=st.integers(2, 8), p=widths, q=widths, scale=st.floats(1e-3, 1e3))
def test_distance_invariances(fn, seed, n, p, q, scale):
    x, y = _data(seed, n, p, q)
    value = fn(x, y).item()
    # compared squared: the root amplifies float64 rounding of D² ≈ 0 (2e-16) to a distance of 1.5e-8
    assert fn(y, x).item() ** 2 == pytest.approx(value**2, abs=1e-12)
    assert fn(scale * x @ _orthogonal(seed, p) + 3.0, y).item() ** 2 == pytest.approx(value**2, abs=1e-9)
    assert -1e-12 <= value <= math.sqrt(2) + 1e-12


@pytest.mark.parametrize("fn", [linear_cka, rbf_cka], ids=lambda f: f.__name__)
def test_cka_not_invariant_to_general_linear_map(fn):
    x, _ = _data(0, 10, 3, 1)
    general = _t([[1.0, 2.0, 0.0], [0.0, 10.0, 0.0], [0.5, 0.0, 0.1]])  # invertible, not a scaled rotation
    assert fn(x, x @ (3 * _orthogonal(0, 3))).item() == pytest.approx(1.0, abs=1e-9)
    assert fn(x, x @ general).item() < 0.99


# ---------------------------------------------------------------- masking and batching


@FAST
@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@given(seed=seeds, batch=st.integers(1, 3), n=st.integers(4, 9), p=widths, q=widths, pad=st.integers(1, 4))
def test_masked_equals_submatrix_and_batched_equals_loop(fn, seed, batch, n, p, q, pad):
    rng = np.random.default_rng(seed)
    x, y = _data(seed, n, p, q, (batch,))
    need = MIN_ROWS.get(fn, 2)
    mask = np.zeros((batch, n), dtype=bool)
    for b in range(batch):
        mask[b, rng.choice(n, rng.integers(need, n + 1), replace=False)] = True
    mask = torch.from_numpy(mask)
    expected = torch.stack([fn(x[b][mask[b]], y[b][mask[b]]) for b in range(batch)])
    got = fn(x, y, mask)
    assert got.shape == (batch,)
    tol = 1e-7 if fn in DISTANCES else 1e-9  # a sqrt turns rounding noise ~1e-16 at D = 0 into ~1e-8
    torch.testing.assert_close(got, expected, atol=tol, rtol=0)
    torch.testing.assert_close(fn(x, y, mask.long()), expected, atol=tol, rtol=0)
    # appending more padding rows (with large garbage values) changes nothing
    garbage = 1e3 * torch.from_numpy(rng.standard_normal((batch, pad, p + q)))
    x2, y2 = torch.cat([x, garbage[..., :p]], -2), torch.cat([y, garbage[..., p:]], -2)
    mask2 = torch.cat([mask, torch.zeros(batch, pad, dtype=torch.bool)], -1)
    torch.testing.assert_close(fn(x2, y2, mask2.double()), expected, atol=tol, rtol=0)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_shapes_and_dtypes(fn):
    x, y = _data(5, 6, 3, 4, (2, 3))
    out = fn(x, y)
    assert out.shape == (2, 3) and out.dtype == torch.float64
    torch.testing.assert_close(out[1, 2], fn(x[1, 2], y[1, 2]))
    assert fn(x[0, 0], y[0, 0]).shape == ()
    single = fn(x.float(), y.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), out, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- gradients


GRAD_SHAPES = [(5, 3, 4), (4, 9, 7), (6, 2, 8)]  # n ≥ p, q; n < p, q; p < n < q


@pytest.mark.parametrize("n,p,q", GRAD_SHAPES)
@pytest.mark.parametrize(
    "fn",
    [linear_cka, debiased_cka, gram_distance, procrustes_distance, partial(procrustes_distance, squared=True)],
    ids=["linear_cka", "debiased_cka", "gram_distance", "procrustes_distance", "procrustes_squared"],
)
def test_gradcheck(fn, n, p, q):
    x, y = _data(n * p * q, n + 1, p, q)
    mask = torch.arange(n + 1) != 2  # one padding row
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, mask), (x, y))


@pytest.mark.parametrize("n,p,q", GRAD_SHAPES)
def test_gradcheck_rbf_with_bandwidth_held_constant(n, p, q, monkeypatch):
    """The bandwidth (median distance) is detached, so finite differences must hold it fixed too:
    _median_distance is patched to return its values at the base point (keyed by the side's width)."""
    x, y = _data(n + p + q, n + 1, p, q)
    mask = torch.arange(n + 1) != 0
    c = sim._prepare("rbf_cka", x, y, mask, 2)
    fixed = {z.shape[-1]: sim._median_distance(z, c.mask, c.counts) for z in c.unit()}
    x.requires_grad_(True)
    y.requires_grad_(True)
    free = torch.autograd.grad(rbf_cka(x, y, mask, sigma=0.8), (x, y))
    monkeypatch.setattr(sim, "_median_distance", lambda z, m, counts: fixed[z.shape[-1]])
    held = torch.autograd.grad(rbf_cka(x, y, mask, sigma=0.8), (x, y))
    for a, b in zip(free, held):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda a, b: rbf_cka(a, b, mask, sigma=0.8), (x, y))


@pytest.mark.parametrize("n,p", [(6, 4), (3, 5), (8, 8)])
@pytest.mark.parametrize("squared", [False, True])
def test_procrustes_gradient_finite_with_repeated_or_zero_singular_values(n, p, squared):
    rng = np.random.default_rng(n + p)
    rank_one = _t(np.outer(rng.standard_normal(n), rng.standard_normal(p)))  # one σ > 0, the rest 0
    centred = torch.linalg.qr(_t(np.column_stack([np.ones(n), rng.standard_normal((n, p))]))).Q[:, 1:]
    orthonormal = centred[:, :p]  # centred orthonormal columns: all singular values equal (repeated)
    padded_cols = torch.cat([rank_one[:, :1], torch.zeros(n, p - 1, dtype=torch.float64)], -1)
    for x in (rank_one, orthonormal, padded_cols):
        for y in (x.clone(), x @ _orthogonal(1, x.shape[-1])):
            x_, y_ = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
            out = procrustes_distance(x_, y_, squared=squared)
            gx, gy = torch.autograd.grad(out, (x_, y_))
            assert torch.isfinite(out) and torch.isfinite(gx).all() and torch.isfinite(gy).all()
            assert out.item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- Procrustes / Gram geometry


@FAST
@given(seed=seeds, n=st.integers(2, 9), p=widths, q=widths)
def test_procrustes_equals_scipy_orthogonal_procrustes(seed, n, p, q):
    x, y = _data(seed, n, p, q)
    xn, yn = np_normalise(x.numpy()), np_normalise(y.numpy())
    width = max(p, q)
    xp = np.pad(xn, ((0, 0), (0, width - p)))
    yp = np.pad(yn, ((0, 0), (0, width - q)))
    rot, _ = orthogonal_procrustes(xp, yp)
    expected = np.linalg.norm(xp @ rot - yp) ** 2
    assert procrustes_distance(x, y, squared=True).item() == pytest.approx(expected, abs=1e-9)


@FAST
@given(seed=seeds, n=st.integers(2, 9), p=widths, extra=st.integers(0, 4))
def test_distances_vanish_exactly_for_orthogonal_maps(seed, n, p, extra):
    q = p + extra
    x, _ = _data(seed, n, p, 1)
    rows = torch.linalg.qr(_t(np.random.default_rng(seed).standard_normal((q, p)))).Q.T  # p × q, QQᵀ = I
    y = 2.5 * x @ rows - 1.0
    assert procrustes_distance(x, y).item() == pytest.approx(0.0, abs=1e-6)
    assert gram_distance(x, y).item() == pytest.approx(0.0, abs=1e-6)
    if n > 2 and p > 1:  # an anisotropic scaling changes the shape (needs ≥ 2 centred dimensions)
        stretched = x * _t(np.arange(1, p + 1) ** 2)
        assert procrustes_distance(x, stretched).item() > 1e-3
        assert gram_distance(x, stretched).item() > 1e-3


def test_equal_cka_different_geometry():
    """Bhattarai et al. 2025: CKA does not determine the geometry.

    Construction: X̃ = U diag(√u), Y_i = U diag(√v_i) with U (n × 2) orthonormal, centred columns and
    u, v_i on the simplex (so each side has unit Frobenius norm). Then K̃ = U diag(u) Uᵀ and
    CKA(X, Y_i) = cos∠(u, v_i), while ‖X̃ᵀỸ_i‖_* = Σ √(u_k v_ik) and D_FG = ‖u − v_i‖. With u = (0.8, 0.2),
    v_1 = (0.7, 0.3) lies on one side of u and v_2 = (α, 1 − α) with α > 0.8 is solved for the same cosine:
    equal CKA, different Procrustes and Gram distances. Y_2 is also embedded in 3 dimensions.
    """
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(np.column_stack([np.ones(6), rng.standard_normal((6, 2))]))[0][:, 1:]  # ⊥ 1
    u = np.array([0.8, 0.2])

    def cos(alpha):
        v = np.array([alpha, 1 - alpha])
        return u @ v / (np.linalg.norm(u) * np.linalg.norm(v))

    alpha2 = brentq(lambda a: cos(a) - cos(0.7), 0.8, 1.0, xtol=1e-15)
    x = _t(basis * np.sqrt(u))
    y1 = _t(basis * np.sqrt([0.7, 0.3]))
    y2 = _t(np.pad(basis * np.sqrt([alpha2, 1 - alpha2]), ((0, 0), (0, 1))))
    assert linear_cka(x, y1).item() == pytest.approx(linear_cka(x, y2).item(), abs=1e-6)
    assert linear_cka(x, y1).item() == pytest.approx(cos(0.7), abs=1e-12)
    d1, d2 = procrustes_distance(x, y1).item(), procrustes_distance(x, y2).item()
    assert d1 == pytest.approx(math.sqrt(2 - 2 * (math.sqrt(0.56) + math.sqrt(0.06))), abs=1e-9)
    assert d2 - d1 > 0.05
    assert gram_distance(x, y2).item() - gram_distance(x, y1).item() > 0.02


# ---------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_single_row_raises(fn):
    need = MIN_ROWS.get(fn, 2)
    message = rf"{fn.__name__} needs at least {need} rows per set, got 1 \(a batch of one sample\?\)"
    with pytest.raises(ValueError, match=message):
        fn(torch.randn(1, 4), torch.randn(1, 3))
    x, y = _data(0, 5, 2, 3, (2,))
    mask = torch.ones(2, 5)
    mask[1, 1:] = 0
    with pytest.raises(ValueError, match="got 1"):
        fn(x, y, mask)


def test_debiased_needs_four_rows():
    with pytest.raises(ValueError, match="debiased_cka needs at least 4 rows per set, got 3"):
        debiased_cka(torch.randn(3, 4), torch.randn(3, 3))


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_constant_features(fn, dtype):
    """A zero-variance side: CKA 0 and distances against the zero matrix (D_P = 1, D_FG = ‖ỸỸᵀ‖_F),
    finite gradients, zero for the constant side."""
    n = 7
    const = torch.full((n, 5), 0.1, dtype=dtype) + torch.arange(5, dtype=dtype)  # all rows equal
    other = torch.randn(n, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    unit = np_normalise(other.double().numpy())
    against_zero = {procrustes_distance: 1.0, gram_distance: float(np.linalg.norm(unit @ unit.T))}
    for x, y, expected in ((const, other, against_zero.get(fn, 0.0)), (const, const[:, :2] * 3, 0.0)):
        x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        out = fn(x, y)
        gx, gy = torch.autograd.grad(out, (x, y))
        assert out.item() == pytest.approx(expected, abs=1e-6)
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
        assert torch.count_nonzero(gx) == 0
        if fn in CKAS:
            assert torch.count_nonzero(gy) == 0


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_invalid_inputs_raise(fn):
    x, y = torch.randn(5, 3), torch.randn(5, 4)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite values in x"):
        fn(bad, y)
    with pytest.raises(ValueError, match="non-finite values in y"):
        fn(x, torch.cat([y[:4], torch.full((1, 4), float("inf"))]))
    with pytest.raises(ValueError, match=r"x \(5, 3\) and y \(4, 4\)"):
        fn(x, y[:4])
    with pytest.raises(ValueError, match=r"x \(2, 5, 3\) and y \(3, 5, 4\)"):
        fn(x.expand(2, 5, 3), y.expand(3, 5, 4))
    with pytest.raises(ValueError, match="x and y must be"):
        fn(x[0], y[0])
    with pytest.raises(ValueError, match=r"mask must have shape \(5,\)"):
        fn(x, y, torch.ones(4))
    with pytest.raises(ValueError, match="0/1"):
        fn(x, y, torch.full((5,), 2.0))
    masked_nan = torch.cat([x, torch.full((1, 3), float("nan"))])  # non-finite even in a padding row
    with pytest.raises(ValueError, match="non-finite values in x"):
        fn(masked_nan, torch.cat([y, y[:1]]), torch.arange(6) < 5)
    with pytest.raises(ValueError, match="values too large for its dtype in y"):  # squares overflow float32
        fn(x, y * 1e30)


def test_float32_accuracy_in_the_fsdl_view():
    """32 rows of 24,576 values (the FSDL view): float32 within a few 1e-6 of float64, debiased included."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(32, 24576, generator=g)
    x = 0.3 * y + torch.randn(32, 24576, generator=g) + 5.0  # correlated, with a large common offset
    for fn in (linear_cka, debiased_cka, gram_distance):
        exact = fn(x.double(), y.double()).item()
        assert fn(x, y).item() == pytest.approx(exact, abs=1e-5), fn.__name__


def test_rbf_rejects_nonpositive_sigma():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        rbf_cka(torch.randn(4, 2), torch.randn(4, 2), sigma=0.0)


def test_rbf_with_duplicated_rows_stays_finite():
    """More than half of the pairs coincide: median distance 0, the mean distance is used instead."""
    x = _t([[0.0, 0.0]] * 4 + [[1.0, 2.0]])
    y = _t([[1.0], [2.0], [3.0], [4.0], [5.0]]).requires_grad_(True)
    out = rbf_cka(x, y)
    (grad,) = torch.autograd.grad(out, y)
    assert 0 < out.item() <= 1 and torch.isfinite(grad).all()
