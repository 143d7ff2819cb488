"""MiniLM (Wang et al. 2020), applied at fine-tuning time on one layer (default: the last of each model).

``L = KL_att + KL_val``: per head ``h``, with ``A_h`` the self-attention distributions ``softmax(Q_h K_hᵀ/√d_k)``
and ``VR_h = softmax(V_h V_hᵀ/√d_k)`` the value relation (``V_h``: the value vectors of head ``h``),
``KL_att = mean_{h, real query rows i} KL(A^T_h[i] ‖ A^S_h[i])`` and ``KL_val`` the same for ``VR``.
Teacher and student need the same number of heads; ``d_k`` may differ (width / heads of each model).

:func:`~fsdkit.losses.attention.attention_kl` and the value relation are in :mod:`fsdkit.losses.attention`.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.attention import attention_kl, check_same_heads, value_relation
from fsdkit.losses.base import LossTerm, TermContext, require_same_tokenizer, teacher_features
from fsdkit.losses.registry import register_term


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
        require_same_tokenizer(ctx, "MiniLM attention", "RKD, PKD or Relation-CKA, which compare [CLS] or pooled rows")
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
        return FeatureRequest(
            attentions=True, value_layers=frozenset({self.layer}), attention_layers=frozenset({self.layer})
        )

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        mask = student.attention_mask
        # the request asks for attentions: both passes carry them
        t_maps, s_maps = cast("tuple[Tensor, ...]", teacher.attentions), cast("tuple[Tensor, ...]", student.attentions)
        attention = attention_kl(t_maps[self.layer], s_maps[self.layer], mask)
        t_relation, s_relation = (value_relation(f.values[self.layer], mask, self.heads) for f in (teacher, student))
        return attention + attention_kl(t_relation, s_relation, mask)

    def extra_repr(self) -> str:
        return f"layer={self.layer}, heads={self.heads}"
