"""Attention-distribution losses shared by MiniLM and internal-representation KD.

:func:`attention_kl`: the masked row-KL ``mean_{h, real query rows i} KL(A^T_h[i] ‖ A^S_h[i])`` of two sets of
attention distributions; :func:`head_softmax`: ``softmax(Q_h K_hᵀ/√d_k)`` per head (a layer's attention distributions
from its queries and keys; with the values twice, MiniLM's value relation :func:`value_relation`);
:func:`check_same_heads`: both need teacher and student to have the same number of heads.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fsdkit.errors import ModelError
from fsdkit.losses.base import TermContext


def attention_kl(p_teacher: Tensor, p_student: Tensor, mask: Tensor) -> Tensor:
    """``KL(p_T ‖ p_S)`` of row distributions over keys, averaged over heads and real query rows.

    ``p_teacher``, ``p_student``: (B, H, L, L), row ``i`` of head ``h`` = the distribution of query ``i``
    over the keys; ``mask``: (B, L), 1 = real token. Padded query rows are left out of the mean, padded key
    columns out of each row (they carry ~0 probability in both maps). The mean is taken over all real
    (sample, query) rows of the batch and over the heads.

    Each row is restricted to its *support* — real keys where ``p_S > 0`` — and both distributions are
    renormalised on it. When the student's maps are proper distributions (eval mode, or no attention dropout)
    this is exactly the KL. Hugging Face returns attention maps *after* attention dropout in training mode:
    dropped entries are 0 and the rest are scaled by 1/(1 − p); the restriction then compares the two
    distributions on the kept keys (0 exactly when the pre-dropout maps agree) instead of charging
    ``−p_T · log 0`` for every dropped entry.
    """
    tiny = torch.finfo(p_student.dtype).tiny
    p_teacher = p_teacher.to(p_student.dtype)
    keys = mask[:, None, None, :].bool()
    support = keys & (p_student > 0)
    p_t = torch.where(support, p_teacher, 0)
    p_s = torch.where(support, p_student, 0)
    p_t = p_t / p_t.sum(-1, keepdim=True).clamp_min(tiny)
    p_s = p_s / p_s.sum(-1, keepdim=True).clamp_min(tiny)
    rows = (p_t * (p_t.clamp_min(tiny).log() - p_s.clamp_min(tiny).log())).sum(-1)  # (B, H, L)
    queries = mask[:, None, :].to(rows.dtype)
    return (rows * queries).sum() / (queries.sum() * rows.shape[1]).clamp_min(1)


def head_softmax(queries: Tensor, keys: Tensor, mask: Tensor, heads: int) -> Tensor:
    """``softmax(Q_h K_hᵀ / √d_k)`` per head, padded key columns excluded: (B, L, D) twice → (B, H, L, L).

    With a layer's queries and keys these are its self-attention distributions (what an eager forward pass returns
    in eval mode, up to float rounding); with its values twice, MiniLM's value relation."""
    b, length, width = queries.shape
    d_k = width // heads
    q, k = (z.reshape(b, length, heads, d_k).transpose(1, 2) for z in (queries, keys))
    scores = q @ k.mT / math.sqrt(d_k)
    scores = scores.masked_fill(~mask[:, None, None, :].bool(), torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def value_relation(values: Tensor, mask: Tensor, heads: int) -> Tensor:
    """``softmax(V_h V_hᵀ / √d_k)`` per head, padded key columns excluded: (B, L, D) → (B, H, L, L)."""
    return head_softmax(values, values, mask, heads)


def check_same_heads(ctx: TermContext, loss: str) -> int:
    """The common number of attention heads of teacher and student; ModelError when they differ."""
    h_s, h_t = ctx.student_config.num_attention_heads, ctx.teacher_config.num_attention_heads
    if h_s != h_t:
        raise ModelError(
            f"the {loss} loss compares attention maps head by head, but the student has {h_s} heads and the "
            f"teacher {h_t}; use models with the same number of heads"
        )
    return h_s
