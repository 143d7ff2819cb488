"""Internal-representation KD (Aguilar et al. 2020): attention maps and [CLS] vectors of matched layers.

For each matched pair ``(j, g(j))`` of student and teacher layers:
``L_j = mean_{h, real query rows} KL(A^T_{g(j),h} ‖ A^S_{j,h}) + mean_b (1 − cos(h_T,g(j)[CLS], W_j h_S,j[CLS]))``
with ``W_j`` a learned projection when the widths differ (identity otherwise). The term returns
``Σ_j L_j`` over its pairs. The schedules of the paper (all layers at once, progressive, stacked) are
method presets that activate one term per pair in chosen training stages (``fsdkit.methods.baselines``).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.attention import attention_kl, check_same_heads
from fsdkit.losses.base import LossTerm, TermContext, require_same_tokenizer, teacher_features
from fsdkit.losses.cls_projection import cls_projections, projected_cls
from fsdkit.losses.layer_maps import LayerMapSpec, model_depths, resolve_layer_map
from fsdkit.losses.registry import register_term


@register_term("internal")
class InternalRepresentationKD(LossTerm):
    """``Σ_j [KL(att_T ‖ att_S) + 1 − cos(h_T[CLS], W_j h_S[CLS])]`` over matched layer pairs (module docstring).

    Options: ``layers`` — ``"skip"`` (default: student layer ``j`` ↔ teacher layer ``⌊j·N_T/N_S⌋`` for
    ``j = 1..N_S``, the last layers included), ``"last"`` or explicit 1-based (student, teacher) pairs;
    ``pairs`` — 1-based positions in that map to use (default: all), so that a schedule can train one pair
    per term.

    Config example::

        losses:
          - {name: internal, weight: 1.0, layers: "1:2,2:4"}
    """

    def __init__(self, ctx: TermContext, layers: LayerMapSpec = "skip", pairs: list[int] | None = None):
        super().__init__()
        require_same_tokenizer(
            ctx, "internal-representation (attention)", "RKD, PKD or Relation-CKA, which compare [CLS] or pooled rows"
        )
        check_same_heads(ctx, "internal")
        layer_map = resolve_layer_map(layers, *model_depths(ctx), include_last=True)
        if pairs is not None:
            positions = [pairs] if isinstance(pairs, int) else list(pairs)
            bad = [
                p for p in positions if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= len(layer_map)
            ]
            if bad or not positions:
                raise ConfigError(
                    f"internal pairs {pairs!r}: expected positions 1..{len(layer_map)} in the layer map {layer_map}"
                )
            layer_map = [layer_map[p - 1] for p in positions]
        self.pairs = layer_map
        self.projections = cls_projections(ctx, len(self.pairs))

    def request(self) -> FeatureRequest:
        return FeatureRequest(
            hidden_states=True,
            attentions=True,
            teacher_layers=frozenset(t for _, t in self.pairs),
            attention_layers=frozenset(t - 1 for _, t in self.pairs),
        )

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        mask = student.attention_mask
        # the request asks for attentions: both passes carry them
        t_maps, s_maps = cast("tuple[Tensor, ...]", teacher.attentions), cast("tuple[Tensor, ...]", student.attentions)
        losses = []
        for i, (s_layer, t_layer) in enumerate(self.pairs):
            attention = attention_kl(t_maps[t_layer - 1], s_maps[s_layer - 1], mask)
            s_cls = projected_cls(student, s_layer, self.projections, i)
            t_cls = teacher.pooled(t_layer).to(s_cls.dtype)
            losses.append(attention + (1 - F.cosine_similarity(s_cls, t_cls, dim=-1)).mean())
        return torch.stack(losses).sum()

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, projected={self.projections is not None}"
