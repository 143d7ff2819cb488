"""Turn a batch of hidden states into rows, one per sample: what the memory (FSDG) and the local view compare.

:func:`feature_rows` is the single definition of a "row" in FSDG. The teacher memory is built from these
rows and the training loss compares batch rows with the memory centroids, so both must call this function
with the same ``pooling`` and ``max_length`` (both are stored in the memory's metadata).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

POOLINGS = ("flatten", "cls", "mean")


def feature_rows(
    hidden: Tensor,
    mask: Tensor,
    pooling: str = "flatten",
    max_length: int | None = None,
    positions: Tensor | None = None,
) -> Tensor:
    """Rows ``(B, d)`` from hidden states ``(B, L, D)`` and an attention mask ``(B, L)`` (1 = real token).

    - ``"flatten"``: padding positions are zeroed, the sequence axis is zero-padded or truncated to exactly
      ``max_length`` positions, and each sample is flattened: ``d = max_length · D``. Because padding is
      zeroed, a sample gives the same row however much padding its batch carries. ``max_length`` is required.
    - ``"cls"``: the position the classification head pools, ``hidden[:, 0]`` ([CLS]), or ``positions`` (B,)
      where given (a decoder's last real token); ``d = D``.
    - ``"mean"``: the mean over real tokens (masked mean); ``d = D``. A sample without real tokens gives zeros.

    ``max_length`` is used by ``"flatten"`` only. The result keeps the dtype and device of ``hidden`` and is
    differentiable with respect to it.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if hidden.dim() != 3:
        raise ValueError(f"hidden states must be (B, L, D), got shape {tuple(hidden.shape)}")
    if tuple(mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match hidden states {tuple(hidden.shape)}")
    if pooling == "cls":
        if positions is None:
            return hidden[:, 0]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]
    weights = mask.to(dtype=hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    if max_length is None or max_length < 1:
        raise ValueError(f"pooling 'flatten' needs max_length >= 1, got {max_length!r}")
    batch, length, _ = hidden.shape
    masked = (hidden * weights)[:, :max_length]
    if length < max_length:
        masked = F.pad(masked, (0, 0, 0, max_length - length))
    return masked.reshape(batch, -1)
