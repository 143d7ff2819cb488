"""CKA heat maps between a teacher and another model over a pool of dev-set mini-batches (FSD paper Fig. 4, Table 6).

The dev set is split in order into P mini-batches of b samples (an incomplete last batch is dropped). Each
sample is one row: its penultimate-layer token vectors flattened, padding zeroed. Pixel (i, j) is the linear
CKA between the teacher's rows of batch i (``X_i``, b × d_T) and the model's rows of batch j (``Y_j``, b × d_M)::

    K̃_i = H X_i X_iᵀ H,   L̃_j = H Y_j Y_jᵀ H,   H = I_b − (1/b) 1 1ᵀ
    CKA(i, j) = ⟨K̃_i, L̃_j⟩_F / (‖K̃_i‖_F ‖L̃_j‖_F)

which is ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with the (n−1)² factors cancelled. Each batch's centred
Gram matrix is computed and normalised once (a b²-vector of unit norm), so the whole P_T × P_M map is a
single matrix product of two stacks of such vectors. Appending zero columns to the rows (padding to a longer
common length) leaves every Gram matrix unchanged, so the map does not depend on the padding length.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor


def _unit_centred_gram(batch: Tensor, name: str, index: int) -> Tensor:
    x = batch.detach().reshape(batch.shape[0], -1).to(device="cpu", dtype=torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    gram = (x @ x.T).flatten()
    norm = torch.linalg.vector_norm(gram)
    if not torch.isfinite(norm) or norm <= torch.finfo(torch.float64).tiny:
        raise ValueError(f"{name}: mini-batch {index} has no variance (all rows equal); CKA is undefined")
    return gram / norm


def normalised_centred_grams(batches: Iterable[Tensor], name: str = "batches") -> Tensor:
    """Stack of unit-norm centred Gram matrices, one per full mini-batch: P × b² (float64, CPU).

    Each batch b × ... is flattened to b rows; ``K̃ = (X − mean_rows X)(X − mean_rows X)ᵀ`` (equal to
    ``H X Xᵀ H``) is divided by its Frobenius norm. The batch size b is that of the first batch; a smaller
    last batch is dropped; any other size difference, b < 2, or a batch whose rows are all equal (no
    variance: CKA undefined) raises ``ValueError``. ``batches`` may be a generator: one batch is held at a time.
    """
    grams = []
    size = None
    short = None
    for index, batch in enumerate(batches):
        if short is not None:
            raise ValueError(f"{name}: mini-batch {short} is smaller than the first ({size}) but is not the last")
        if size is None:
            size = batch.shape[0]
            if size < 2:
                raise ValueError(f"{name}: CKA needs at least 2 samples per mini-batch, got {size}")
        if batch.shape[0] < size:
            short = index
            continue
        if batch.shape[0] > size:
            raise ValueError(f"{name}: mini-batch {index} has {batch.shape[0]} samples, the first has {size}")
        grams.append(_unit_centred_gram(batch, name, index))
    if not grams:
        raise ValueError(f"{name}: no mini-batches")
    return torch.stack(grams)


def cka_heatmap_from_grams(teacher_grams: Tensor, model_grams: Tensor) -> np.ndarray:
    """P_T × P_M CKA map from two stacks of :func:`normalised_centred_grams` (same batch size b)."""
    if teacher_grams.shape[1] != model_grams.shape[1]:
        raise ValueError(
            "teacher and model mini-batches differ in size "
            f"({int(teacher_grams.shape[1] ** 0.5)} vs {int(model_grams.shape[1] ** 0.5)} samples)"
        )
    return (teacher_grams @ model_grams.T).clamp(0.0, 1.0).numpy()


def cka_heatmap(teacher_batches: Sequence[Tensor], model_batches: Sequence[Tensor]) -> np.ndarray:
    """Linear-CKA heat map between teacher mini-batches (rows i) and model mini-batches (columns j).

    Args:
        teacher_batches: P_T tensors b × d_T (or b × L × D, flattened per sample), all of size b except
            possibly a smaller last one, which is dropped.
        model_batches: P_M tensors b × d_M, likewise.

    Returns:
        float64 array P_T × P_M with ``map[i, j] = CKA(teacher batch i, model batch j)`` ∈ [0, 1].
    """
    return cka_heatmap_from_grams(
        normalised_centred_grams(teacher_batches, "teacher_batches"),
        normalised_centred_grams(model_batches, "model_batches"),
    )


def diagonal_mean(heatmap: np.ndarray) -> float:
    """Mean of the heat map's diagonal (CKA of teacher and model on the same mini-batch; paper Table 6)."""
    diag = np.diagonal(np.asarray(heatmap))
    if diag.size == 0:
        raise ValueError("the heat map is empty")
    return float(diag.mean())
