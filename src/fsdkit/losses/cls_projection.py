"""[CLS] projections of paired layers (PKD, internal-representation KD): when the student is narrower than the
teacher, each pair's student [CLS] vector is mapped to the teacher's width by a learned linear projection (owned by
the term that uses it). The pairs themselves come from :mod:`fsdkit.losses.layer_maps`.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from fsdkit.features import Features
from fsdkit.losses.base import TermContext


def cls_projections(ctx: TermContext, count: int) -> nn.ModuleList | None:
    """One learned linear map (no bias) per layer pair from the student width to the teacher width.

    None when the widths are equal: the [CLS] vectors are then compared directly, as in the papers.
    """
    d_s, d_t = ctx.student_config.hidden_size, ctx.teacher_config.hidden_size
    if d_s == d_t:
        return None
    return nn.ModuleList(nn.Linear(d_s, d_t, bias=False) for _ in range(count))


def projected_cls(student: Features, layer: int, projections: nn.ModuleList | None, index: int) -> Tensor:
    """The student's [CLS] vector of ``layer`` (B × D_S), projected to the teacher width when needed."""
    cls = student.pooled(layer)
    if projections is None:
        return cls
    return projections[index](cls.to(cast(nn.Linear, projections[index]).weight.dtype))
