"""Relational KD (Park et al. 2019) on the [CLS] rows of a batch (default: the penultimate layers).

With ``x_i`` the rows of one model (teacher ``t_i``, student ``s_i``; widths may differ):

- distance: ``ψ_D(i, j) = ‖x_i − x_j‖ / μ``, ``μ`` = the mean of ``‖x_i − x_j‖`` over pairs ``i ≠ j``;
  ``L_D = mean_{i ≠ j} huber(ψ_D^S(i, j) − ψ_D^T(i, j))``
- angle: ``ψ_A(i, j, k) = ⟨e_ij, e_kj⟩`` with ``e_ij = (x_i − x_j) / ‖x_i − x_j‖`` (the angle at vertex j);
  ``L_A = mean_{i, j, k distinct} huber(ψ_A^S(i, j, k) − ψ_A^T(i, j, k))``

``huber`` is the smooth-L1 loss with β = 1 (``torch.nn.functional.smooth_l1_loss``). The term returns
``w_D · L_D + w_A · L_A`` (defaults 25 and 50, the RKD paper's weights). Park et al.'s code averages over all
B² pairs and B³ triples, degenerate ones included; those have zero error in both models, so the means here
(over distinct indices only) differ from theirs by the constant factors B/(B − 1) and B²/((B − 1)(B − 2)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, Features
from fsdkit.losses.base import LossTerm, TermContext, teacher_features
from fsdkit.losses.registry import register_term


def _distinct(b: int, order: int, device=None) -> Tensor:
    """Boolean mask of the index pairs (``order`` 2, B × B) or triples (3, B × B × B) with distinct indices."""
    eye = torch.eye(b, dtype=torch.bool, device=device)
    if order == 2:
        return ~eye
    return ~(eye[:, :, None] | eye[:, None, :] | eye[None, :, :])


def distance_potential(rows: Tensor) -> Tensor:
    """``ψ_D``: B × B pairwise distances divided by their mean over pairs ``i ≠ j`` (diagonal: 0)."""
    dist = torch.linalg.vector_norm(rows[:, None, :] - rows[None, :, :], dim=-1)
    off = _distinct(rows.shape[0], 2, device=rows.device)
    mean = dist[off].mean()
    return dist / mean.clamp_min(torch.finfo(rows.dtype).tiny)


def angle_potential(rows: Tensor) -> Tensor:
    """``ψ_A``: B × B × B, entry ``[j, i, k] = ⟨e_ij, e_kj⟩`` (vertex ``j``; ``e_jj`` = 0)."""
    edges = F.normalize(rows[None, :, :] - rows[:, None, :], dim=-1)  # edges[j, i] = e_ij
    return edges @ edges.mT


@register_term("rkd")
class RelationalKD(LossTerm):
    """``distance_weight · L_D + angle_weight · L_A`` on [CLS] rows (see module docstring).

    Options: ``distance_weight`` (25), ``angle_weight`` (50), ``student_layer`` / ``teacher_layer``
    (hidden-state index or "penultimate" / "last"; default "penultimate"). Needs B ≥ 2 samples per batch for
    the distance term and B ≥ 3 for the angle term (the minimum batch size follows the weights).

    Config example::

        losses:
          - {name: rkd, weight: 1.0, distance_weight: 25.0, angle_weight: 50.0}
    """

    def __init__(
        self,
        ctx: TermContext,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        student_layer: int | str = "penultimate",
        teacher_layer: int | str = "penultimate",
    ):
        super().__init__()
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ConfigError(
                f"rkd: distance_weight and angle_weight must be ≥ 0 and not both 0, got {distance_weight} and {angle_weight}"
            )
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer

    @property
    def min_batch_size(self) -> int:
        """Distances need 2 samples, angles 3."""
        return 3 if self.angle_weight > 0 else 2

    def request(self) -> FeatureRequest:
        return FeatureRequest(hidden_states=True, teacher_layers=frozenset({self.teacher_layer}))

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        s = student.pooled(self.student_layer)
        t = teacher.pooled(self.teacher_layer).to(s.dtype)
        b = s.shape[0]
        if b < self.min_batch_size:
            raise ValueError(
                f"rkd needs at least {self.min_batch_size} samples per batch, got {b}; use a larger batch size"
            )
        total = s.new_zeros(())
        if self.distance_weight:
            pairs = _distinct(b, 2, device=s.device)
            total = total + self.distance_weight * F.smooth_l1_loss(
                distance_potential(s)[pairs], distance_potential(t)[pairs]
            )
        if self.angle_weight:
            triples = _distinct(b, 3, device=s.device)
            total = total + self.angle_weight * F.smooth_l1_loss(
                angle_potential(s)[triples], angle_potential(t)[triples]
            )
        return total

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"
