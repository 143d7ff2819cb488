"""Similarities and distances between two descriptions of the same set of rows (pure tensor code).

Every function compares ``x: (..., n, p)`` with ``y: (..., n, q)``: the same ``n`` rows (tokens of a
sample, samples of a batch, ...) seen in two feature spaces whose widths may differ. An optional
``mask: (..., n)`` (bool or 0/1; 1 = real row) excludes padding rows *exactly*: the result equals the
function applied to the sub-matrix of real rows. The result has the leading shape ``(...)`` (a 0-d tensor
for 2-D inputs); leading dimensions are processed as one batch, without a Python loop.

- :func:`linear_cka`, :func:`rbf_cka`, :func:`debiased_cka`: Centered Kernel Alignment (Kornblith et al.
  2019), a similarity in [0, 1] (the debiased estimator may be slightly negative).
- :func:`procrustes_distance`, :func:`gram_distance`: the geometry-aware distances of Bhattarai et al.
  (2025), 0 exactly when ``Ỹ = X̃ Q`` for an orthogonal ``Q``.

Half-precision inputs (bfloat16, float16: the features of a mixed-precision forward pass) are computed
in float32; float64 stays float64. All inputs are first centred over the real rows (padding rows are then
zero); every measure is invariant to translation and isotropic scaling, so each side is then taken at unit
Frobenius norm — applied to the small n × n or p × q products where possible rather than to the features. In the
n × n Gram form (n rows small against the widths: the FSDL view compares 32 rows of 49,152 values) the centring
too is applied to the Gram (``H z zᵀ H``), so a large input is touched by one matrix product forward and one
backward. :func:`target_gram` and :func:`compare_to_target` compute a constant side (the teacher memory) once.

Degenerate input never yields NaN values or gradients:

- fewer than 2 real rows (4 for :func:`debiased_cka`) in any batch element, mismatched shapes, a mask
  that is not 0/1, or non-finite values anywhere in ``x`` or ``y`` (or values so large that their squares
  overflow the dtype) raise :class:`ValueError`;
- a side with zero variance (all real rows equal, up to a relative tolerance of the dtype's machine
  epsilon) makes CKA undefined; it is returned as 0, so that a loss ``−log(CKA + ε)`` stays finite and its
  gradient is zero. The distances take such a side as the zero matrix (against a non-degenerate ``Ỹ``:
  ``D_P = 1`` and ``D_FG = ‖ỸỸᵀ‖_F``; 0 if both sides are degenerate).

The checks that depend on values (the mask's 0/1 values and row counts, finiteness, and in the Gram form whether
a side's mean dominates) are read together: one read of tensor values per call. On an accelerator, where a read is a
host–device synchronisation, the CKAs and the Gram distance take none: the Gram form centres the features (one more
pass over them) instead of reading whether the Gram may be centred, and inside :func:`deferred_checks` (the trainer
opens it around a step's forward) their checks are collected and read with the step's own finiteness check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

import torch

from fsdkit.errors import NonFiniteError

__all__ = [
    "DeferredChecks",
    "compare_to_target",
    "debiased_cka",
    "deferred_checks",
    "gram_distance",
    "linear_cka",
    "procrustes_distance",
    "rbf_cka",
    "target_gram",
]


class _Centred(NamedTuple):
    """Validated, centred inputs: ``x̃ = H_m x``, ``ỹ = H_m y`` (zero on padding rows, *not* scaled), the
    inverse norms ``rx = 1/‖x̃‖_F``, ``ry = 1/‖ỹ‖_F`` (0 for a zero-variance side), shape ``(...)``, the
    float mask (``None`` when every row is real) and the number of real rows per batch element."""

    x: torch.Tensor
    y: torch.Tensor
    rx: torch.Tensor
    ry: torch.Tensor
    mask: torch.Tensor | None
    counts: torch.Tensor

    def unit(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x̃/‖x̃‖_F, ỹ/‖ỹ‖_F)``: the centred features at unit Frobenius norm (zero for a degenerate side)."""
        return self.x * self.rx[..., None, None], self.y * self.ry[..., None, None]


class DeferredChecks:
    """Checks on tensor values, read together: a call's value-dependent validation (mask, row counts, finiteness,
    the precision route) costs one read instead of one per check; inside :func:`deferred_checks`, the checks of calls
    on an accelerator are handed to the collector that it opened, to be read once for the whole step."""

    def __init__(self):
        self.conditions: list[torch.Tensor] = []
        self.errors: list[Callable[[], Exception]] = []

    def require(self, ok: torch.Tensor, error: Callable[[], Exception]) -> None:
        """Raise ``error()`` at the next :meth:`read` unless ``ok`` (a 0-d bool tensor) holds."""
        self.conditions.append(ok)
        self.errors.append(error)

    def read(self, value: torch.Tensor | None = None, defer: bool = False):
        """Read every pending check and ``value`` (0-d) in one synchronisation; raise the first failed check's error;
        return ``value`` as a Python number. ``defer``: checks on an accelerator go to the open :func:`deferred_checks`
        collector, if any, instead (nothing is read; a failed check then raises at the collector's read)."""
        collector = _COLLECTOR.get()
        if (
            defer
            and value is None
            and collector is not None
            and self.conditions
            and _on_accelerator(self.conditions[0])
        ):
            collector.conditions += self.conditions
            collector.errors += self.errors
            self.conditions, self.errors = [], []
            return None
        if not self.conditions:
            return None if value is None else value.item()
        dtype = torch.float32 if value is None else value.dtype
        got = torch.stack(
            [c.to(dtype) for c in self.conditions] + ([] if value is None else [value.reshape(())])
        ).tolist()
        conditions, errors = self.conditions, self.errors
        self.conditions, self.errors = [], []
        for ok, error in zip(got, errors):
            if not ok:
                raise error()
        return None if value is None else got[len(conditions)]


_COLLECTOR: ContextVar[DeferredChecks | None] = ContextVar("fsdkit_deferred_checks", default=None)


@contextmanager
def deferred_checks() -> Iterator[DeferredChecks]:
    """Collect the value checks of the similarities computed inside on an accelerator, instead of one read (a
    host–device synchronisation) per call; the caller reads them once, e.g. with its own value::

        with deferred_checks() as checks:
            loss = linear_cka(x, y, mask)
        finite = checks.read(torch.isfinite(loss))  # raises the first failed check's ValueError

    On the CPU, where a read is free, each call reads its own checks as outside this context."""
    checks = DeferredChecks()
    token = _COLLECTOR.set(checks)
    try:
        yield checks
    finally:
        _COLLECTOR.reset(token)


def _on_accelerator(z: torch.Tensor) -> bool:
    """Whether reading ``z``'s values would synchronise the host with a device (anything but the CPU)."""
    return z.device.type != "cpu"


def _non_finite(name: str, label: str, z: torch.Tensor) -> NonFiniteError:
    problem = "non-finite values" if not torch.isfinite(z).all() else "values too large for its dtype"
    return NonFiniteError(f"{name}: {problem} in {label}")


def _too_few_rows(name: str, min_rows: int, got: int) -> ValueError:
    hint = " (a batch of one sample?)" if got == 1 else ""
    return ValueError(f"{name} needs at least {min_rows} rows per set, got {got}{hint}")


class _Checked(NamedTuple):
    """Validated inputs in the computing dtype, the float mask (``None`` when every row is real), the number
    of real rows per batch element, and the checks on the mask's values still to be read (:class:`DeferredChecks`)."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None
    counts: torch.Tensor
    deferred: DeferredChecks


def _check(name: str, x: torch.Tensor, y: torch.Tensor, mask, min_rows: int) -> _Checked:
    """Validate the shapes, the mask's shape and the row counts without a mask; cast to the computing dtype (at least
    float32). The checks of a mask's values (0/1, enough real rows) are deferred to the caller's one read."""
    if x.dim() < 2 or y.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"{name}: x and y must be (..., n, p) and (..., n, q) with the same n and leading dims, "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    # at least float32: half-precision features (autocast) are upcast here, so a bf16 run's structure losses are
    # as precise as a float32 run's (a bf16 CKA is off by ~5e-4, fp16 flattened rows overflow their squares)
    dtype = torch.promote_types(dtype, torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    deferred = DeferredChecks()
    if mask is None:
        if x.shape[-2] < min_rows:
            raise _too_few_rows(name, min_rows, x.shape[-2])
        return _Checked(x, y, None, x.new_full(x.shape[:-2], float(x.shape[-2])), deferred)
    m = torch.as_tensor(mask, device=x.device).to(dtype)
    if m.shape != x.shape[:-1]:
        raise ValueError(
            f"{name}: mask must have shape {tuple(x.shape[:-1])} (x without its last dim), got {tuple(m.shape)}"
        )
    deferred.require(
        ((m == 0) | (m == 1)).all(), lambda: ValueError(f"{name}: mask must hold only 0/1 (or bool) values")
    )
    counts = m.sum(-1)
    if counts.numel():
        deferred.require(counts.min() >= min_rows, lambda: _too_few_rows(name, min_rows, int(counts.min())))
    return _Checked(x, y, m, counts, deferred)


def _prepare(
    name: str, x: torch.Tensor, y: torch.Tensor, mask, min_rows: int, ratio: bool = False, defer: bool = False
) -> _Centred:
    """Validate the inputs (:func:`_check`) and centre the features; see :class:`_Centred`.

    ``ratio=True`` is for measures computed as a ratio that is itself invariant to scaling each centred
    side (the CKAs): the inverse norms then carry no gradient, because their exact contribution is zero
    (Euler: ``⟨∇f(w), w⟩ = 0`` for f of degree 0), and the backward pass skips one pass over each input.
    ``defer``: the checks may wait for an open :func:`deferred_checks` (measures whose computation cannot fail on
    input that fails them).
    """
    x, y, m, counts, deferred = _check(name, x, y, mask, min_rows)
    (xc, rx), (yc, ry) = (_centre(name, label, z, m, counts, ratio, deferred) for label, z in (("x", x), ("y", y)))
    deferred.read(defer=defer)
    return _Centred(xc, yc, rx, ry, m, counts)


def _centre(
    name: str,
    label: str,
    z: torch.Tensor,
    m: torch.Tensor | None,
    counts: torch.Tensor,
    detach: bool,
    deferred: DeferredChecks,
):
    """``(z̃, r)``: ``z`` minus the mean of its real rows, padding rows zeroed, and ``r = 1/‖z̃‖_F``.

    ``r = 0`` (zero variance) when the centred energy ``‖z̃‖²`` is at most ``eps`` (machine epsilon) times
    the uncentred energy ``‖z̃‖² + count·‖mean‖²``. Non-finite values in ``z`` make that energy non-finite,
    so one check on ``(...)``-shaped sums replaces a pass over ``z`` (added to ``deferred``, for the caller to
    read). ``detach``: ``r`` carries no gradient.
    """
    if m is None:
        mean = z.mean(-2, keepdim=True)
        zc = z - mean
    else:
        mean = (m[..., None, :] @ z) / counts[..., None, None]
        zc = (z - mean) * m[..., None]
    norm = torch.linalg.vector_norm(
        zc.detach() if detach else zc, dim=(-2, -1)
    )  # one fused, cascade-summed pass; gradient 0 at 0
    energy = norm.square()
    total = energy + counts * mean.square().sum((-2, -1))
    deferred.require(torch.isfinite(total).all(), lambda: _non_finite(name, label, z))
    varies = energy > torch.finfo(z.dtype).eps * total
    safe = torch.where(varies, norm, torch.ones_like(norm))  # no infinite gradient in the branch not taken
    return zc, torch.where(varies, 1 / safe, torch.zeros_like(norm))


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Frobenius inner product over the last two dims."""
    return (a * b).sum((-2, -1))


def _use_gram(n: int, p: int, q: int, margin: float = 1.0) -> bool:
    """Whether to use the n × n Grams (n²(p+q) multiply-adds) rather than the feature products
    (n(p² + q² + pq)): unless the feature products are ``margin`` times cheaper."""
    return n * (p + q) < margin * (p * p + q * q + p * q)


def _gram_route(x: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> bool:
    return x.dim() >= 2 and y.dim() >= 2 and _use_gram(x.shape[-2], x.shape[-1], y.shape[-1], margin)


class _SelfGram(torch.autograd.Function):
    """``G = z zᵀ`` with the backward ``ż = (Ġ + Ġᵀ) z``: one product of the large ``z`` instead of the two
    (and their sum) that autograd makes when ``z`` enters ``z @ z.mT`` twice."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z @ z.mT

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return (grad + grad.mT) @ z


def _self_gram(z: torch.Tensor) -> torch.Tensor:
    return _SelfGram.apply(z) if z.requires_grad else z @ z.mT


#: the Gram route centres the n × n Gram (``HGH``) instead of the features; it falls back to centring the
#: features where a side's uncentred energy ``Σ‖z_i‖²`` exceeds this many times its centred energy ``‖z̃‖²``
#: (float32 cancellation in ``HGH`` grows with that ratio: at 10, linear CKA stays within 3e-7 of float64; BERT
#: hidden states have a ratio of 1.1–1.6, per sample over tokens and over a batch's flattened rows)
GRAM_CENTRING_LIMIT = 16.0


def _double_centre(g: torch.Tensor, m: torch.Tensor | None, counts: torch.Tensor):
    """``(G_m, H_m G H_m, Σ_i ‖z_i‖², ‖H_m z‖_F²)`` of Grams ``g: (..., n, n)`` (``counts`` broadcast against
    ``(...)``): the Gram with padding rows and columns zeroed, its double-centred form, their traces."""
    if m is None:
        row = g.mean(-1)
        mean_sq = row.mean(-1)  # ‖mean‖²
        k = g.sub(row[..., :, None]).sub_(row[..., None, :]).add_(mean_sq[..., None, None])
    else:
        pair = m[..., :, None] * m[..., None, :]
        g = g * pair
        row = g.sum(-1) / counts[..., None]
        mean_sq = row.sum(-1) / counts
        k = g.sub(row[..., :, None]).sub_(row[..., None, :]).add_(mean_sq[..., None, None]).mul_(pair)
    return g, k, g.diagonal(dim1=-2, dim2=-1).sum(-1), k.diagonal(dim1=-2, dim2=-1).sum(-1)


def _feature_centred_gram(
    name: str, label: str, z: torch.Tensor, m: torch.Tensor | None, counts: torch.Tensor, deferred: DeferredChecks
) -> torch.Tensor:
    """``K̃`` of :func:`_centred_gram` from the centred features (exact whatever the mean: a zero-variance side gives
    the zero matrix); the finiteness check is added to ``deferred``, not read."""
    zc, r = _centre(name, label, z, m, counts, False, deferred)
    return _self_gram(zc) * r.square()[..., None, None]


def _centred_gram(
    name: str,
    label: str,
    z: torch.Tensor,
    m: torch.Tensor | None,
    counts: torch.Tensor,
    deferred: DeferredChecks,
    gram: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Gram of the centred real rows at unit trace, ``K̃ = H_m z zᵀ H_m / ‖H_m z‖_F²`` (padding rows and
    columns zero), by double-centring the n × n Gram: one pass over ``z`` forward (``z zᵀ``) and one backward
    (``(Ġ + Ġᵀ) z``), no centred copy of the features. Where the mean so dominates (:data:`GRAM_CENTRING_LIMIT`;
    zero variance included) that the Gram's cancellation would be imprecise, the features are centred instead
    (:func:`_feature_centred_gram`). On an accelerator the features are always centred: that costs one more pass,
    where reading whether the Gram may be centred would cost a synchronisation. ``gram``: the product ``z zᵀ`` when
    the caller has it already; ``deferred``: the call's checks still to be read (read here)."""
    if _on_accelerator(z):
        k = _feature_centred_gram(name, label, z, m, counts, deferred)
        deferred.read(defer=True)
        return k
    _, k, total, energy = _double_centre(_self_gram(z) if gram is None else gram, m, counts)
    if _gram_checks(name, ((label, z),), total[..., None], energy[..., None], deferred):
        k = _feature_centred_gram(name, label, z, m, counts, deferred)
        deferred.read()
        return k
    return k / energy[..., None, None]


def _gram_checks(name: str, sides, total: torch.Tensor, energy: torch.Tensor, deferred: DeferredChecks) -> bool:
    """Raise on non-finite Grams (``total``, ``energy``: ``(..., S)`` for the S ``(label, z)`` sides) and on the
    ``deferred`` checks; whether some side's mean dominates (:data:`GRAM_CENTRING_LIMIT`). One read for every check
    of the call."""
    if total.numel() == 0:
        deferred.read()
        return False
    worst = deferred.read(
        (energy * GRAM_CENTRING_LIMIT - total).min()
    )  # finite and > 0: every check passes (NaN propagates)
    if worst > 0 and worst != float("inf"):
        return False
    bad, imprecise = torch.stack([~torch.isfinite(total).all(), (energy * GRAM_CENTRING_LIMIT <= total).any()]).tolist()
    if bad:  # the first side at fault, named
        at_fault = (~torch.isfinite(total)).reshape(-1, len(sides)).any(0).tolist()
        label, z = next(side for side, fault in zip(sides, at_fault) if fault)
        raise _non_finite(name, label, z)
    return imprecise


def _unit_grams(name: str, x: torch.Tensor, y: torch.Tensor, mask, min_rows: int):
    """``(K̃, Λ̃, n)``: validated inputs (:func:`_check`) as their centred Grams at unit trace
    (:func:`_centred_gram`), and the number of real rows (a float without a mask: the formulas in ``n`` then take no
    tensor operations; else per batch element). Each side is centred on its own (a side without gradient, the
    teacher's, then costs no backward), and both are checked together: one read for the two."""
    x, y, m, counts, deferred = _check(name, x, y, mask, min_rows)
    n = float(x.shape[-2]) if m is None else counts
    if _on_accelerator(x):  # centre the features: no read (see _centred_gram)
        kx, ky = (_feature_centred_gram(name, label, z, m, counts, deferred) for label, z in (("x", x), ("y", y)))
        deferred.read(defer=True)
        return kx, ky, n
    sides = [_double_centre(_self_gram(z), m, counts) for z in (x, y)]
    total = torch.stack([side[2] for side in sides], -1)
    energy = torch.stack([side[3] for side in sides], -1)
    if _gram_checks(
        name, (("x", x), ("y", y)), total, energy, deferred
    ):  # rare: centre the features of the side(s) at fault
        return _centred_gram(name, "x", x, m, counts, deferred), _centred_gram(name, "y", y, m, counts, deferred), n
    (_, kx, _, ex), (_, ky, _, ey) = sides
    return kx / ex[..., None, None], ky / ey[..., None, None], n


def _feature_terms(c: _Centred):
    """``(⟨K̃, Λ̃⟩, ‖K̃‖², ‖Λ̃‖²)`` for the unit-norm centred features from the feature-space products
    ``‖ỹᵀx̃‖²``, ``‖x̃ᵀx̃‖²``, ``‖ỹᵀỹ‖²`` (equal to the n × n Gram form; cheaper when n is large against p, q)."""
    rx, ry = c.rx[..., None, None], c.ry[..., None, None]
    xy, xx, yy = (c.x.mT @ c.y) * (rx * ry), (c.x.mT @ c.x) * rx.square(), (c.y.mT @ c.y) * ry.square()
    return _inner(xy, xy), _inner(xx, xx), _inner(yy, yy)


def _ratio(num: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``num / sqrt(a · b)``; 0 (with zero gradient) unless ``a > 0`` and ``b > 0``."""
    ok = torch.minimum(a, b) > 0
    den = torch.where(ok, a * b, 1.0).rsqrt()
    return torch.where(ok, num * den, 0.0)


def _safe_sqrt(d2: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(d2, 0))`` whose gradient stays finite at 0."""
    return d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt()


def _linear_from_grams(k: torch.Tensor, lam: torch.Tensor, n: torch.Tensor | float) -> torch.Tensor:
    """Linear CKA ``⟨K̃, Λ̃⟩ / (‖K̃‖_F ‖Λ̃‖_F)`` from the centred unit-trace Grams."""
    return _ratio(_inner(k, lam), _inner(k, k), _inner(lam, lam))


def linear_cka(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Linear CKA between ``x: (..., n, p)`` and ``y: (..., n, q)``; returns ``(...)`` in [0, 1].

    ``K = XXᵀ``, ``Λ = YYᵀ``, ``H = I − 11ᵀ/n``, ``HSIC(K, Λ) = tr(KHΛH)/(n − 1)²`` and
    ``CKA = HSIC(K, Λ) / sqrt(HSIC(K, K) · HSIC(Λ, Λ))``, computed as ``⟨K̃, Λ̃⟩ / (‖K̃‖_F ‖Λ̃‖_F)`` with
    ``K̃ = X̃X̃ᵀ`` (n × n Grams) or, when cheaper (n large against p, q), as the equal feature-space form
    ``‖ỸᵀX̃‖_F² / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)``, with ``X̃ = HX``. ``mask: (..., n)`` marks real rows.
    Needs n ≥ 2 real rows. A zero-variance side makes CKA undefined; returned as 0 so that a loss
    ``−log(CKA + ε)`` stays finite and its gradient is zero.
    """
    if _gram_route(x, y):
        return _linear_from_grams(*_unit_grams("linear_cka", x, y, mask, 2))
    return _ratio(*_feature_terms(_prepare("linear_cka", x, y, mask, 2, ratio=True, defer=True)))


@torch.no_grad()
def _median_distance(z: torch.Tensor, m: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Median of the pairwise Euclidean distances between the real rows of ``z``, shape ``(...)``.

    The lower median of the ``k(k − 1)/2`` distances between distinct real rows; the mean distance if that
    median is 0 (at least half of the pairs coincide), 1 if all real rows coincide. No gradient.
    """
    n = z.shape[-2]
    i, j = torch.triu_indices(n, n, 1, device=z.device)
    dist = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")[..., i, j]
    real = (m[..., i] * m[..., j]) > 0
    pairs = (counts * (counts - 1) / 2).round().long()
    ordered = torch.where(real, dist, torch.inf).sort(-1).values
    median = ordered.gather(-1, ((pairs - 1) // 2)[..., None]).squeeze(-1)
    width = torch.where(median > 0, median, torch.where(real, dist, 0).sum(-1) / pairs)
    return torch.where(width > 0, width, torch.ones_like(width))


def _rbf_centred_gram(z: torch.Tensor, m: torch.Tensor, counts: torch.Tensor, sigma: float) -> torch.Tensor:
    """Masked, double-centred RBF Gram ``H K H`` of the real rows of ``z`` (zero on padding rows)."""
    g = z @ z.mT
    sq = g.diagonal(dim1=-2, dim2=-1)
    d2 = (sq[..., :, None] + sq[..., None, :] - 2 * g).clamp_min(0)
    width = sigma * _median_distance(z, m, counts)
    pair_mask = m[..., :, None] * m[..., None, :]
    k = torch.exp(-d2 / (2 * width.square())[..., None, None]) * pair_mask
    row = k.sum(-1) / counts[..., None]
    total = row.sum(-1) / counts
    return (k - row[..., :, None] - row[..., None, :] + total[..., None, None]) * pair_mask


def rbf_cka(x: torch.Tensor, y: torch.Tensor, mask=None, sigma: float = 1.0) -> torch.Tensor:
    """RBF-kernel CKA between ``x: (..., n, p)`` and ``y: (..., n, q)``; returns ``(...)`` in [0, 1].

    ``K_ij = exp(−‖x_i − x_j‖² / (2 s_x²))`` with bandwidth ``s_x = sigma × median pairwise Euclidean
    distance`` among the real rows (per side and batch element; the lower median over distinct pairs,
    the mean distance if that median is 0), likewise ``Λ`` for ``y``; then
    ``CKA = ⟨HKH, HΛH⟩ / (‖HKH‖_F ‖HΛH‖_F)`` as for :func:`linear_cka`. The bandwidth is computed on the
    centred, unit-Frobenius rows and treated as a constant (detached) for the gradient; the median makes
    the value invariant to isotropic scaling. Large ``sigma`` tends to :func:`linear_cka`.
    Needs n ≥ 2 real rows; a zero-variance side gives 0 (undefined; returned as 0 so that a loss
    ``−log(CKA + ε)`` stays finite and its gradient is zero).
    """
    if not sigma > 0:
        raise ValueError(f"rbf_cka: sigma must be > 0, got {sigma}")
    c = _prepare("rbf_cka", x, y, mask, 2)
    m = c.mask if c.mask is not None else c.x.new_ones(c.x.shape[:-1])
    kx, ky = (_rbf_centred_gram(z, m, c.counts, sigma) for z in c.unit())
    return _ratio(_inner(kx, ky), _inner(kx, kx), _inner(ky, ky))


def _unbiased_from_features(dot, rows_a, rows_b, norm_a, norm_b, n):
    """The same for centred features, from ``dot = ⟨K̃_a, K̃_b⟩`` and the Gram diagonals (squared row norms)
    ``rows_a``, ``rows_b`` with sums ``norm_a``, ``norm_b`` (Kornblith et al.'s
    ``_debiased_dot_product_similarity_helper``): ``dot − n/(n−2)·⟨rows_a, rows_b⟩ + norm_a·norm_b/((n−1)(n−2))``."""
    return dot - n / (n - 2) * (rows_a * rows_b).sum(-1) + norm_a * norm_b / ((n - 1) * (n - 2))


def _debiased_from_grams(k: torch.Tensor, lam: torch.Tensor, n: torch.Tensor | float) -> torch.Tensor:
    """Debiased CKA from the centred unit-trace Grams (``HSIC₁`` depends on neither centring nor scale). With ``Å``
    a Gram with its diagonal zeroed (padding rows and columns are zero),
    ``n(n−3)·HSIC₁(A, B) = ⟨Å, B̊⟩ + 1ᵀÅ1·1ᵀB̊1/((n−1)(n−2)) − 2/(n−2)·1ᵀÅB̊1``, for the three pairs at once: the two
    Grams stacked (``s``), their products ``⟨s_a, s_b⟩`` and ``s_a1·s_b1`` in one product each (the zero-diagonal
    products are formed explicitly, so the large diagonal never enters a difference: accurate in float32)."""
    s0 = torch.stack([k, lam], -3)
    s0.diagonal(dim1=-2, dim2=-1).zero_()
    rows = s0.sum(-1)  # (..., 2, n): Å1
    totals = rows.sum(-1)  # (..., 2): 1ᵀÅ1
    flat = s0.flatten(-2)
    n = n[..., None, None] if isinstance(n, torch.Tensor) else n
    u = (
        flat @ flat.mT
        + totals[..., :, None] * totals[..., None, :] / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (rows @ rows.mT)
    )
    return _ratio(u[..., 0, 1], u[..., 0, 0], u[..., 1, 1])


def debiased_cka(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Linear CKA with the unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021); returns ``(...)``.

    ``HSIC₁(K, Λ) = [tr(K̊Λ̊) + 1ᵀK̊1·1ᵀΛ̊1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̊Λ̊1] / (n(n−3))`` with ``K̊``, ``Λ̊``
    the linear Grams with zeroed diagonals, and ``CKA = HSIC₁(K, Λ) / sqrt(HSIC₁(K, K) · HSIC₁(Λ, Λ))``
    (equal to Kornblith et al.'s ``cka(..., debiased=True)``), computed in the cheaper Gram or feature form
    from the centred features. ``x: (..., n, p)``, ``y: (..., n, q)``, ``mask: (..., n)``; ``n`` is the number
    of real rows, at least 4. Unlike the biased estimator it can be slightly negative (down to −1) for
    unrelated sets; it is at most 1. Returned as 0 (zero gradient) when a side has zero variance or a
    self-term ``HSIC₁`` is not positive.
    """
    if _gram_route(x, y):
        return _debiased_from_grams(*_unit_grams("debiased_cka", x, y, mask, 4))
    c = _prepare("debiased_cka", x, y, mask, 4, ratio=True, defer=True)
    n = c.counts
    xy, xx, yy = _feature_terms(c)
    rx, ry = c.x.square().sum(-1) * c.rx.square()[..., None], c.y.square().sum(-1) * c.ry.square()[..., None]
    sx, sy = rx.sum(-1), ry.sum(-1)
    return _ratio(
        _unbiased_from_features(xy, rx, ry, sx, sy, n),
        _unbiased_from_features(xx, rx, rx, sx, sx, n),
        _unbiased_from_features(yy, ry, ry, sy, sy, n),
    )


def _row_space(z: torch.Tensor) -> torch.Tensor:
    """``z`` in an orthonormal basis ``B`` of its row space, ``zB: (..., n, n)``, when ``n`` < width.

    ``B`` (reduced QR of ``zᵀ``) is detached. Because ``z = zBBᵀ``, the singular values of ``x̃ᵀỹ`` and of
    ``(x̃B_x)ᵀ(ỹB_y)`` are equal, and so are their first derivatives (the polar factor of ``x̃ᵀỹ`` lies in
    the span of ``B_x``, ``B_y``): an n × n SVD replaces a p × q one.
    """
    n, width = z.shape[-2:]
    return z @ torch.linalg.qr(z.detach().mT).Q if n < width else z


def procrustes_distance(x: torch.Tensor, y: torch.Tensor, mask=None, squared: bool = False) -> torch.Tensor:
    """Orthogonal Procrustes distance (Bhattarai et al. 2025) between ``x: (..., n, p)``, ``y: (..., n, q)``.

    Rows centred, each side scaled to unit Frobenius norm (``X̃``, ``Ỹ``):
    ``D_P² = min_{QᵀQ=I} ‖X̃Q − Ỹ‖_F² = 2 − 2‖X̃ᵀỸ‖_*`` (nuclear norm), clamped at 0; returns ``D_P``
    (``D_P²`` if ``squared``), shape ``(...)``, in [0, √2]. The gradient flows through the singular values
    only (``torch.linalg.svdvals``, whose backward ``U diag(ġ) Vᵀ`` has no ``1/(σᵢ − σⱼ)`` terms), so
    repeated or zero singular values are harmless; for n < p or n < q the SVD is taken in an n-dimensional
    basis of the row space. ``sqrt`` is taken of ``max(D_P², tiny)``, so the gradient is finite at 0.
    A zero-variance side is taken as the zero matrix (``D_P² = ‖X̃‖² + ‖Ỹ‖² − 2‖X̃ᵀỸ‖_*`` = 1, or 0 if both).
    Needs n ≥ 2 real rows; ``mask: (..., n)``.
    """
    xt, yt = _prepare("procrustes_distance", x, y, mask, 2).unit()
    nuclear = torch.linalg.svdvals(_row_space(xt).mT @ _row_space(yt)).sum(-1)
    d2 = (_inner(xt, xt) + _inner(yt, yt) - 2 * nuclear).clamp_min(0)
    return d2 if squared else _safe_sqrt(d2)


def _gram_distance_from_grams(k: torch.Tensor, lam: torch.Tensor, n: torch.Tensor | float) -> torch.Tensor:
    """``‖K̃ − Λ̃‖_F`` from the centred unit-trace Grams (``max(·, tiny)`` under the root)."""
    return _safe_sqrt((k - lam).square().sum((-2, -1)))


def gram_distance(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Feature Gram matrix distance (Bhattarai et al. 2025) between ``x: (..., n, p)``, ``y: (..., n, q)``.

    Rows centred, each side scaled to unit Frobenius norm: ``D_FG = ‖X̃X̃ᵀ − ỸỸᵀ‖_F`` (n × n Grams), in
    [0, √2], shape ``(...)``; computed as ``sqrt(‖K̃‖² + ‖Λ̃‖² − 2⟨K̃, Λ̃⟩)`` in the cheaper Gram or feature
    form (see :func:`linear_cka`; the Gram form takes ``‖K̃ − Λ̃‖²`` directly, so it is preferred unless 4×
    dearer: the expanded form loses ``√eps`` to cancellation near 0), with
    ``max(·, tiny)`` under the root so that the gradient is finite at 0.
    A zero-variance side is taken as the zero matrix (so ``D_FG = ‖ỸỸᵀ‖_F`` if only ``X`` is degenerate).
    Needs n ≥ 2 real rows; ``mask: (..., n)``.
    """
    if _gram_route(x, y, margin=4.0):  # the exact form unless 4× dearer
        return _gram_distance_from_grams(*_unit_grams("gram_distance", x, y, mask, 2))
    xy, xx, yy = _feature_terms(_prepare("gram_distance", x, y, mask, 2, defer=True))
    return _safe_sqrt(xx + yy - 2 * xy)


#: the measures with an n × n Gram form: (value from the two centred unit-trace Grams, the margin of
#: :func:`_use_gram` under which that form is used, the fewest rows)
_GRAM_FORMS = {
    linear_cka: (_linear_from_grams, 1.0, 2),
    debiased_cka: (_debiased_from_grams, 1.0, 4),
    gram_distance: (_gram_distance_from_grams, 4.0, 2),
}


@torch.no_grad()
def target_gram(fn, y: torch.Tensor) -> torch.Tensor | None:
    """The side of a constant target ``y: (..., n, q)`` that :func:`compare_to_target` reuses: its centred Gram
    at unit trace when ``fn`` has a Gram form (:func:`linear_cka`, :func:`debiased_cka`, :func:`gram_distance`),
    else ``None``. Computed once (e.g. for the teacher memory of FSDG), it saves the ``n² q`` products of ``y``'s
    Gram and their backward at every call."""
    form = _GRAM_FORMS.get(fn)
    if form is None:
        return None
    y, _, _, counts, deferred = _check(fn.__name__, y, y, None, form[2])
    return _centred_gram(fn.__name__, "y", y, None, counts, deferred)


def compare_to_target(
    fn, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, x_gram: torch.Tensor | None = None
) -> torch.Tensor:
    """``fn(x, y)`` (all rows real, ``y`` a constant: no gradient reaches it), with ``target = target_gram(fn, y)``
    standing in for ``y``'s side where the Gram form is the cheaper one; otherwise ``fn(x, y)`` itself.
    ``x_gram``: the product ``x xᵀ`` when the caller has it already (the FSDG memory term shares it)."""
    form = _GRAM_FORMS.get(fn)
    if target is None or form is None or not _gram_route(x, y, form[1]):
        return fn(x, y.detach())
    from_grams, _, min_rows = form
    checked, _, _, counts, deferred = _check(fn.__name__, x, y, None, min_rows)
    gram = None if x_gram is None or checked is not x else x_gram  # a cast input needs its own product
    return from_grams(
        _centred_gram(fn.__name__, "x", checked, None, counts, deferred, gram),
        target.to(checked.dtype),
        float(checked.shape[-2]),
    )
