"""Patient KD (Sun et al. 2019): match the normalised [CLS] vectors of paired intermediate layers.

``L_PT = Σ_j ‖ h_S,j / ‖h_S,j‖ − h_T,g(j) / ‖h_T,g(j)‖ ‖²`` (batch mean), where ``h`` is the [CLS] vector
of a layer and ``g`` maps student layers to teacher layers. The layer maps and [CLS]
projections are in :mod:`fsdkit.losses.layer_maps` and :mod:`fsdkit.losses.cls_projection` (shared with
internal-representation KD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext, teacher_features
from fsdkit.losses.cls_projection import cls_projections, projected_cls
from fsdkit.losses.layer_maps import LayerMapSpec, model_depths, resolve_layer_map
from fsdkit.losses.registry import register_term


@register_term("pkd")
class PatientKD(LossTerm):
    """``L_PT = Σ_j ‖ h_S,j / ‖h_S,j‖ − h_T,g(j) / ‖h_T,g(j)‖ ‖²``, batch mean, over [CLS] vectors.

    Options: ``layers`` — ``"skip"`` (default), ``"last"`` or explicit (student, teacher) pairs of 1-based
    layers (see :func:`resolve_layer_map`; inside ``--loss`` separate pairs with ``;``). When D_S ≠ D_T the
    student vector is first mapped by a learned linear projection per pair (owned by the term).

    Config example::

        losses:
          - {name: pkd, weight: 100.0, layers: skip}
    """

    def __init__(self, ctx: TermContext, layers: LayerMapSpec = "skip"):
        super().__init__()
        self.pairs = resolve_layer_map(layers, *model_depths(ctx), include_last=False)
        self.projections = cls_projections(ctx, len(self.pairs))

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=True, teacher_layers=frozenset(t for _, t in self.pairs))

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        distances = []
        for i, (s_layer, t_layer) in enumerate(self.pairs):
            s = F.normalize(projected_cls(student, s_layer, self.projections, i), dim=-1)
            t = F.normalize(teacher.pooled(t_layer).to(s.dtype), dim=-1)
            distances.append((s - t).square().sum(-1))
        return torch.stack(distances).sum(0).mean()

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, projected={self.projections is not None}"
