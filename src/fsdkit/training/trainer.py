"""``DistillationTrainer``: a ``transformers.Trainer`` whose loss is a weighted sum of loss terms.

``L = Σ_k w_k · term_k(student features, teacher features, batch)``. The teacher is frozen, in eval mode,
runs under ``torch.no_grad`` and is not part of the optimised module; the optimised module is
:class:`StudentWithTerms` (the student plus the terms' own parameters, e.g. the FSDG student memory), which is
what checkpoints hold, so ``--resume`` restores both. Each term's mean value is logged as ``loss_<label>``.
Terms active only in some training stages (progressive / stacked schedules) are selected from the global
step, so a run resumed mid-stage continues in the right stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import nn
from transformers import Trainer

from fsdkit.features import FeatureRequest, Features, forward_features
from fsdkit.losses.base import LossTerm
from fsdkit.training.methods import TermSpec


class StudentWithTerms(nn.Module):
    """The module the optimiser sees: ``student`` plus ``terms`` (a ModuleDict keyed by term label)."""

    def __init__(self, student: nn.Module, terms: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.terms = terms

    @property
    def config(self):
        return self.student.config

    def forward(self, **batch):
        from fsdkit.features import model_inputs

        return self.student(**model_inputs(batch))


def stage_of(step: int, total_steps: int, n_stages: int) -> int:
    """Stage index of ``step`` when ``total_steps`` are split into ``n_stages`` equal stages."""
    if n_stages <= 1 or total_steps <= 0:
        return 0
    return min(step * n_stages // total_steps, n_stages - 1)


class LiveTeacher:
    """Teacher features computed by a forward pass of the frozen teacher (eval mode, no grad)."""

    def __init__(self, model: nn.Module):
        self.model = model
        model.eval()
        model.requires_grad_(False)

    def to(self, device) -> LiveTeacher:
        self.model.to(device)
        return self

    def features(self, batch, request: FeatureRequest) -> Features:
        with torch.no_grad():
            return forward_features(self.model, batch, request)


class DistillationTrainer(Trainer):
    """Trainer for ``StudentWithTerms`` with an optional frozen ``teacher`` (see module docstring).

    ``teacher`` is a model (wrapped in :class:`LiveTeacher`) or any *teacher source* with
    ``features(batch, request) -> Features`` and ``to(device)``, such as the on-disk teacher-output cache.
    """

    def __init__(
        self,
        model: StudentWithTerms,
        args,
        *,
        term_specs: Sequence[TermSpec],
        teacher=None,
        n_stages: int = 1,
        relation_tracker=None,
        **kwargs,
    ):
        self.term_specs = list(term_specs)
        terms: dict[str, LossTerm] = dict(model.terms.items())
        if teacher is None and any(terms[s.label].needs_teacher for s in self.term_specs):
            needing = [s.label for s in self.term_specs if terms[s.label].needs_teacher]
            raise ValueError(f"loss terms {needing} need a teacher, but none was given")
        if any(terms[s.label].min_batch_size > 1 for s in self.term_specs):
            args.dataloader_drop_last = True  # a last batch of one sample has no batch structure
        super().__init__(model=model, args=args, **kwargs)
        if isinstance(teacher, nn.Module):
            teacher = LiveTeacher(teacher)
        self.teacher = teacher.to(self.args.device) if teacher is not None else None
        self.n_stages = n_stages
        self.relation_tracker = relation_tracker
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self._last_tracked_step = -1

    # ------------------------------------------------------------------ loss
    def current_stage(self) -> int:
        return stage_of(self.state.global_step, self.state.max_steps, self.n_stages)

    def active_terms(self, model: StudentWithTerms) -> list[tuple[TermSpec, LossTerm]]:
        stage = self.current_stage()
        return [
            (spec, model.terms[spec.label])
            for spec in self.term_specs
            if spec.weight != 0 and (spec.stages is None or stage in spec.stages)
        ]

    def _tracking_now(self) -> bool:
        return (
            self.relation_tracker is not None
            and self.teacher is not None
            and self.model.training
            and self.relation_tracker.should_update(self.state.global_step)
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        active = self.active_terms(model)
        track = self._tracking_now()
        request = FeatureRequest(hidden_states=track)
        for _, term in active:
            request = request | term.request()
        student = forward_features(model.student, inputs, request)
        teacher = None
        if self.teacher is not None and (track or any(term.needs_teacher for _, term in active)):
            teacher = self.teacher.features(inputs, request)
        total = student.logits.new_zeros(())
        for spec, term in active:
            value = term(student, teacher, inputs)
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"loss term '{spec.label}' ({spec.name}) is {value.item()} at step {self.state.global_step}; "
                    f"the step was not applied. Checkpoints in {self.args.output_dir} are intact: lower the learning "
                    f"rate or the term's weight and resume."
                )
            total = total + spec.weight * value
            self._term_sums[spec.label] += value.item()
            self._term_counts[spec.label] += 1
        if track:
            self._track_relations(student, teacher)
        return (total, student) if return_outputs else total

    def _track_relations(self, student: Features, teacher: Features) -> None:
        if self._last_tracked_step == self.state.global_step:
            return  # once per optimizer step, not once per accumulated micro-batch
        self._last_tracked_step = self.state.global_step
        self.relation_tracker.update(
            self.state.global_step,
            student.hidden("penultimate").detach(),
            teacher.hidden("penultimate"),
            student.attention_mask,
        )

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:
            for label, count in self._term_counts.items():
                logs[f"loss_{label}"] = round(self._term_sums[label] / count, 6)
            if self.n_stages > 1:
                logs["stage"] = self.current_stage()
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, *args, **kwargs)
