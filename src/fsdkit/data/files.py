"""Your own data: CSV / TSV / JSON / JSON Lines / Parquet files, or any ``datasets`` dataset, as a task.

``run_glue.py``'s convention: ``--train-file``, ``--validation-file``, ``--test-file`` (read with
``datasets.load_dataset``), or ``--dataset NAME_OR_FOLDER [--dataset-config C]`` with ``--train-split`` /
``--validation-split`` / ``--test-split``; ``--text-columns a[,b]`` (default ``sentence1,sentence2``,
``sentence`` or ``text``, whichever the data has) and ``--label-column`` (default ``label``).

The task is built from the training data: string or integer labels make a classification task whose label
set is the sorted set of training labels (stored as ``id2label`` in every exported model); a float column
with non-integer values makes a regression task (``--task-type`` forces either). Metrics: accuracy and
macro-F1 (plus MCC for two classes), or Pearson and Spearman. The loaded data has fsdkit's schema: the text
columns renamed to ``sentence`` or ``sentence1``/``sentence2``, ``label`` as class ids or float scores.

Errors name the file, the row (1-based data row) and the column: a missing column lists those present; a
validation label unseen in training, an empty file, a label column of mixed types, a missing text value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from fsdkit.data.tasks import PAIR, SINGLE, TaskSpec
from fsdkit.errors import DataError, first_line

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
TASK_TYPES = ("classification", "regression")
#: the task name of data given as files or a dataset (recorded in models as ``fsdkit_task``)
CUSTOM_TASK = "custom"


@dataclass(frozen=True)
class DataSource:
    """Where custom data comes from and how its columns map onto a task (the options of the same names)."""

    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    text_columns: tuple[str, ...] | None = None
    label_column: str = "label"
    task_type: str | None = None

    @classmethod
    def from_config(cls, config) -> DataSource | None:
        """The source named by a config's data options, or None when it names none (a registry task)."""
        source = cls(**{f: getattr(config, f, None) for f in cls.__dataclass_fields__
                        if getattr(config, f, None) is not None})
        if source.text_columns is not None:
            source = DataSource(**{**source.__dict__, "text_columns": tuple(source.text_columns)})
        return source if source.train_file or source.validation_file or source.test_file or source.dataset else None


def _read_file(path: str, split: str) -> Dataset:
    from datasets import load_dataset

    file = Path(path).expanduser()
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise DataError(f"--{split}-file {file}: unknown format {file.suffix!r}; use one of {', '.join(FORMATS)}")
    if not file.is_file():
        raise DataError(f"--{split}-file {file} not found")
    if file.stat().st_size == 0:
        raise DataError(f"--{split}-file {file} is empty")
    options = {"delimiter": "\t"} if file.suffix.lower() == ".tsv" else {}
    try:
        data = load_dataset(fmt, data_files={split: str(file)}, split=split, **options)
    except Exception as exc:  # pyarrow / pandas parse errors: one line naming the file
        raise DataError(f"--{split}-file {file}: cannot be read as {fmt} ({first_line(exc)}); mixed types in one column?") from None
    if len(data) == 0:
        raise DataError(f"--{split}-file {file} has no rows")
    return data


def _read_dataset(source: DataSource) -> dict[str, Dataset]:
    from datasets import load_dataset

    try:
        loaded = load_dataset(source.dataset, source.dataset_config)
    except Exception as exc:
        raise DataError(f"--dataset {source.dataset}: cannot be loaded ({first_line(exc)}); offline, give a local folder") from None
    out = {}
    for role, split in (("train", source.train_split), ("validation", source.validation_split),
                        ("test", source.test_split)):
        if split in loaded:
            out[role] = loaded[split]
    if "train" not in out:
        raise DataError(f"--dataset {source.dataset} has no split {source.train_split!r} (splits: {', '.join(loaded)})")
    return out


def _where(source: DataSource, role: str) -> str:
    return f"--{role}-file {getattr(source, f'{role}_file')}" if getattr(source, f"{role}_file", None) \
        else f"--dataset {source.dataset} split {getattr(source, f'{role}_split')!r}"


def _text_columns(source: DataSource, columns: list[str], where: str) -> tuple[str, ...]:
    if source.text_columns:
        wanted = tuple(source.text_columns)
        if not 1 <= len(wanted) <= 2:
            raise DataError(f"--text-columns takes one or two columns, got {list(wanted)}")
    else:
        wanted = next((c for c in (PAIR, ("sentence",), ("text",)) if all(x in columns for x in c)), None)
        if wanted is None:
            raise DataError(f"{where}: no text column found (columns: {columns}); name them with --text-columns a[,b]")
    missing = [c for c in (*wanted, source.label_column) if c not in columns]
    if missing:
        raise DataError(f"{where}: columns {missing} missing; the data has {columns} (see --text-columns, --label-column)")
    return wanted


def _is_float(values: list) -> bool:
    return any(isinstance(v, float) and not float(v).is_integer() for v in values)


def _label_names(values: list, where: str, column: str) -> list[str]:
    kinds = {type(v) for v in values if v is not None}
    if None in values:
        raise DataError(f"{where}: row {values.index(None) + 1}: column '{column}' is empty")
    if len(kinds - {int, bool}) > 1 or (str in kinds and kinds != {str}):
        raise DataError(f"{where}: column '{column}' mixes {sorted(k.__name__ for k in kinds)} values; use one type")
    if kinds <= {int, float, bool}:
        return [str(v) for v in sorted({int(v) for v in values})]
    return sorted({str(v) for v in values})


def load_custom(source: DataSource) -> tuple[TaskSpec, DatasetDict]:
    """Read the data of ``source`` and build its task (see the module docstring)."""
    if source.task_type is not None and source.task_type not in TASK_TYPES:
        raise DataError(f"--task-type must be one of {', '.join(TASK_TYPES)}, got {source.task_type!r}")
    if source.dataset:
        raw = _read_dataset(source)
    else:
        if not source.train_file:
            raise DataError("--validation-file / --test-file need --train-file too (the label set comes from it)")
        raw = {role: _read_file(getattr(source, f"{role}_file"), role)
               for role in ("train", "validation", "test") if getattr(source, f"{role}_file")}
    train_where = _where(source, "train")
    text = _text_columns(source, raw["train"].column_names, train_where)
    labels = raw["train"][source.label_column]
    regression = source.task_type == "regression" or (source.task_type is None and _is_float(labels))
    names = None if regression else _label_names(labels, train_where, source.label_column)
    canonical = PAIR if len(text) == 2 else SINGLE
    task = TaskSpec(
        name=CUSTOM_TASK, glue_folder="", text_columns=canonical, labels=None if regression else tuple(names),
        metric_names=("pearson", "spearman") if regression else
        ("accuracy", "macro_f1", *(("mcc",) if len(names) == 2 else ())),
        main_metric="pearson" if regression else "accuracy",
        eval_splits=("validation",) if "validation" in raw else (),
    )
    ids = None if regression else {name: i for i, name in enumerate(names)}
    splits = {role: _to_schema(data, role, source, text, canonical, ids, regression) for role, data in raw.items()}
    return task, DatasetDict(splits)


def _to_schema(data: Dataset, role: str, source: DataSource, text: tuple[str, ...], canonical: tuple[str, ...],
               ids: dict[str, int] | None, regression: bool) -> Dataset:
    where = _where(source, role)
    columns = data.column_names
    has_label = source.label_column in columns
    missing = [c for c in text if c not in columns]
    if missing or (role != "test" and not has_label):
        absent = missing + ([] if has_label or role == "test" else [source.label_column])
        raise DataError(f"{where}: columns {absent} missing; the data has {columns}")
    out: dict[str, Any] = {}
    for column, name in zip(text, canonical):
        values = data[column]
        if any(v is None for v in values):
            raise DataError(f"{where}: row {[v is None for v in values].index(True) + 1}: column '{column}' is empty")
        out[name] = [str(v) for v in values]
    raw_labels = data[source.label_column] if has_label else [None] * len(data)
    if regression:
        try:
            out["label"] = [0.0 if v is None else float(v) for v in raw_labels]
        except (TypeError, ValueError):
            bad = next(i for i, v in enumerate(raw_labels) if not _floatable(v))
            raise DataError(f"{where}: row {bad + 1}: label {raw_labels[bad]!r} is not a number") from None
        feature = Value("float32")
    else:
        label_ids = []
        for row, value in enumerate(raw_labels, start=1):
            key = None if value is None else str(int(value) if isinstance(value, float) and value.is_integer() else value)
            if key is not None and key not in ids:
                raise DataError(f"{where}: row {row}: label {value!r} does not occur in the training data "
                                f"(labels: {', '.join(ids)})")
            label_ids.append(0 if key is None else ids[key])
        out["label"] = label_ids
        feature = ClassLabel(names=list(ids))
    features = Features({**{name: Value("string") for name in canonical}, "label": feature})
    return Dataset.from_dict(out, features=features)


def _floatable(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True

