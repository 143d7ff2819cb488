"""Relation CKA (Zhou et al. 2024, "Rethinking Centered Kernel Alignment in Knowledge Distillation").

Zhou et al. show that CKA is the cosine between the (vectorised) Gram matrices of two representations and
distil with it *without centring*. With the uncentred alignment of two row matrices
``A(X, Y) = ⟨XXᵀ, YYᵀ⟩_F / (‖XXᵀ‖_F ‖YYᵀ‖_F)`` (∈ [0, 1] for real rows; widths may differ), this term is

``L = w_F · (1 − A(F_S, F_T)) + w_intra · (1 − A(Z_S, Z_T)) + w_inter · (1 − A(Z_Sᵀ, Z_Tᵀ))``

- ``F``: one row per sample, ``vec(H[b] ⊙ mask_b)`` of a hidden layer (default: penultimate; the local
  view's ``flatten`` rows, so padding changes nothing) — a B × B Gram of the batch;
- ``Z``: the logits, B × C — their B × B Gram relates the samples (intra-class relations in docs/math.md's
  wording); ``Zᵀ`` gives the C × C Gram that relates the classes (inter-class relations). With one output
  (regression) the C × C alignment is always 1 and that part is 0. (The authors' code names the two the
  other way round; the options follow docs/math.md: ``intra_weight`` weights the B × B logit Gram.)

Departures from the authors' code (mdistiller-style ``CenterKernelAlignmentRKD``): the loss is ``1 − A``
rather than ``−A`` (same gradient, non-negative value); their optional row normalisation of the Grams
(``with_l2_norm``) and soft-max "soften" variant are not implemented; features are included as the
docs/math.md states (their classification code aligns logits only).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext, teacher_features
from fsdkit.losses.registry import register_term
from fsdkit.losses.views import check_view, local_rows


def gram_alignment(x: Tensor, y: Tensor) -> Tensor:
    """Uncentred alignment ``⟨XXᵀ, YYᵀ⟩_F / (‖XXᵀ‖_F ‖YYᵀ‖_F)`` of ``x: (n, p)`` and ``y: (n, q)``; 0 if a side is 0.

    Each side is first scaled to unit Frobenius norm (the value is scale invariant; this keeps float32
    Grams of long flattened rows far from overflow).
    """
    tiny = torch.finfo(x.dtype).tiny
    x = x / torch.linalg.matrix_norm(x).clamp_min(tiny)
    y = y.to(x.dtype) / torch.linalg.matrix_norm(y.to(x.dtype)).clamp_min(tiny)
    k, lam = x @ x.T, y @ y.T
    norms = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(lam)
    return (k * lam).sum() / norms.clamp_min(tiny)


@register_term("relation_cka")
class RelationCKA(LossTerm):
    """``w_F·(1 − A(F_S, F_T)) + w_intra·(1 − A(Z_S, Z_T)) + w_inter·(1 − A(Z_Sᵀ, Z_Tᵀ))`` (module docstring).

    Options: ``feature_weight``, ``intra_weight``, ``inter_weight`` (each 1), ``pooling`` of the feature rows
    (flatten | cls | mean; default flatten), ``student_layer`` / ``teacher_layer`` (default "penultimate").
    Needs B ≥ 2 samples per batch.

    Config example::

        losses:
          - {name: relation_cka, weight: 15.0, pooling: mean}
    """

    @property
    def min_batch_size(self) -> int:
        """The batch Gram matrices compare samples: 2 of them."""
        return 2

    def __init__(
        self,
        ctx: TermContext,
        feature_weight: float = 1.0,
        intra_weight: float = 1.0,
        inter_weight: float = 1.0,
        pooling: str = "flatten",
        student_layer: int | str = "penultimate",
        teacher_layer: int | str = "penultimate",
    ):
        super().__init__()
        weights = (feature_weight, intra_weight, inter_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ConfigError(f"relation_cka: the three weights must be ≥ 0 and not all 0, got {weights}")
        check_view("local", pooling)
        self.feature_weight, self.intra_weight, self.inter_weight = (float(w) for w in weights)
        self.pooling = pooling
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=self.feature_weight > 0, teacher_layers=frozenset({self.teacher_layer}))

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        z_s, z_t = student.logits, teacher.logits
        if z_s.shape[0] < self.min_batch_size:
            raise ValueError(f"relation_cka needs at least {self.min_batch_size} samples per batch, got {z_s.shape[0]}")
        total = self.intra_weight * (1 - gram_alignment(z_s, z_t)) + self.inter_weight * (
            1 - gram_alignment(z_s.T, z_t.T)
        )
        if self.feature_weight:
            f_s, f_t, _ = local_rows(student, teacher, self.student_layer, self.teacher_layer, self.pooling)
            total = total + self.feature_weight * (1 - gram_alignment(f_s, f_t))
        return total

    def extra_repr(self) -> str:
        return f"weights=({self.feature_weight}, {self.intra_weight}, {self.inter_weight}), pooling={self.pooling}"
