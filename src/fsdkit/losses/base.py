"""The loss-term interface: what a term needs from the forward passes and how it scores them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from torch import Tensor, nn

from fsdkit.features import FeatureRequest, Features


@dataclass
class TermContext:
    """What a term may need to know when it is built (widths, heads, task, tokenizer compatibility).

    ``student_config`` / ``teacher_config`` are the models' ``PretrainedConfig``; ``teacher_config`` is None
    when the run has no teacher. ``same_tokenizer`` tells token-level terms whether token i of the teacher
    is token i of the student. ``max_length`` is the tokenizer truncation length of the run.
    """

    student_config: Any
    teacher_config: Any  # None when the run has no teacher (Any: the terms that read it need a teacher)
    task: Any
    same_tokenizer: bool = True
    max_length: int = 128
    extras: dict[str, Any] = field(default_factory=dict)


class LossTerm(nn.Module, ABC):
    """One unweighted term of the training objective; the trainer multiplies it by its weight.

    Subclasses set ``name`` (the registry key), ``needs_teacher``, and implement :meth:`request` and
    :meth:`forward`. A term made of several parts may keep their detached values of the last call in
    ``last_parts`` (a dict); the trainer logs each as ``loss_<label>_<part>``. Parameters a term owns (a projection, a student memory) train with the student and
    are checkpointed with it, but are not part of the exported student model.
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = True

    @property
    def min_batch_size(self) -> int:
        """The smallest batch the term is defined for (batch-level structures need ≥ 2 samples): the run refuses a
        smaller ``--batch-size`` before training, and the trainer drops a smaller last batch."""
        return 1

    def request(self) -> FeatureRequest:
        """Features this term reads from both forward passes (student and teacher), the teacher's hidden layers
        named (``teacher_layers``: what the teacher-output cache stores)."""
        return FeatureRequest()

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups of the term's own parameters that need their own settings (e.g. a
        learning rate), as ``torch.optim`` group dicts; parameters not listed train with the student."""
        return []

    @abstractmethod
    def forward(self, student: Features, teacher: Features | None, batch: dict[str, Tensor]) -> Tensor:
        """The term's unweighted scalar value for one batch."""

    def extra_repr(self) -> str:
        return self.name


def teacher_features(teacher: Features | None) -> Features:
    """``teacher`` in the :meth:`~LossTerm.forward` of a term that ``needs_teacher``: the trainer passes such a term
    the teacher's features, never None (typed so; not checked at run time)."""
    return cast(Features, teacher)


def require_same_tokenizer(ctx: TermContext, loss: str, alternative: str) -> None:
    """Refuse a token-level loss (one that pairs token i of the teacher with token i of the student) when the two
    models tokenize differently; the message names the loss and a sample-level alternative."""
    if not ctx.same_tokenizer:
        from fsdkit.errors import ModelError

        raise ModelError(
            f"the {loss} loss pairs token i of the teacher with token i of the student, but the teacher and student "
            f"tokenizers differ; use {alternative}"
        )
