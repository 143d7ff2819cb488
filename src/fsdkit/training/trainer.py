"""``DistillationTrainer``: a ``transformers.Trainer`` whose loss is a weighted sum of loss terms.

``L = Σ_k w_k · term_k(student features, teacher features, batch)``. The teacher is frozen, in eval mode,
runs under ``torch.no_grad`` and is not part of the optimised module; the optimised module is
:class:`StudentWithTerms` (the student plus the terms' own parameters, e.g. the FSDG student memory), which is
what checkpoints hold, so ``--resume`` restores both. Each term's mean value is logged as ``loss_<label>``
(its per-sample mean since the last log, kept as a tensor and read only when logged).
Terms active only in some training stages (progressive / stacked schedules) are selected from the global
step, so a run resumed mid-stage continues in the right stage. With ``stage_lr="restart"`` (the default of a
staged run) every stage also gets its own linear warm-up and decay (:func:`staged_linear_factor`), as if each
stage were a run of its own; ``"global"`` keeps transformers' single schedule over the whole run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, cast

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from fsdkit.errors import NonFiniteError
from fsdkit.features import FeatureRequest, Features, forward_features, teacher_view
from fsdkit.losses.base import LossTerm
from fsdkit.losses.similarities import deferred_checks
from fsdkit.methods import STAGE_LR_SCHEDULES, TermSpec, in_use
from fsdkit.training.sampling import EpochSeededLengthGroupedSampler

if TYPE_CHECKING:
    from torch.optim import Optimizer


class StudentWithTerms(nn.Module):
    """The module the optimiser sees: ``student`` plus ``terms`` (a ModuleDict keyed by term label).

    Its ``forward`` runs the student *and* the active terms, so that under ``accelerate launch`` the whole
    step goes through the DDP wrapper (gradient synchronisation) and accelerate's autocast wraps the student's
    forward pass. The terms themselves always run in float32 with autocast off (:meth:`Features.float`), so a
    mixed-precision run's losses are as precise as a float32 run's.
    """

    #: the loss returned by ``DistillationTrainer.compute_loss`` is normalised by the Trainer's
    #: ``num_items_in_batch`` (the samples of the whole accumulated batch), so transformers does not divide
    #: it again by the gradient-accumulation steps
    accepts_loss_kwargs = True

    def __init__(self, student: nn.Module, terms: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.terms = terms

    @property
    def config(self):
        return self.student.config

    def forward(
        self,
        batch: dict,
        request: FeatureRequest = FeatureRequest(),
        teacher: Features | None = None,
        labels: Sequence[str] = (),
    ) -> tuple[dict[str, torch.Tensor], Features]:
        """``({label: unweighted term value}, student features)`` for the terms named in ``labels``."""
        student = forward_features(self.student, batch, request)
        with torch.autocast(student.logits.device.type, enabled=False):
            student32 = student.float()
            teacher32 = None if teacher is None else teacher.float()
            values = {}
            for label in labels:
                try:
                    values[label] = self.terms[label](student32, teacher32, batch)
                except NonFiniteError as exc:  # diverged features: the trainer's stop, naming the term
                    raise NonFiniteError(f"loss term '{label}': {exc}") from None
        return values, student


def stage_of(step: int, total_steps: int, n_stages: int) -> int:
    """Stage index of ``step`` when ``total_steps`` are split into ``n_stages`` equal stages."""
    if n_stages <= 1 or total_steps <= 0:
        return 0
    return min(step * n_stages // total_steps, n_stages - 1)


def stage_start(stage: int, total_steps: int, n_stages: int) -> int:
    """First step of ``stage``: the smallest step ``t`` with ``stage_of(t) == stage`` (⌈stage · total / n⌉)."""
    return -(-stage * total_steps // n_stages)


def staged_linear_factor(step: int, *, total_steps: int, n_stages: int, warmup_ratio: float) -> float:
    """Learning-rate factor at ``step`` when every stage has its own linear warm-up and decay.

    Stage ``s`` spans steps ``[a_s, a_{s+1})`` (:func:`stage_start`) of length ``m_s``, with ``w_s =
    ⌈warmup_ratio · m_s⌉`` warm-up steps; at local step ``u = step − a_s`` the factor is ``u / w_s`` while
    ``u < w_s``, then ``(m_s − u) / (m_s − w_s)`` — transformers' linear schedule, restarted at each stage.
    """
    stage = stage_of(step, total_steps, n_stages)
    begin, end = stage_start(stage, total_steps, n_stages), stage_start(stage + 1, total_steps, n_stages)
    length, local = max(end - begin, 1), step - begin
    warmup = math.ceil(warmup_ratio * length)
    if local < warmup:
        return local / warmup
    return max(0.0, (length - local) / max(1, length - warmup))


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
        with torch.no_grad():  # the teacher's own tokenisation when the student tokenizes differently
            return forward_features(self.model, teacher_view(batch), request)


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
        stage_lr: str = "restart",
        relation_tracker=None,
        **kwargs,
    ):
        if stage_lr not in STAGE_LR_SCHEDULES:
            raise ValueError(f"stage_lr must be one of {STAGE_LR_SCHEDULES}, got {stage_lr!r}")
        self.term_specs = in_use(list(term_specs))  # a term at weight 0 is not computed (nor, by fsdkit's runs, built)
        terms = cast("dict[str, LossTerm]", dict(model.terms.items()))  # a ModuleDict of LossTerms
        if teacher is None and any(terms[s.label].needs_teacher for s in self.term_specs):
            needing = [s.label for s in self.term_specs if terms[s.label].needs_teacher]
            raise ValueError(f"loss terms {needing} need a teacher, but none was given")
        if any(terms[s.label].min_batch_size > 1 for s in self.term_specs):
            args.dataloader_drop_last = True  # a last batch of one sample has no batch structure
        self._epoch_seeded_sampler: EpochSeededLengthGroupedSampler | None = None  # made with the train loader
        super().__init__(model=model, args=args, **kwargs)
        if isinstance(teacher, nn.Module):
            teacher = LiveTeacher(teacher)
        self.teacher = teacher.to(self.args.device) if teacher is not None else None
        self.n_stages = n_stages
        self.stage_lr = stage_lr
        self.relation_tracker = relation_tracker
        self._term_sums: dict[str, torch.Tensor | float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self._last_tracked_step = -1

    # ------------------------------------------------------------------ batches
    def _get_train_sampler(self, train_dataset=None):
        """transformers' sampler, except that length-grouped batches are drawn in an order that depends on the
        seed and the epoch only (:mod:`fsdkit.training.sampling`), so that a resumed run sees the same batches."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            sampler = self._epoch_seeded_sampler = EpochSeededLengthGroupedSampler(
                sampler.batch_size, sampler.lengths, seed
            )
        return sampler

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """transformers' loader that skips the batches a run resumed mid-epoch has trained on, its length-grouped
        sampler first set to the resumed epoch: under several processes the skipping wrapper hides the sampler from
        the ``set_epoch`` that follows, which would leave it at epoch 0's order."""
        if self._epoch_seeded_sampler is not None:
            self._epoch_seeded_sampler.set_epoch(math.floor(self.state.epoch))
        return super().get_resumed_dataloader(dataloader, num_batches)

    # ------------------------------------------------------------------ schedule
    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers' scheduler, or for a staged run with ``stage_lr="restart"`` the per-stage linear one."""
        if self.n_stages <= 1 or self.stage_lr == "global":
            return super().create_scheduler(num_training_steps, optimizer)
        if self.args.lr_scheduler_type != "linear":
            raise ValueError(
                f"stage_lr='restart' restarts a linear schedule per stage; lr_scheduler_type is "
                f"{self.args.lr_scheduler_type!r}: use stage_lr='global' to keep it"
            )
        if self.lr_scheduler is None:
            ratio = self.args.get_warmup_steps(num_training_steps) / max(1, num_training_steps)
            factor = partial(
                staged_linear_factor, total_steps=num_training_steps, n_stages=self.n_stages, warmup_ratio=ratio
            )
            self.lr_scheduler = LambdaLR(
                cast("Optimizer", optimizer if optimizer is not None else self.optimizer), factor
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model=None):
        """transformers' optimizer, with each term's own parameter groups (:meth:`LossTerm.param_groups`, e.g.
        the FSDG student memory's learning rate) taken out of the default groups and added as groups of their
        own; the learning-rate schedule scales every group alike."""
        if self.optimizer is not None:
            return self.optimizer
        optimizer = super().create_optimizer(model)
        unwrapped = self.accelerator.unwrap_model(self.model if model is None else model)
        own = [group for term in unwrapped.terms.values() for group in term.param_groups()]
        if own:
            special = {id(p) for group in own for p in group["params"]}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in special]
            for group in own:
                optimizer.add_param_group(dict(group))
        return optimizer

    # ------------------------------------------------------------------ loss
    def current_stage(self) -> int:
        return stage_of(self.state.global_step, self.state.max_steps, self.n_stages)

    def active_terms(self, model: StudentWithTerms) -> list[tuple[TermSpec, LossTerm]]:
        stage = self.current_stage()
        return [
            (spec, cast(LossTerm, model.terms[spec.label]))
            for spec in self.term_specs
            if spec.stages is None or stage in spec.stages
        ]

    def _tracking_now(self) -> bool:
        return (
            self.relation_tracker is not None
            and self.teacher is not None
            and cast(nn.Module, self.model).training
            and self.relation_tracker.should_update(self.state.global_step)
        )

    def _diverged(self, active, values, cause: str | None = None) -> str:
        """The message of a step whose loss is not finite: the term at fault — one whose value is not finite, else
        the one whose weighted value overflowed (a weight of 1e39 times a finite term) — and what to do. ``cause``:
        a similarity's input check that failed (read after the terms ran, on an accelerator)."""
        bad = next((s for s, _ in active if not torch.isfinite(values[s.label])), None)
        if bad is not None:
            what = f"loss term '{bad.label}' ({bad.name}) is {values[bad.label].item()}"
            what += f" ({cause})" if cause else ""
        elif cause:
            what = f"{cause} (in one of the terms {', '.join(repr(s.label) for s, _ in active)})"
        else:
            bad = max(active, key=lambda a: abs(a[0].weight * float(values[a[0].label].detach())))[0]
            what = (
                f"loss term '{bad.label}' ({bad.name}) × its weight {bad.weight:g} = "
                f"{bad.weight * float(values[bad.label].detach())} overflows"
            )
        return self._stop(what)

    def _stop(self, what: str) -> str:
        return (
            f"{what} at step {self.state.global_step}; the step was not applied. Checkpoints in "
            f"{self.args.output_dir} are intact: lower the learning rate or the term's weight and resume."
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """``Σ_k w_k · term_k`` of this micro-batch, scaled for gradient accumulation and data parallelism.

        Every term is a mean over this micro-batch of ``n`` samples. With ``num_items_in_batch = N`` (the samples
        of all micro-batches of the optimizer step, over all processes when transformers'
        ``average_tokens_across_devices`` is on) the loss is multiplied by ``n / N`` (and by the number of
        processes, which DDP's gradient average divides out again): the gradient of ``k`` micro-batches of
        ``b`` equals the gradient of one batch of ``k·b`` for every term that is a batch mean. Batch-level
        structure terms (FSDL, RKD, the memory term) are computed per micro-batch and weighted the same way.
        """
        unwrapped = self.accelerator.unwrap_model(model)
        active = self.active_terms(unwrapped)
        track = self._tracking_now()
        request = FeatureRequest.union(FeatureRequest(hidden_states=track), *(term.request() for _, term in active))
        teacher = None
        if self.teacher is not None and (track or any(term.needs_teacher for _, term in active)):
            with self.accelerator.autocast():
                teacher = self.teacher.features(inputs, request)
        with deferred_checks() as checks:  # the structure terms' input checks, read below with the loss's finiteness
            try:
                values, student = model(inputs, request, teacher, [spec.label for spec, _ in active])
            except NonFiniteError as exc:
                raise FloatingPointError(self._stop(str(exc))) from None
        total = student.logits.new_zeros((), dtype=torch.float32)
        for spec, _ in active:
            total = total + spec.weight * values[spec.label]
        try:
            finite = checks.read(torch.isfinite(total))  # one host sync per step; the terms are read only when logged
        except NonFiniteError as exc:  # a deferred (accelerator) check of a term's input: the term, where it shows
            raise FloatingPointError(self._diverged(active, values, cause=str(exc))) from None
        if not finite:
            raise FloatingPointError(self._diverged(active, values))
        n = student.logits.shape[0]
        for spec, term in active:
            logged = {spec.label: values[spec.label].detach()}
            logged.update({f"{spec.label}_{part}": v for part, v in getattr(term, "last_parts", {}).items()})
            for key, value in logged.items():
                self._term_sums[key] = self._term_sums[key] + value * n
                self._term_counts[key] += n
        if num_items_in_batch is not None and model.training:
            total = total * (n / num_items_in_batch)
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                total = total * self.accelerator.num_processes
        if track:
            self._track_relations(student, cast(Features, teacher))  # tracking needs the teacher: it was run
        return (total, student) if return_outputs else total

    def _track_relations(self, student: Features, teacher: Features) -> None:
        if self._last_tracked_step == self.state.global_step:
            return  # once per optimizer step, not once per accumulated micro-batch
        if student.logits.shape[0] < 2:
            return  # a batch of one sample has no relations to measure: logging skips it, training goes on
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
            labels = list(self._term_counts)
            if labels:  # sample-weighted means since the last log, over every process of a multi-process run
                sums = torch.stack(
                    [torch.as_tensor(self._term_sums[k], dtype=torch.float64, device=self.args.device) for k in labels]
                )
                counts = torch.tensor(
                    [self._term_counts[k] for k in labels], dtype=torch.float64, device=self.args.device
                )
                if self.accelerator.num_processes > 1:
                    sums, counts = self.accelerator.reduce(sums, "sum"), self.accelerator.reduce(counts, "sum")
                for label, value in zip(labels, (sums / counts).tolist()):
                    logs[f"loss_{label}"] = round(value, 6)
            if self.n_stages > 1:
                logs["stage"] = self.current_stage()
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, *args, **kwargs)
