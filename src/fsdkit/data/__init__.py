"""Task data: the task registry, GLUE-folder / hub / rt-sentiment loading, tokenization and metrics.

Loaded data is a ``datasets.DatasetDict`` with ``train`` and the task's eval splits, columns = the
task's text columns (``sentence`` or ``sentence1``/``sentence2``) + ``label`` (class id in
``nyu-mll/glue`` order, or a float score for STS-B), whatever the source.
"""

from __future__ import annotations

import os

from datasets import DatasetDict

from fsdkit.data import rt_sentiment
from fsdkit.data.encode import encode_dataset, make_collator
from fsdkit.data.glue_files import load_glue_folder
from fsdkit.data.hub import load_hub_task
from fsdkit.data.metrics import compute_metrics
from fsdkit.data.tasks import TASKS, TaskSpec, get_task


def load_task_data(
    task: str | TaskSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Load ``task`` as a ``DatasetDict`` with ``"train"`` and the task's eval splits.

    - ``data_dir`` given: read the local GLUE-layout folder (the GLUE root or the task folder itself;
      see :mod:`fsdkit.data.glue_files`). For rt-sentiment this is a folder containing
      ``rt-sentiment/train.tsv`` and ``dev.tsv`` (such as the fsdkit cache root) or that folder itself.
    - ``data_dir`` omitted, GLUE task: ``nyu-mll/glue`` from the Hugging Face hub, ``cache_dir`` being
      the ``datasets`` cache; an unreachable hub raises :class:`DataError` asking for ``--data-dir``.
      SICK has no hub source and needs ``data_dir``.
    - ``data_dir`` omitted, rt-sentiment: built once from the vaderSentiment source archive into
      ``<cache_dir>/rt-sentiment`` (``cache_dir`` defaults to ``$FSDKIT_CACHE`` or ``~/.cache/fsdkit``),
      then read from there; see :mod:`fsdkit.data.rt_sentiment`.
    """
    spec = get_task(task)
    if data_dir is not None:
        return load_glue_folder(spec, data_dir)
    if spec.name == rt_sentiment.TASK_NAME:
        return load_glue_folder(spec, rt_sentiment.build(cache_dir))
    return load_hub_task(spec, cache_dir=cache_dir)


def resolve_task_data(config) -> tuple[TaskSpec, DatasetDict]:
    """The task and its data named by a config: your own files or dataset (``--train-file``, ``--dataset``, ...;
    :mod:`fsdkit.data.files`) when given, else the registry task ``config.task`` from ``config.data_dir``."""
    from fsdkit.data.files import DataSource, load_custom

    source = DataSource.from_config(config)
    if source is not None:
        return load_custom(source)
    spec = get_task(config.task)
    return spec, load_task_data(spec, getattr(config, "data_dir", None), cache_dir=getattr(config, "cache_dir", None))


__all__ = [
    "resolve_task_data",
    "TASKS",
    "TaskSpec",
    "compute_metrics",
    "encode_dataset",
    "get_task",
    "load_task_data",
    "make_collator",
]
