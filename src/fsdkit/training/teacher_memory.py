"""The teacher memory of a run (FSDG): ``fsdkit memory build`` (:func:`build_memory`, sharded over the processes of
``accelerate launch``), and the memory a distillation run may use (:func:`checked_memory`): a given ``--memory``
that matches its teacher, task and length, or the automatic one in ``OUTPUT_DIR/memory``, rebuilt unless it was
built from this teacher, task, length, K and training rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from fsdkit.artifacts import build_lock, check_output_dir
from fsdkit.config import DataOptions, DistillConfig, MemoryConfig, as_config, command_line, input_paths
from fsdkit.data.files import DataSource, with_transfer
from fsdkit.errors import ConfigError
from fsdkit.training.run_data import carve_holdout

logger = logging.getLogger("fsdkit")


def _memory_rows(config):
    """The task and the training rows a teacher memory of ``config`` is built from: its training split less the
    ``holdout_fraction`` rows a run with that setting scores on (those rows are not the student's to see), or the
    first ``max_train_samples`` of them, and the transfer rows."""
    from fsdkit.data import resolve_task_data

    task, data = resolve_task_data(config)
    train = data["train"]
    if getattr(config, "holdout_fraction", None) is not None:
        train, _ = carve_holdout(train, config.holdout_fraction)
    if config.max_train_samples is not None:  # labelled rows; the transfer rows all stay
        train = train.select(range(min(config.max_train_samples, len(train))))
    if getattr(config, "transfer_file", None):  # the memory covers the transfer rows too
        train = with_transfer(train, config.transfer_file, DataSource.from_config(config) or DataSource(), task)
    return task, train


def _memory_identity(teacher, task, train, max_length: int | None, max_train_samples: int | None) -> dict[str, Any]:
    """What a teacher memory must have been built from to serve a run (compared with its metadata): the teacher's
    weights, the task, the length, and the training rows themselves (``data_sha256``)."""
    from fsdkit.artifacts import model_weights_sha256
    from fsdkit.data.encode import text_rows_sha256

    return {
        "teacher_sha256": model_weights_sha256(teacher),
        "task": task.name,
        "max_length": max_length,
        "max_train_samples": max_train_samples,
        "data_sha256": text_rows_sha256(train, task.text_columns),
    }


def _memory_command(config: DistillConfig, task) -> str:
    """The ``fsdkit memory build`` line that builds a memory for ``config``'s teacher and data."""
    data = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(DataOptions)
        if getattr(config, f.name) is not None and getattr(config, f.name) != f.default
    }
    if not any(key.endswith("_file") or key == "dataset" for key in data):
        data = {"task": task.name, **({"data_dir": config.data_dir} if config.data_dir else {})}
    return command_line(
        "memory build", {"teacher": config.teacher, **data, "max_length": config.max_length, "output_dir": "MEMORY_DIR"}
    )


def checked_memory(config: DistillConfig, out: Path, teacher, task) -> DistillConfig:
    """The run's teacher memory: ``--memory`` if it matches this teacher, task and length (else refused), or the
    automatic one in ``OUTPUT_DIR/memory``, (re)built under its lock unless it matches, K and the data included."""
    from fsdkit.artifacts import model_weights_sha256
    from fsdkit.memory import TeacherMemory

    given = config.method_options.memory  # the method reads a memory (Method.needs_memory): its options have one
    if given is not None:  # a memory of more (or other) training rows is a legitimate choice
        expected = {"teacher_sha256": model_weights_sha256(teacher), "task": task.name, "max_length": config.max_length}
        memory = TeacherMemory.load(given)
        if memory.pooling != "flatten":
            expected["max_length"] = None  # pooled rows do not depend on the length
        differences = memory.differences(expected)
        if differences:
            raise ConfigError(
                f"--memory {given} was not built for this run: {'; '.join(differences)}. Build one with "
                f"`{_memory_command(config, task)}`"
            )
        return config
    memory_dir = out / "memory"
    _, train = _memory_rows(config)
    expected = _memory_identity(teacher, task, train, config.max_length, config.max_train_samples)
    expected["n_clusters"] = config.method_options.memory_clusters
    with build_lock(memory_dir):
        current = TeacherMemory.load(memory_dir) if TeacherMemory.exists(memory_dir) else None
        stale = current.differences(expected) if current is not None else []
        if stale:
            logger.warning("rebuilding %s, built for another run: %s", memory_dir, "; ".join(stale))
        if current is None or stale:
            data_options = {f.name: getattr(config, f.name) for f in dataclasses.fields(DataOptions)}
            build_memory(
                **data_options,
                teacher=config.teacher,
                task=config.task,
                data_dir=config.data_dir,
                output_dir=str(memory_dir),
                n_clusters=config.method_options.memory_clusters,
                max_length=config.max_length,
                seed=config.seed,
                max_train_samples=config.max_train_samples,
                progress=config.progress,
                cache_dir=config.cache_dir,
                teacher_cache=config.teacher_cache,
                transfer_file=config.transfer_file,
                holdout_fraction=config.holdout_fraction,
                _locked=True,
            )
    return config.replace(memory=str(memory_dir))


def build_memory(config: MemoryConfig | dict | None = None, _locked: bool = False, **overrides):
    """FSDG stage 1: encode the task's training set with the teacher and run k-means; save the memory artifact."""
    from fsdkit.data import encode_dataset, make_collator
    from fsdkit.memory import build_teacher_memory, shard_bounds
    from fsdkit.models import check_model_folder, load_teacher

    config = as_config(MemoryConfig, config, overrides)
    if not config.output_dir:
        raise ConfigError("--output-dir is required (the memory folder)")
    if not config.teacher:
        raise ConfigError("--teacher is required: a fine-tuned teacher folder")
    if config.n_clusters < 1:
        raise ConfigError(f"--n-clusters must be ≥ 1, got {config.n_clusters}")
    if config.max_train_samples is not None and config.max_train_samples < 1:
        raise ConfigError(f"--max-train-samples must be ≥ 1 (or left out), got {config.max_train_samples}")
    out = check_output_dir(config.output_dir, keep=input_paths(config))
    check_model_folder(config.teacher, max_length=config.max_length, option="teacher")
    task, train = _memory_rows(config)
    teacher, tokenizer = load_teacher(config.teacher, None)
    encoded = encode_dataset(train, tokenizer, task, max_length=config.max_length).remove_columns(["labels"])
    collective = None
    if not _locked and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # `accelerate launch`: one shard per process
        collective = _process_group(teacher)
        encoded = encoded.select(range(*shard_bounds(len(encoded), collective.rank, collective.world_size)))
    layer = config.layer if config.layer in ("penultimate", "last") else int(config.layer)
    source = teacher
    if config.teacher_cache and collective is None:  # one teacher pass, shared with the distillation runs
        from fsdkit.features import FeatureRequest
        from fsdkit.training.teacher_cache import INDEX_COLUMN, TeacherCache

        encoded = encoded.add_column(INDEX_COLUMN, list(range(len(encoded))))
        source = TeacherCache.open_or_build(
            teacher,
            encoded,
            make_collator(tokenizer),
            FeatureRequest(hidden_states=True, teacher_layers=frozenset({layer})),
            config.teacher_cache,
            config.batch_size,
            task=task.name,
            max_length=config.max_length,
            teacher_path=str(config.teacher),
        )
    loader = torch.utils.data.DataLoader(
        encoded, batch_size=config.batch_size, shuffle=False, collate_fn=make_collator(tokenizer)
    )
    identity = _memory_identity(teacher, task, train, config.max_length, config.max_train_samples)
    main = collective is None or collective.rank == 0
    with build_lock(out) if main and not _locked else contextlib.nullcontext():
        memory = build_teacher_memory(
            source,
            loader,
            n_clusters=config.n_clusters,
            layer=layer,
            pooling=config.pooling,
            max_length=config.max_length,
            tol=config.tol,
            max_iter=config.max_iter,
            seed=config.seed,
            metadata={"teacher": str(config.teacher), **{k: v for k, v in identity.items() if k != "max_length"}},
            progress=config.progress and main,
            collective=collective,
            work_dir=out if collective else None,
        )
        if main:
            memory.save(out)
    return memory


def _process_group(teacher):
    """Join the ``accelerate launch`` / torchrun process group (gloo without a GPU) and move ``teacher`` to this
    process's device; the :class:`~fsdkit.memory.TorchDistributed` collective over it."""
    from accelerate import PartialState

    from fsdkit.memory import TorchDistributed

    state = PartialState(cpu=not torch.cuda.is_available())
    teacher.to(state.device)
    return TorchDistributed(state.device)
