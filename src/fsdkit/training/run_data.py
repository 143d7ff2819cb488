"""A run's data: its splits (the ``holdout`` carved from the training set, the unlabelled transfer rows after the
labelled ones) and its training split tokenized for the student (and the teacher, when they tokenize differently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsdkit.data.files import LABELLED, DataSource, with_transfer
from fsdkit.errors import ConfigError

HOLDOUT = "holdout"


def carve_holdout(train, fraction: float):
    """``(train, holdout)``: ``fraction`` of the training rows as the holdout split, the same rows for every run with
    the same data (seed 0) — a run's, a sweep's trials', ``fsdkit compress``'s and a teacher memory's."""
    parts = train.train_test_split(test_size=fraction, seed=0, shuffle=True)
    return parts["train"], parts["test"]


#: the options that say which training rows a run read (a teacher's run record against a run's data)
_TRAINING_ROWS = ("task", "data_dir", "train_file", "dataset", "dataset_config", "train_split", "max_train_samples")


def teacher_saw_holdout(record, options: dict[str, Any], fraction: float) -> bool:
    """Whether the teacher's run record (``record``, a :class:`fsdkit.run_record.RunRecord`) shows it fine-tuned on
    the training rows of ``options`` without their holdout split of ``fraction``: its holdout score, and those of
    the students started from its layers, are then scores on rows they were trained on. False when the record is
    missing or read other data."""
    if record is None:
        return False
    config = record.config

    def same(key: str) -> bool:
        mine, theirs = options.get(key), config.get(key)
        if key in ("data_dir", "train_file") and mine is not None and theirs is not None:
            return Path(mine).resolve() == Path(theirs).resolve()
        return mine == theirs

    return all(same(key) for key in _TRAINING_ROWS) and config.get("holdout_fraction") != fraction


def teacher_holdout_warning(record, options: dict[str, Any], fraction: float) -> str | None:
    """What ``fsdkit sweep`` and ``fsdkit compress`` say when :func:`teacher_saw_holdout`; None otherwise."""
    if not teacher_saw_holdout(record, options, fraction):
        return None
    return (
        f"the teacher was fine-tuned on the holdout rows the trials are scored on (its run record has no "
        f"--holdout-fraction {fraction}): it and every student started from its layers score them from memory, so "
        f"the scores reward staying close to the teacher rather than generalising (and overstate retention); "
        f"fine-tune the teacher with --holdout-fraction {fraction}"
    )


def load_run_data(config):
    """``(task, splits)``, read (and so validated) before any model is loaded: a bad file fails in a second.

    The registry task ``config.task`` or your own files / dataset (:func:`fsdkit.data.resolve_task_data`). With
    ``holdout_fraction``, that fraction of ``train`` (seed 0: the same rows for every run and trial) becomes the
    ``holdout`` split and is removed from ``train``.
    """
    from datasets import DatasetDict

    from fsdkit.data import resolve_task_data

    task, data = resolve_task_data(config)
    if config.holdout_fraction is not None:
        train, holdout = carve_holdout(data["train"], config.holdout_fraction)
        data = DatasetDict({**data, "train": train, HOLDOUT: holdout})
    if getattr(config, "transfer_file", None):  # unlabelled rows after the labelled ones (never in the holdout)
        train = data["train"]
        if config.max_train_samples is not None:  # --max-train-samples counts labelled rows: transfer rows all stay
            train = train.select(range(min(config.max_train_samples, len(train))))
        data = DatasetDict(
            {
                **data,
                "train": with_transfer(
                    train, config.transfer_file, DataSource.from_config(config) or DataSource(), task
                ),
            }
        )
    return task, data


def encoded_train(data, task, tokenizer, config, min_batch_size: int, teacher_tokenizer=None):
    """The training split tokenized for the student (and, when ``teacher_tokenizer`` is given, for the teacher
    too: ``teacher_*`` columns, see :func:`fsdkit.data.encode.add_teacher_encoding`)."""
    from fsdkit.data import encode_dataset
    from fsdkit.data.encode import add_teacher_encoding

    train = data["train"]
    if config.max_train_samples is not None and LABELLED not in train.column_names:  # with transfer rows: applied
        train = train.select(range(min(config.max_train_samples, len(train))))
    if min_batch_size > 1 and len(train) < config.batch_size:
        raise ConfigError(
            f"the training set has {len(train)} examples, fewer than one batch (--batch-size {config.batch_size}); "
            f"a loss that compares the samples of a batch drops the incomplete last batch, so no step would run: "
            f"lower --batch-size to at most {len(train)} (and at least {min_batch_size})"
        )
    encoded = encode_dataset(train, tokenizer, task, max_length=config.max_length)
    if teacher_tokenizer is not None:
        encoded = add_teacher_encoding(encoded, train, teacher_tokenizer, task, max_length=config.max_length)
    return encoded
