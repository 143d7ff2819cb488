"""The Python API behind ``fsdkit finetune``, ``fsdkit distill`` and ``fsdkit memory build``.

Fine-tuning is the one-term case of distillation (the task loss, no teacher), so both go through
:class:`~fsdkit.training.trainer.DistillationTrainer`. Each run writes, in ``output_dir``: the model as a
standard Hugging Face folder, ``fsdkit_run.json`` (config, timings, metrics, versions), ``eval_results.json``,
``log_history.json``, and ``checkpoints/`` for ``resume``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from datasets import Dataset, DatasetDict
from torch import nn
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import TrainOutput

from fsdkit.artifacts import check_output_dir
from fsdkit.config import (
    STUDENT_FROM_TEACHER,
    DistillConfig,
    FinetuneConfig,
    RunConfig,
    as_config,
    changed_options,
    command_line,
    config_to_dict,
    input_paths,
)
from fsdkit.data import TaskSpec, make_collator
from fsdkit.data.encode import TwoTokenizerCollator
from fsdkit.errors import ConfigError, ModelError
from fsdkit.losses import TermContext, build_term, term_class
from fsdkit.methods import Staged, TermSpec, get_method, in_use, run_terms
from fsdkit.models.architecture import count_parameters
from fsdkit.run_record import RunRecord
from fsdkit.training.checkpoints import resume_checkpoint
from fsdkit.training.host_memory import reused_host_memory
from fsdkit.training.run_data import HOLDOUT, encoded_train, load_run_data
from fsdkit.training.teacher_memory import checked_memory
from fsdkit.training.trainer import DistillationTrainer, StudentWithTerms

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fsdkit.losses.base import LossTerm

logger = logging.getLogger("fsdkit")


def git_commit() -> str | None:
    """The commit of the fsdkit source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _check_run_config(config: RunConfig) -> Path:
    if not config.output_dir:
        raise ConfigError("--output-dir is required")
    if config.max_steps <= 0 and config.epochs <= 0:
        raise ConfigError("give --epochs > 0 or --max-steps > 0")
    if config.bf16 and config.fp16:
        raise ConfigError("--bf16 and --fp16 are exclusive: choose one mixed precision")
    if config.fp16 and not torch.cuda.is_available():
        raise ConfigError("--fp16 needs a CUDA GPU (float16 autocast with loss scaling); on the CPU use --bf16")
    out = check_output_dir(config.output_dir, keep=input_paths(config))
    checkpoints = out / "checkpoints"
    if not config.resume and checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
        raise ConfigError(
            f"{out} already holds checkpoints of a run; pass --resume to continue it, or choose another --output-dir"
        )
    return out


def training_arguments(config: RunConfig, out: Path) -> TrainingArguments:
    """Map fsdkit's run options onto ``transformers.TrainingArguments``."""
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps > 0 else -1,  # 0 or less: train for --epochs
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        fp16=config.fp16,
        # no GPU: bf16 autocast on the CPU and `accelerate launch --multi_gpu` / torchrun processes (gloo) need
        # transformers' use_cpu (else bf16 is refused and each process trains alone)
        use_cpu=not torch.cuda.is_available() and (config.bf16 or int(os.environ.get("WORLD_SIZE", "1")) > 1),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        report_to=config.report_to,
        torch_compile=config.torch_compile,
        disable_tqdm=not config.progress,
        remove_unused_columns=False,
        label_names=["labels"],
        eval_strategy="no",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


@dataclass
class RunSetup:
    """What ``finetune`` or ``distill`` hands to training: the run, its models and its loss terms."""

    command: str  # "finetune" or "distill"
    config: RunConfig
    out: Path  # the output folder
    task: TaskSpec
    data: DatasetDict  # the run's splits (see :func:`fsdkit.training.run_data.load_run_data`)
    model: nn.Module  # the model trained: the student (or the fine-tuned model)
    tokenizer: Any
    specs: list[TermSpec]
    ctx: TermContext
    teacher: nn.Module | None = None
    teacher_tokenizer: Any = None  # given when teacher and student tokenize differently
    n_stages: int = 1
    stage_lr: str = "restart"
    relation_every: int = 0  # log the relation differences every N steps (0: never)
    record_fields: dict[str, Any] = field(default_factory=dict)  # the command's own run-record fields
    on_evaluate: Callable[[dict], None] | None = None  # called with each per-epoch evaluation point


@dataclass
class PreparedRun:
    """What :func:`_prepare` makes of a :class:`RunSetup`: the trainer over the encoded training rows."""

    trainer: DistillationTrainer
    train: Dataset  # the encoded training rows
    teacher: nn.Module | None  # the live teacher, or its teacher-output cache
    tracker: Any = None  # the RelationTracker of the relation differences, when they are logged


def _train_and_export(setup: RunSetup) -> dict[str, Any]:
    """Train ``setup``'s model and export it with its run record; returns the record (in a process other than the
    main one of a distributed run, which exports nothing: :func:`_worker_summary`)."""
    prepared = _prepare(setup)
    started = time.time()
    result = prepared.trainer.train(resume_from_checkpoint=resume_checkpoint(setup.config, setup.out))
    setup.model.eval()
    if not prepared.trainer.is_world_process_zero():  # under `accelerate launch`: the main process exports
        return _worker_summary(setup, prepared.trainer)
    return _export(setup, prepared, result, started).to_dict()


def _prepare(setup: RunSetup) -> PreparedRun:
    """The loss terms, the encoded training rows, the teacher (or its output cache) and the trainer of a run."""
    config = setup.config
    terms = _build_terms(setup)
    train = encoded_train(
        setup.data,
        setup.task,
        setup.tokenizer,
        config,
        max(cast("LossTerm", t).min_batch_size for t in terms.values()),
        setup.teacher_tokenizer,
    )
    if setup.teacher_tokenizer is None:
        collator, relation_every = make_collator(setup.tokenizer), setup.relation_every
    else:
        collator, relation_every = _two_tokenizer_collator(setup)
    teacher = setup.teacher
    if teacher is not None and getattr(config, "teacher_cache", None):
        train = train.add_column("idx", list(range(len(train))))
        teacher = _cached_teacher(teacher, terms, train, setup.tokenizer, config, setup.task, track=relation_every > 0)
    tracker = None
    if relation_every > 0 and teacher is not None:
        from fsdkit.analysis.relations import RelationTracker

        tracker = RelationTracker(every_n_steps=relation_every)
    trainer = DistillationTrainer(
        model=StudentWithTerms(setup.model, terms),
        args=training_arguments(config, setup.out),
        term_specs=setup.specs,
        teacher=teacher,
        n_stages=setup.n_stages,
        stage_lr=setup.stage_lr,
        relation_tracker=tracker,
        train_dataset=train,
        data_collator=collator,
    )
    if config.eval_strategy == "epoch" or setup.on_evaluate is not None:
        trainer.add_callback(_epoch_evaluation(setup))
    return PreparedRun(trainer=trainer, train=train, teacher=teacher, tracker=tracker)


def _build_terms(setup: RunSetup) -> nn.ModuleDict:
    """The run's loss terms by label, those of weight ≠ 0 (:func:`fsdkit.methods.in_use`); models whose attention
    maps a term reads switch to eager attention, and a term that compares the samples of a batch checks the batch
    size."""
    for spec in setup.specs:  # a term at weight 0 is not built, but its name and options are checked all the same
        term_class(spec.name, spec.options)
    specs = in_use(setup.specs)
    built: dict[str, LossTerm] = {spec.label: build_term(spec.name, setup.ctx, spec.options) for spec in specs}
    terms = nn.ModuleDict(built)
    if any(term.request().attentions for term in built.values()):
        # attention maps are only returned by the eager implementation; a cached teacher's are recomputed from its
        # queries and keys, which any implementation gives
        for m in (setup.model, None if getattr(setup.config, "teacher_cache", None) else setup.teacher):
            if m is not None:
                cast("PreTrainedModel", m).set_attn_implementation("eager")
    for spec in specs:
        if built[spec.label].min_batch_size > setup.config.batch_size:
            raise ConfigError(
                f"loss '{spec.label}' compares the samples of a batch and needs --batch-size ≥ "
                f"{built[spec.label].min_batch_size}, got {setup.config.batch_size}"
            )
    return terms


def _two_tokenizer_collator(setup: RunSetup):
    """``(collator, relation_every)`` when teacher and student tokenize differently: each reads its own tokens, and
    the relation differences (token against token) are not logged; the teacher-output cache is refused."""
    if getattr(setup.config, "teacher_cache", None):
        raise ConfigError(
            "--teacher-cache is keyed by one tokenisation; with teacher and student tokenizers "
            "that differ, run without it (the live teacher reads its own tokens)"
        )
    if setup.relation_every > 0:
        logger.info("relation differences are not logged: teacher and student tokens differ")
    return TwoTokenizerCollator(setup.tokenizer, setup.teacher_tokenizer), 0


def _epoch_evaluation(setup: RunSetup):
    """The callback that evaluates the model after every epoch (on the holdout split, if the run has one)."""
    from fsdkit.training.epoch_eval import EpochEvaluation

    split = HOLDOUT if HOLDOUT in setup.data else setup.task.eval_splits[0]
    return EpochEvaluation(
        setup.model,
        setup.tokenizer,
        setup.task,
        setup.data,
        split,
        batch_size=setup.config.eval_batch_size,
        max_length=setup.config.max_length,
        max_eval_samples=setup.config.max_eval_samples,
        report=setup.on_evaluate,
    )


def _worker_summary(setup: RunSetup, trainer: DistillationTrainer) -> dict[str, Any]:
    """What a process other than the main one of a distributed run returns: its index and the steps trained."""
    return {
        "command": setup.command,
        "task": setup.task.name,
        "process_index": trainer.args.process_index,
        "global_steps": trainer.state.global_step,
    }


def _export(setup: RunSetup, prepared: PreparedRun, result: TrainOutput, started: float) -> RunRecord:
    """Save the trained model, its logs and its dev metrics (``eval_results.json``), then its run record and model
    card; returns the record. ``started``: when training started."""
    from fsdkit.models import save_model

    out, history = setup.out, prepared.trainer.state.log_history
    save_model(setup.model, setup.tokenizer, out)
    (out / "log_history.json").write_text(json.dumps(history, indent=2) + "\n")
    if prepared.tracker is not None:
        prepared.tracker.to_json(out / "relation_history.json")
    eval_start = time.time()
    metrics = _evaluate(setup)
    eval_runtime = time.time() - eval_start
    (out / "eval_results.json").write_text(json.dumps({"task": setup.task.name, "metrics": metrics}, indent=2) + "\n")
    record = _run_record(setup, prepared, result, metrics, eval_runtime=eval_runtime, started=started)
    record.write(out)
    from fsdkit.model_card import write_model_card

    write_model_card(out, record, None if setup.task.labels is None else dict(enumerate(setup.task.labels)))
    return record


def _evaluate(setup: RunSetup) -> dict[str, dict[str, float]]:
    """The trained model's metrics on the task's evaluation splits (and the holdout split, if the run has one)."""
    from fsdkit.evaluation import evaluate_model

    config = setup.config
    return evaluate_model(
        setup.model,
        setup.tokenizer,
        setup.task,
        setup.data,
        batch_size=config.eval_batch_size,
        max_length=config.max_length,
        max_eval_samples=config.max_eval_samples,
        progress=config.progress,
        splits=[*setup.task.eval_splits, *([HOLDOUT] if HOLDOUT in setup.data else [])],
    )


def _run_record(
    setup: RunSetup,
    prepared: PreparedRun,
    result: TrainOutput,
    metrics: dict[str, dict[str, float]],
    *,
    eval_runtime: float,
    started: float,
) -> RunRecord:
    """The run record of a trained and evaluated run."""
    from fsdkit._version import __version__
    from fsdkit.training.epoch_eval import curve, losses_by_epoch

    config, history = setup.config, prepared.trainer.state.log_history
    return RunRecord(
        command=setup.command,
        task=setup.task.name,
        method=getattr(config, "method", "finetune"),
        seed=config.seed,
        config=config_to_dict(config),
        terms=[{"label": s.label, "name": s.name, "weight": s.weight} for s in setup.specs],
        metrics=metrics,
        main_metric=setup.task.main_metric,
        curve=curve(history),
        losses_by_epoch=losses_by_epoch(history),
        train_runtime=result.metrics.get("train_runtime"),
        train_samples_per_second=result.metrics.get("train_samples_per_second"),
        train_examples=len(prepared.train),
        global_steps=prepared.trainer.state.global_step,
        final_train_loss=result.metrics.get("train_loss"),
        eval_runtime=eval_runtime,
        parameters=count_parameters(setup.model),
        num_layers=getattr(setup.model.config, "num_hidden_layers", None),
        wall_time=time.time() - started,
        teacher_source=_teacher_source(prepared.teacher),
        fsdkit_version=__version__,
        command_line=command_line(setup.command, changed_options(config)),
        git_commit=git_commit(),
        torch_version=torch.__version__,
        **setup.record_fields,
    )


def _teacher_source(teacher) -> str | None:
    """Where the run's teacher outputs came from: ``live``, ``cache <key>`` (the teacher-output cache), or None."""
    from fsdkit.training.teacher_cache import TeacherCache

    if teacher is None:
        return None
    return f"cache {teacher.key}" if isinstance(teacher, TeacherCache) else "live"


def _cached_teacher(teacher, terms, train, tokenizer, config, task, *, track: bool):
    """The teacher-output cache for this teacher, training data and the layers ``terms`` read (built on first use;
    attention maps as the queries and keys of the layers they read)."""
    from fsdkit.features import FeatureRequest
    from fsdkit.training.teacher_cache import TeacherCache

    tracker = FeatureRequest(hidden_states=track, teacher_layers=frozenset({"penultimate"}))
    request = FeatureRequest.union(tracker, *(term.request() for term in terms.values() if term.needs_teacher))
    return TeacherCache.open_or_build(
        teacher,
        train,
        make_collator(tokenizer),
        request,
        config.teacher_cache,
        config.eval_batch_size,
        task=task.name,
        max_length=config.max_length,
        teacher_path=str(config.teacher),
    )


def finetune(config: FinetuneConfig | dict | None = None, *, on_evaluate=None, **overrides) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.task`` (the task loss alone); returns the run record.

    ``on_evaluate(point)``, if given, is called with each per-epoch evaluation point (see
    :mod:`fsdkit.training.epoch_eval`; giving it turns per-epoch evaluation on) and may stop the run by raising.

    >>> finetune(task="mrpc", data_dir="glue", output_dir="runs/teacher", epochs=3)  # doctest: +SKIP
    """
    from fsdkit.models import check_model_folder, load_classifier

    config = as_config(FinetuneConfig, config, overrides)
    out = _check_run_config(config)
    check_model_folder(config.model, max_length=config.max_length, option="model")
    task, data = load_run_data(config)
    set_seed(config.seed)
    model, tokenizer = load_classifier(config.model, task)
    ctx = TermContext(model.config, None, task, max_length=config.max_length)
    with reused_host_memory(config.reuse_host_memory):
        return _train_and_export(
            RunSetup(
                command="finetune",
                config=config,
                out=out,
                task=task,
                data=data,
                model=model,
                tokenizer=tokenizer,
                specs=[TermSpec("task", 1.0)],
                ctx=ctx,
                record_fields={"model": str(config.model)},
                on_evaluate=on_evaluate,
            )
        )


def distill(config: DistillConfig | dict | None = None, *, on_evaluate=None, **overrides) -> dict[str, Any]:
    """Distil a student built from ``config.student_layers`` of ``config.student`` from ``config.teacher``.

    The method (``config.method``) names the loss terms; ``config.losses`` adds more; a term at weight 0 is not
    built (:func:`fsdkit.methods.in_use`). For methods with the global (memory) structure, λ_G ≠ 0 and no
    ``config.memory``, the teacher memory is built first into ``OUTPUT_DIR/memory``. Returns the run record (also written to ``OUTPUT_DIR/fsdkit_run.json``).
    ``on_evaluate``: as for :func:`finetune`.
    """
    from fsdkit.losses.catalog import TERMS
    from fsdkit.models import build_student, check_model_folder, check_same_tokenizer, load_classifier, load_teacher
    from fsdkit.models.loading import load_tokenizer
    from fsdkit.models.student import parse_student_config, student_from_config

    config = as_config(DistillConfig, config, overrides)
    out = _check_run_config(config)
    specs = run_terms(config)
    needs_teacher = config.student == STUDENT_FROM_TEACHER or any(
        TERMS[s.name].needs_teacher for s in in_use(specs) if s.name in TERMS
    )  # an unknown name fails when built
    if needs_teacher and not config.teacher:
        raise ConfigError(
            f"--teacher is required by --method {config.method}: a fine-tuned teacher folder (see `fsdkit finetune`)"
        )
    method = get_method(config.method)
    # a student made from the teacher needs the teacher (refused above without one)
    student_source = cast(str, config.teacher) if config.student == STUDENT_FROM_TEACHER else config.student
    shape = parse_student_config(config.student_config) if config.student_config else None
    if config.student_tokenizer and shape is None:
        raise ConfigError(
            "--student-tokenizer gives a fresh --student-config student its vocabulary; a pretrained "
            "--student brings its own tokenizer"
        )
    if shape is not None and not config.teacher:
        raise ConfigError(
            "--student-config builds its student on the teacher's tokenizer and vocabulary: give --teacher"
        )
    if config.teacher:
        check_model_folder(config.teacher, max_length=config.max_length, option="teacher")
    if shape is None:  # a fresh --student-config student has no folder to check
        check_model_folder(student_source, max_length=config.max_length, option="student")
    task, data = load_run_data(config)
    set_seed(config.seed)

    teacher = teacher_tokenizer = None
    if config.teacher:  # a method without teacher terms (nds) runs without one
        from fsdkit.evaluation import check_model_matches_task

        teacher, teacher_tokenizer = load_teacher(config.teacher, None)
        check_model_matches_task(teacher, task, config.teacher)
    if shape is None:
        base, tokenizer = load_classifier(student_source, task)
    elif config.student_tokenizer:
        tokenizer = load_tokenizer(config.student_tokenizer)
    else:  # --student-config needs --teacher (refused above without one)
        tokenizer = cast("PreTrainedTokenizerBase", teacher_tokenizer)
    same_tokenizer = True
    try:
        if teacher_tokenizer is not None:
            check_same_tokenizer(teacher_tokenizer, tokenizer)
    except ModelError as exc:  # each model then reads its own tokens; token-level losses refuse to be built
        same_tokenizer = False
        logger.info(
            "teacher %s and student %s tokenize differently (%s): each reads its own tokens",
            config.teacher,
            config.student,
            exc,
        )

    if method.needs_memory and any(s.name == "memory" for s in in_use(specs)):  # not with λ_G = 0: no memory term
        config = checked_memory(config, out, teacher, task)

    if shape is None:
        student = build_student(base, config.student_layers)
    else:
        student_source = "config"
        student = student_from_config(cast(nn.Module, teacher), shape, tokenizer)
    set_seed(config.seed)  # the terms' own parameters start from the same state however the models were loaded
    ctx = TermContext(
        student.config,
        teacher.config if teacher is not None else None,
        task,
        same_tokenizer=same_tokenizer,
        max_length=config.max_length,
    )
    with reused_host_memory(config.reuse_host_memory):
        return _train_and_export(
            RunSetup(
                command="distill",
                config=config,
                out=out,
                task=task,
                data=data,
                model=student,
                tokenizer=tokenizer,
                specs=run_terms(config),
                ctx=ctx,
                teacher=teacher,
                teacher_tokenizer=None if same_tokenizer else teacher_tokenizer,
                n_stages=method.stages(config.method_options, config),
                stage_lr=config.method_options.stage_lr if isinstance(config.method_options, Staged) else "restart",
                relation_every=config.relation_every,
                record_fields={
                    "teacher": config.teacher and str(config.teacher),
                    "student_base": str(student_source),
                    "student_init": "config"
                    if shape is not None
                    else "teacher"
                    if config.student == STUDENT_FROM_TEACHER
                    else "pretrained",
                    "student_layers": cast(Any, student.config).fsdkit_student_layers,
                    "student_shape": shape,
                },
                on_evaluate=on_evaluate,
            )
        )
