"""MiniLM (Wang et al. 2020), applied at fine-tuning time on one layer (default: the last of each model).

``L = KL_att + KL_val``: per head ``h``, with ``A_h`` the self-attention distributions ``softmax(Q_h K_hᵀ/√d_k)``
and ``VR_h = softmax(V_h V_hᵀ/√d_k)`` the value relation (``V_h``: the value vectors of head ``h``),
``KL_att = mean_{h, real query rows i} KL(A^T_h[i] ‖ A^S_h[i])`` and ``KL_val`` the same for ``VR``.
Teacher and student need the same number of heads; ``d_k`` may differ (width / heads of each model).

This module also holds :func:`attention_kl`, the masked row-KL shared with internal-representation KD.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fsdkit.errors import ConfigError, ModelError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext
from fsdkit.losses.registry import register_term


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


def value_relation(values: Tensor, mask: Tensor, heads: int) -> Tensor:
    """``softmax(V_h V_hᵀ / √d_k)`` per head, padded key columns excluded: (B, L, D) → (B, H, L, L)."""
    b, length, width = values.shape
    d_k = width // heads
    v = values.view(b, length, heads, d_k).transpose(1, 2)
    scores = v @ v.mT / math.sqrt(d_k)
    scores = scores.masked_fill(~mask[:, None, None, :].bool(), torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def check_same_heads(ctx: TermContext, loss: str) -> int:
    """The common number of attention heads of teacher and student; ModelError when they differ."""
    h_s, h_t = ctx.student_config.num_attention_heads, ctx.teacher_config.num_attention_heads
    if h_s != h_t:
        raise ModelError(
            f"the {loss} loss compares attention maps head by head, but the student has {h_s} heads and the "
            f"teacher {h_t}; use models with the same number of heads"
        )
    return h_s


@register_term("minilm")
class MiniLMDistillation(LossTerm):
    """``KL_att + KL_val`` on one layer (see module docstring), teacher ‖ student, per head.

    Option ``layer``: ``"last"`` (default) or a negative index counting from the last layer of *each* model
    (−1 = last, −2 = the one below), since teacher and student have different depths.

    Config example::

        losses:
          - {name: minilm, weight: 1.0, layer: last}
    """

    def __init__(self, ctx: TermContext, layer: int | str = "last"):
        super().__init__()
        self.heads = check_same_heads(ctx, "minilm")
        depth = min(ctx.student_config.num_hidden_layers, ctx.teacher_config.num_hidden_layers)
        index = -1 if layer == "last" else layer
        if isinstance(index, bool) or not isinstance(index, int) or not -depth <= index <= -1:
            raise ConfigError(
                f"minilm layer {layer!r}: expected 'last' or a negative index from the last layer of each model, "
                f"-1..-{depth}"
            )
        self.layer = index

    def request(self) -> FeatureRequest:
        return FeatureRequest(attentions=True, value_layers=frozenset({self.layer}))

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        mask = student.attention_mask
        attention = attention_kl(teacher.attentions[self.layer], student.attentions[self.layer], mask)
        relations = (value_relation(f.values[self.layer], mask, self.heads) for f in (teacher, student))
        return attention + attention_kl(*relations, mask)

    def extra_repr(self) -> str:
        return f"layer={self.layer}, heads={self.heads}"
