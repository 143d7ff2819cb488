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

All inputs are first centred over the real rows (padding rows are then zero) and scaled to unit Frobenius
norm; this changes no value (every measure is invariant to translation and isotropic scaling) and keeps
the arithmetic well scaled.

Degenerate input never yields NaN values or gradients:

- fewer than 2 real rows (4 for :func:`debiased_cka`) in any batch element, mismatched shapes, a mask
  that is not 0/1, or non-finite values anywhere in ``x`` or ``y`` raise :class:`ValueError`;
- a side with zero variance (all real rows equal, up to a relative tolerance of the dtype's machine
  epsilon) makes CKA undefined; it is returned as 0, so that a loss ``−log(CKA + ε)`` stays finite and its
  gradient is zero. The distances take such a side as the zero matrix (against a non-degenerate ``Ỹ``:
  ``D_P = 1`` and ``D_FG = ‖ỸỸᵀ‖_F``; 0 if both sides are degenerate).
"""

from __future__ import annotations

import torch

__all__ = ["debiased_cka", "gram_distance", "linear_cka", "procrustes_distance", "rbf_cka"]


def _prepare(name: str, x: torch.Tensor, y: torch.Tensor, mask, min_rows: int):
    """Validate the inputs; return ``(x̃, ỹ, mask, counts)``.

    ``x̃``, ``ỹ`` are centred over the real rows, zero on padding rows and of unit Frobenius norm (or
    exactly zero for a zero-variance side); ``mask`` is float ``(..., n)``; ``counts`` is the number of
    real rows per batch element, shape ``(...)``.
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"{name}: x and y must be (..., n, p) and (..., n, q) with the same n and leading dims, "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y = x.to(dtype), y.to(dtype)
    for label, z in (("x", x), ("y", y)):
        if not torch.isfinite(z).all():
            raise ValueError(f"{name}: non-finite values in {label}")
    if mask is None:
        m = x.new_ones(x.shape[:-1])
    else:
        m = torch.as_tensor(mask, device=x.device).to(dtype)
        if m.shape != x.shape[:-1]:
            raise ValueError(
                f"{name}: mask must have shape {tuple(x.shape[:-1])} (x without its last dim), got {tuple(m.shape)}"
            )
        if not ((m == 0) | (m == 1)).all():
            raise ValueError(f"{name}: mask must hold only 0/1 (or bool) values")
    counts = m.sum(-1)
    got = int(counts.min()) if counts.numel() else min_rows
    if got < min_rows:
        hint = " (a batch of one sample?)" if got == 1 else ""
        raise ValueError(f"{name} needs at least {min_rows} rows per set, got {got}{hint}")
    return _normalize(x, m, counts), _normalize(y, m, counts), m, counts


def _normalize(z: torch.Tensor, m: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Centre the real rows of ``z`` (masked mean), zero the padding rows, scale to unit Frobenius norm.

    A side whose centred energy is at most ``eps`` (machine epsilon) times its uncentred energy has zero
    variance and becomes the zero matrix (with zero gradient).
    """
    zm = z * m[..., None]
    zc = (z - zm.sum(-2, keepdim=True) / counts[..., None, None]) * m[..., None]
    energy = _inner(zc, zc)
    finfo = torch.finfo(z.dtype)
    varies = energy > finfo.eps * _inner(zm, zm)
    scale = torch.where(varies, energy.clamp_min(finfo.tiny).rsqrt(), torch.zeros_like(energy))
    return zc * scale[..., None, None]


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Frobenius inner product over the last two dims."""
    return (a * b).sum((-2, -1))


def _linear_terms(xt: torch.Tensor, yt: torch.Tensor, gram: bool | None = None):
    """``(⟨K̃, Λ̃⟩, ‖K̃‖², ‖Λ̃‖²)`` for centred ``x̃``, ``ỹ`` (``K̃ = x̃x̃ᵀ``, ``Λ̃ = ỹỹᵀ``).

    Computed from the n × n Grams (``gram=True``) or from the feature-space products ``‖ỹᵀx̃‖²``,
    ``‖x̃ᵀx̃‖²``, ``‖ỹᵀỹ‖²`` (``gram=False``); the two are equal. ``None`` picks the cheaper one:
    Grams cost n²(p+q) multiply-adds, feature products n(p² + q² + pq).
    """
    n, p, q = xt.shape[-2], xt.shape[-1], yt.shape[-1]
    if gram is None:
        gram = n * (p + q) < p * p + q * q + p * q
    if gram:
        k, lam = xt @ xt.mT, yt @ yt.mT
        return _inner(k, lam), _inner(k, k), _inner(lam, lam)
    xy, xx, yy = xt.mT @ yt, xt.mT @ xt, yt.mT @ yt
    return _inner(xy, xy), _inner(xx, xx), _inner(yy, yy)


def _ratio(num: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``num / sqrt(a · b)``; 0 (with zero gradient) unless ``a > 0`` and ``b > 0``."""
    ok = (a > 0) & (b > 0)
    den = torch.where(ok, a * b, torch.ones_like(a)).rsqrt()
    return torch.where(ok, num * den, torch.zeros_like(num))


def _safe_sqrt(d2: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(d2, 0))`` whose gradient stays finite at 0."""
    return d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt()


def linear_cka(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Linear CKA between ``x: (..., n, p)`` and ``y: (..., n, q)``; returns ``(...)`` in [0, 1].

    ``K = XXᵀ``, ``Λ = YYᵀ``, ``H = I − 11ᵀ/n``, ``HSIC(K, Λ) = tr(KHΛH)/(n − 1)²`` and
    ``CKA = HSIC(K, Λ) / sqrt(HSIC(K, K) · HSIC(Λ, Λ))``, computed as ``⟨K̃, Λ̃⟩ / (‖K̃‖_F ‖Λ̃‖_F)`` with
    ``K̃ = X̃X̃ᵀ`` (n × n Grams) or, when cheaper (n large against p, q), as the equal feature-space form
    ``‖ỸᵀX̃‖_F² / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)``, with ``X̃ = HX``. ``mask: (..., n)`` marks real rows.
    Needs n ≥ 2 real rows. A zero-variance side makes CKA undefined; returned as 0 so that a loss
    ``−log(CKA + ε)`` stays finite and its gradient is zero.
    """
    xt, yt, _, _ = _prepare("linear_cka", x, y, mask, 2)
    return _ratio(*_linear_terms(xt, yt))


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
    xt, yt, m, counts = _prepare("rbf_cka", x, y, mask, 2)
    kx, ky = (_rbf_centred_gram(z, m, counts, sigma) for z in (xt, yt))
    return _ratio(_inner(kx, ky), _inner(kx, kx), _inner(ky, ky))


def _unbiased(dot, rows_a, rows_b, norm_a, norm_b, n):
    """Debiased dot product of Kornblith et al.'s ``_debiased_dot_product_similarity_helper``:
    ``dot − n/(n−2)·⟨diag K̃_a, diag K̃_b⟩ + ‖a‖²‖b‖²/((n−1)(n−2))`` (= n(n−3)·HSIC₁ for centred features)."""
    return dot - n / (n - 2) * (rows_a * rows_b).sum(-1) + norm_a * norm_b / ((n - 1) * (n - 2))


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
    xt, yt, _, n = _prepare("debiased_cka", x, y, mask, 4)
    xy, xx, yy = _linear_terms(xt, yt)
    rx, ry = xt.square().sum(-1), yt.square().sum(-1)
    sx, sy = rx.sum(-1), ry.sum(-1)
    return _ratio(_unbiased(xy, rx, ry, sx, sy, n), _unbiased(xx, rx, rx, sx, sx, n), _unbiased(yy, ry, ry, sy, sy, n))


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
    xt, yt, _, _ = _prepare("procrustes_distance", x, y, mask, 2)
    nuclear = torch.linalg.svdvals(_row_space(xt).mT @ _row_space(yt)).sum(-1)
    d2 = (_inner(xt, xt) + _inner(yt, yt) - 2 * nuclear).clamp_min(0)
    return d2 if squared else _safe_sqrt(d2)


def gram_distance(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Feature Gram matrix distance (Bhattarai et al. 2025) between ``x: (..., n, p)``, ``y: (..., n, q)``.

    Rows centred, each side scaled to unit Frobenius norm: ``D_FG = ‖X̃X̃ᵀ − ỸỸᵀ‖_F`` (n × n Grams), in
    [0, √2], shape ``(...)``; computed as ``sqrt(‖K̃‖² + ‖Λ̃‖² − 2⟨K̃, Λ̃⟩)`` in the cheaper Gram or feature
    form (see :func:`linear_cka`), with ``max(·, tiny)`` under the root so that the gradient is finite at 0.
    A zero-variance side is taken as the zero matrix (so ``D_FG = ‖ỸỸᵀ‖_F`` if only ``X`` is degenerate).
    Needs n ≥ 2 real rows; ``mask: (..., n)``.
    """
    xt, yt, _, _ = _prepare("gram_distance", x, y, mask, 2)
    xy, xx, yy = _linear_terms(xt, yt)
    return _safe_sqrt(xx + yy - 2 * xy)
