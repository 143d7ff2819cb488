"""Losses on the logits: the task loss against gold labels and vanilla KD against the teacher.

Vanilla KD (Hinton et al. 2015; FSD eq. 1–2) is ``α · task + (1 − α) · kd`` — two terms with weights
α and 1 − α, so each is logged on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fsdkit.data.files import LABELLED
from fsdkit.errors import ConfigError
from fsdkit.features import Features
from fsdkit.losses.base import LossTerm, TermContext, teacher_features
from fsdkit.losses.registry import register_term


def _is_regression(ctx: TermContext) -> bool:
    return bool(getattr(ctx.task, "is_regression", False))


@register_term("task")
class TaskLoss(LossTerm):
    """Supervised loss on gold labels: ``CE(y, softmax(z_S))`` (classification) or ``MSE(z_S, y)`` (regression),
    the batch mean; a transfer row (``labelled`` 0, ``--transfer-file``) adds 0, its label is never read.

    Config example::

        losses:
          - {name: task, weight: 0.5}
    """

    needs_teacher = False

    def __init__(self, ctx: TermContext):
        super().__init__()
        self.regression = _is_regression(ctx)

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        labels, logits = batch["labels"], student.logits
        labelled = batch.get(LABELLED)  # transfer rows (--transfer-file) have no label: never read here
        if labelled is None:
            if self.regression:
                return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            return F.cross_entropy(logits, labels)
        # a mean over all n rows in which a transfer row adds 0: each labelled row weighs 1/n like every row of the
        # other terms, so micro-batches of any labelled share accumulate to the gradient of their union
        keep = labelled.to(torch.bool)
        if self.regression:
            losses = F.mse_loss(logits.squeeze(-1)[keep], labels[keep].to(logits.dtype), reduction="sum")
        else:
            losses = F.cross_entropy(logits[keep], labels[keep], reduction="sum")
        return losses / logits.shape[0]


@register_term("kd")
class LogitKD(LossTerm):
    """Soft-label KD: ``T² · KL(softmax(z_T / T) ‖ softmax(z_S / T))`` (batch mean); regression: ``MSE(z_S, z_T)``.

    Config example::

        losses:
          - {name: kd, weight: 0.5, temperature: 5.0}
    """

    def __init__(self, ctx: TermContext, temperature: float = 5.0):
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"kd temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.regression = _is_regression(ctx)

    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        teacher = teacher_features(teacher)
        if self.regression:
            return F.mse_loss(student.logits, teacher.logits)
        t = self.temperature
        log_p_student = torch.log_softmax(student.logits / t, dim=-1)
        log_p_teacher = torch.log_softmax(teacher.logits / t, dim=-1)
        return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t
