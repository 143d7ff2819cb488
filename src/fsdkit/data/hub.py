"""Load a GLUE task from the Hugging Face hub (``nyu-mll/glue``) when no local data folder is given.

The hub columns are renamed to the fsdkit schema (``sentence`` or ``sentence1``/``sentence2`` +
``label``), ``idx`` and the test splits are dropped, and the label ids are kept: the hub's ``ClassLabel``
names are checked against the task's label names, which are in the same order. ``sick`` and
``rt-sentiment`` have no hub source here: SICK is read from a local folder only (there is no
canonical SICK copy on the hub with GLUE's schema), rt-sentiment is built offline from the
vaderSentiment source archive (:mod:`fsdkit.data.rt_sentiment`).
"""

from __future__ import annotations

import os
from typing import cast

import datasets
from datasets import DatasetDict

from fsdkit.data.tasks import TaskSpec, get_task, task_features
from fsdkit.errors import DataError, first_line

HUB_DATASET = "nyu-mll/glue"

HUB_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
"""``nyu-mll/glue`` config -> its text columns, in the order of the task's fsdkit text columns."""


def _hub_error(spec: TaskSpec, detail: str) -> DataError:
    return DataError(
        f"could not load {spec.name} from the Hugging Face hub ({HUB_DATASET}, config {spec.hub_config!r}): "
        f"{detail}. Pass --data-dir with a GLUE folder (standard layout: "
        f"<data_dir>/{spec.glue_folder}/train.tsv and dev.tsv)"
    )


def to_fsdkit_schema(spec: TaskSpec, hub_data: DatasetDict) -> DatasetDict:
    """Convert ``nyu-mll/glue`` data of ``spec`` to the fsdkit schema (train + eval splits only)."""
    features = task_features(spec)
    renames = dict(zip(HUB_TEXT_COLUMNS[cast(str, spec.hub_config)], spec.text_columns))  # a hub task
    splits = {}
    for split in ("train", *spec.eval_splits):
        if split not in hub_data:
            raise _hub_error(spec, f"the hub data has no {split!r} split (splits: {', '.join(hub_data)})")
        data = hub_data[split]
        missing = [c for c in (*renames, "label") if c not in data.column_names]
        if missing:
            raise _hub_error(spec, f"the {split} split lacks columns {missing} (has {data.column_names})")
        hub_label = data.features["label"]
        if spec.labels is not None and list(getattr(hub_label, "names", ())) != list(spec.labels):
            raise _hub_error(
                spec,
                f"the hub labels {getattr(hub_label, 'names', hub_label)} differ from fsdkit's {list(spec.labels)}",
            )
        data = data.select_columns([*renames, "label"]).rename_columns(
            {old: new for old, new in renames.items() if old != new}
        )
        splits[split] = data.cast(features)
    return DatasetDict(splits)


def load_hub_task(task: str | TaskSpec, *, cache_dir: str | os.PathLike | None = None) -> DatasetDict:
    """Load ``task`` from ``nyu-mll/glue`` (``datasets.load_dataset``) in the fsdkit schema.

    ``cache_dir`` is passed on to ``load_dataset``. A task without a hub source, or a hub that cannot
    be reached (offline, ``HF_HUB_OFFLINE=1`` without a cached copy), raises :class:`DataError` telling
    to pass ``--data-dir``.
    """
    spec = get_task(task)
    if spec.hub_config is None:
        raise DataError(
            f"task {spec.name} has no hub source; pass --data-dir with a folder containing "
            f"{spec.glue_folder}/train.tsv and dev.tsv"
        )
    try:
        hub_data = datasets.load_dataset(
            HUB_DATASET, spec.hub_config, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except OSError as exc:  # ConnectionError, DatasetNotFoundError, hub HTTP errors are all OSErrors
        raise _hub_error(spec, f"the hub was unreachable or the dataset is not cached ({first_line(exc)})") from exc
    return to_fsdkit_schema(spec, hub_data)
