"""Your own data: CSV / TSV / JSON / JSON Lines / Parquet files, or any ``datasets`` dataset, as a task.

``run_glue.py``'s convention: ``--train-file``, ``--validation-file``, ``--test-file`` (read with
``datasets.load_dataset``), or ``--dataset NAME_OR_FOLDER [--dataset-config C]`` with ``--train-split`` /
``--validation-split`` / ``--test-split``; ``--text-columns a[,b]`` (default ``sentence1,sentence2``,
``sentence`` or ``text``, whichever the data has) and ``--label-column`` (default ``label``).

Files are read as written: every CSV / TSV cell is a string (a TSV with ``QUOTE_NONE``: a stray ``"`` is a
character, not the start of a quoted field that swallows the next rows), JSON keeps its strings, numbers and
booleans, so labels ``1``, ``01`` and ``001`` stay three labels. The task is built from the training data: a
label column whose values are all numbers, some not whole, makes a regression task; any other makes a
classification task whose label set is the sorted set of training labels as written (stored as ``id2label`` in
every exported model); ``--task-type`` forces either. Metrics: accuracy and macro-F1 (plus MCC for two
classes), or Pearson and Spearman. The loaded data has fsdkit's schema: the text columns renamed to ``sentence``
or ``sentence1``/``sentence2``, ``label`` as class ids or float scores.

Errors name the file, the row (1-based data row; for a parse error the file's line) and the column: a file that
is not UTF-8 or does not parse (the parser's own message), a header without rows, a missing column (those present
are listed), a blank or non-finite label (training and validation files), a validation label unseen in
training, a single class, a label column of mixed types, a missing text value, a nested (list / object) value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from fsdkit.data.tasks import PAIR, SINGLE, TaskSpec
from fsdkit.errors import DataError, decode_utf8, first_line, short_repr

FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
#: what ``fsdkit predict --input`` reads besides :data:`FORMATS`: one text per line
TEXT_LINES = ".txt"
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
        given: dict[str, Any] = {
            f: getattr(config, f, None) for f in cls.__dataclass_fields__ if getattr(config, f, None) is not None
        }
        source = cls(**given)
        if source.text_columns is not None:
            source = DataSource(**{**source.__dict__, "text_columns": tuple(source.text_columns)})
        return source if source.train_file or source.validation_file or source.test_file or source.dataset else None


#: a file's columns: name → values in row order
Table = dict[str, list]


def _read_file(path: str, split: str, where: str | None = None) -> Table:
    """The file's columns (name → values in row order), read as written (see the module docstring). ``where`` names
    the file in errors (default ``--<split>-file PATH``); a ``.txt`` file is one text a line (column ``text``)."""
    file = Path(path).expanduser()
    fmt = "text" if file.suffix.lower() == TEXT_LINES else FORMATS.get(file.suffix.lower())
    where = where or f"--{split}-file {file}"
    if fmt is None:
        raise DataError(
            f"{where}: unknown format {file.suffix!r}; use one of {', '.join(FORMATS)}"
            f"{' or ' + TEXT_LINES if split == 'input' else ''}"
        )
    if not file.is_file():
        raise DataError(f"{where} not found")
    if file.stat().st_size == 0:
        raise DataError(f"{where} is empty")
    if fmt == "parquet":
        table = _read_parquet(file, where)
    else:
        text = decode_utf8(file.read_bytes(), where, DataError)
        if fmt == "text":
            table = {"text": [line for line in text.splitlines() if line.strip()]}
        else:
            table = _read_csv(text, file, where) if fmt == "csv" else _read_json(text, file, where)
    if not table or not len(next(iter(table.values()))):
        raise DataError(f"{where} has no rows (a header or an empty list only)")
    return table


#: the column that marks a training row labelled (1) or a transfer row (0): the task loss reads labelled rows only
LABELLED = "labelled"


def with_transfer(train: Dataset, path: str, source: DataSource, task: TaskSpec) -> Dataset:
    """``train`` followed by the texts of the transfer file ``path`` (``--transfer-file``), with a
    :data:`LABELLED` column (1 for ``train``'s rows, 0 for the transfer rows; their ``label`` is a placeholder
    that no loss reads). The transfer file has the training data's text columns (``--text-columns``, else the
    defaults); a label column in it is ignored."""
    from datasets import concatenate_datasets

    where = f"--transfer-file {path}"
    table = _read_file(path, "transfer", where)
    text = _text_columns(source, list(table), where, need_label=False)
    if len(text) != len(task.text_columns):
        raise DataError(
            f"{where}: {len(text)} text column(s) {list(text)}, but the task reads "
            f"{len(task.text_columns)}; give the same --text-columns as the training data"
        )
    rows: dict[str, Any] = {}
    for column, name in zip(text, task.text_columns, strict=True):
        values = table[column]
        _check_values(values, where, column, label=False)
        empty = [v is None or v == "" for v in values]
        if any(empty):
            raise DataError(f"{where}: row {empty.index(True) + 1}: column '{column}' is empty")
        rows[name] = [str(v) for v in values]
    n = len(rows[task.text_columns[0]])
    rows["label"] = [0.0 if task.is_regression else 0] * n
    transfer = Dataset.from_dict(rows, features=Features({k: train.features[k] for k in rows}))
    labelled = train.select_columns(list(rows)).add_column(LABELLED, [1] * len(train))
    return concatenate_datasets([labelled, transfer.add_column(LABELLED, [0] * n)])


def read_input(path: str, source: DataSource, labels: tuple[str, ...] | None) -> tuple[TaskSpec, Dataset, bool]:
    """``fsdkit predict --input``: a file of texts read for a model whose label names are ``labels`` (None: a
    regression model) — its task, its rows in fsdkit's schema, and whether it is labelled (the file has the label
    column: every row is then scored; a label the model does not know is refused with its row)."""
    where = f"--input {path}"
    table = _read_file(path, "input", where)
    text = _text_columns(source, list(table), where, need_label=False)
    labelled = source.label_column in table
    canonical = PAIR if len(text) == 2 else SINGLE
    regression = labels is None
    task = TaskSpec(
        name=CUSTOM_TASK,
        glue_folder="",
        text_columns=canonical,
        labels=labels,
        metric_names=("pearson", "spearman")
        if labels is None
        else ("accuracy", "macro_f1", *(("mcc",) if len(labels) == 2 else ())),
        main_metric="pearson" if regression else "accuracy",
        eval_splits=(),
    )
    ids = None if labels is None else {name: i for i, name in enumerate(labels)}
    role = "validation" if labelled else "test"
    return task, _to_schema(table, role, source, text, canonical, ids, regression, where), labelled


def _read_csv(text: str, file: Path, where: str) -> Table:
    import csv
    import io

    import pandas as pd

    tsv = file.suffix.lower() == ".tsv"
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep="\t" if tsv else ",",
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            index_col=False,  # never a data column taken for an index
            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{where} is empty") from None
    except pd.errors.ParserError as exc:  # "Expected 5 fields in line 93, saw 6": the parser's own words
        raise DataError(f"{where}: {first_line(exc).replace('Error tokenizing data. C error: ', '')}") from None
    return {str(column): frame[column].tolist() for column in frame.columns}


def _read_json(text: str, file: Path, where: str) -> Table:
    """A JSON list of row objects, a JSON object of equal-length column lists, or JSON Lines (one object a line)."""
    import json

    rows: list = []
    if file.suffix.lower() == ".json" or text.lstrip().startswith("["):  # a JSON array in a .jsonl file too
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # JSON Lines in a .json file, as datasets reads them
        if isinstance(data, dict):
            lengths = {k: len(v) if isinstance(v, list) else None for k, v in data.items()}
            if not data or None in lengths.values() or len(set(lengths.values())) != 1:
                raise DataError(
                    f"{where}: a JSON object must map each column to a list of values, all of one length "
                    f"(got {short_repr(lengths)}); or give a list of row objects"
                )
            return {str(k): list(v) for k, v in data.items()}
        if data is not None and not isinstance(data, list):
            raise DataError(f"{where}: expected a list of row objects, got a JSON {type(data).__name__}")
        if data is not None:
            rows = data
    if not rows:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    columns: Table = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{where}: row {number}: expected an object of column values, got {type(row).__name__}")
        for key in row:
            columns.setdefault(str(key), [None] * (number - 1))
        for key, values in columns.items():
            values.append(row.get(key))
    return columns


def _read_parquet(file: Path, where: str) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors have no common base: one line naming the file
        raise DataError(f"{where}: cannot be read as Parquet ({first_line(exc)})") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


class DatasetColumns(Mapping):
    """A ``datasets.Dataset`` read as a :data:`Table`: a column is turned into a list only when it is read (the
    columns a task does not use are never copied)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, column: str) -> list:
        return list(self.dataset[column])

    def __iter__(self):
        return iter(self.dataset.column_names)

    def __len__(self) -> int:
        return len(self.dataset.column_names)


def _read_dataset(source: DataSource) -> dict[str, Mapping[str, list]]:
    from datasets import load_dataset

    try:
        loaded = load_dataset(source.dataset, source.dataset_config)
    except Exception as exc:
        raise DataError(
            f"--dataset {source.dataset}: cannot be loaded ({first_line(exc)}); offline, give a local folder"
        ) from None
    out: dict[str, Mapping[str, list]] = {}
    for role, split in (
        ("train", source.train_split),
        ("validation", source.validation_split),
        ("test", source.test_split),
    ):
        if split in loaded:
            out[role] = DatasetColumns(loaded[split])
    if "train" not in out:
        raise DataError(f"--dataset {source.dataset} has no split {source.train_split!r} (splits: {', '.join(loaded)})")
    return out


def _where(source: DataSource, role: str) -> str:
    return (
        f"--{role}-file {getattr(source, f'{role}_file')}"
        if getattr(source, f"{role}_file", None)
        else f"--dataset {source.dataset} split {getattr(source, f'{role}_split')!r}"
    )


def _text_columns(source: DataSource, columns: list[str], where: str, need_label: bool = True) -> tuple[str, ...]:
    wanted: tuple[str, ...] | None
    if source.text_columns:
        wanted = tuple(source.text_columns)
        if not 1 <= len(wanted) <= 2:
            raise DataError(f"--text-columns takes one or two columns, got {list(wanted)}")
    else:
        wanted = next((c for c in (PAIR, ("sentence",), ("text",)) if all(x in columns for x in c)), None)
        if wanted is None:
            raise DataError(f"{where}: no text column found (columns: {columns}); name them with --text-columns a[,b]")
    missing = [c for c in (*wanted, *([source.label_column] if need_label else [])) if c not in columns]
    if missing:
        raise DataError(
            f"{where}: columns {missing} missing; the data has {columns} (see --text-columns, --label-column)"
        )
    return wanted


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any) -> float | None:
    """The value as a finite-or-not float when it is one (a JSON number, or a string that spells one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_regression(values: list) -> bool:
    """Every value a number and some of them not whole: a score column."""
    numbers = [_number(v) for v in values if not _blank(v)]
    return (
        bool(numbers)
        and None not in numbers
        and any(not math.isfinite(n) or not n.is_integer() for n in cast("list[float]", numbers))
    )


def label_key(value: Any) -> str:
    """A class label as written: strings as they are, ``true`` / ``false`` for booleans, numbers without a
    trailing ``.0`` (a JSON ``1`` and ``1.0`` are one label; the strings ``"1"`` and ``"01"`` are two)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label_order(name: str) -> tuple[int, int, str]:
    """Class order: whole numbers as written (``2``, ``10``) by value, as integer label ids always were; then every
    other label by its text."""
    canonical = name.lstrip("-").isdigit() and str(int(name)) == name
    return (0, int(name), "") if canonical else (1, 0, name)


def _check_values(values: list, where: str, column: str, *, label: bool) -> None:
    """Nested values (lists, objects) are refused: a text or label cell holds one value."""
    for row, value in enumerate(values, start=1):
        if isinstance(value, (list, dict)):
            raise DataError(
                f"{where}: row {row}: column '{column}' holds a {type(value).__name__} "
                f"({short_repr(value)}); a {'label' if label else 'text'} cell must be one value"
            )


def _blank_rows(values: list) -> list[int]:
    return [row for row, v in enumerate(values, start=1) if _blank(v)]


def _rows_text(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def _label_names(values: list, where: str, column: str) -> list[str]:
    blank = _blank_rows(values)
    if blank:
        raise DataError(
            f"{where}: column '{column}' is blank in row(s) {_rows_text(blank)}; give every training row "
            f"a label (or drop the row)"
        )
    kinds = {type(v) for v in values}
    if str in kinds and kinds != {str}:
        raise DataError(f"{where}: column '{column}' mixes {sorted(k.__name__ for k in kinds)} values; use one type")
    names = sorted({label_key(v) for v in values}, key=_label_order)
    if len(names) < 2:
        raise DataError(
            f"{where}: column '{column}' holds one class ({names[0]!r} in all {len(values)} rows); a "
            f"classifier needs at least two (or use --task-type regression for scores)"
        )
    return names


def load_custom(source: DataSource) -> tuple[TaskSpec, DatasetDict]:
    """Read the data of ``source`` and build its task (see the module docstring)."""
    if source.task_type is not None and source.task_type not in TASK_TYPES:
        raise DataError(f"--task-type must be one of {', '.join(TASK_TYPES)}, got {source.task_type!r}")
    raw: dict[str, Mapping[str, list]]
    if source.dataset:
        raw = _read_dataset(source)
    else:
        if not source.train_file:
            raise DataError("--validation-file / --test-file need --train-file too (the label set comes from it)")
        raw = {
            role: _read_file(getattr(source, f"{role}_file"), role)
            for role in ("train", "validation", "test")
            if getattr(source, f"{role}_file")
        }
    train_where = _where(source, "train")
    text = _text_columns(source, list(raw["train"]), train_where)
    labels = raw["train"][source.label_column]
    _check_values(labels, train_where, source.label_column, label=True)
    regression = source.task_type == "regression" or (source.task_type is None and _is_regression(labels))
    names = None if regression else _label_names(labels, train_where, source.label_column)
    canonical = PAIR if len(text) == 2 else SINGLE
    task = TaskSpec(
        name=CUSTOM_TASK,
        glue_folder="",
        text_columns=canonical,
        labels=None if names is None else tuple(names),
        metric_names=("pearson", "spearman")
        if names is None
        else ("accuracy", "macro_f1", *(("mcc",) if len(names) == 2 else ())),
        main_metric="pearson" if regression else "accuracy",
        eval_splits=("validation",) if "validation" in raw else (),
    )
    ids = None if names is None else {name: i for i, name in enumerate(names)}
    splits = {role: _to_schema(data, role, source, text, canonical, ids, regression) for role, data in raw.items()}
    return task, DatasetDict(splits)


def _to_schema(
    data: Mapping[str, list],
    role: str,
    source: DataSource,
    text: tuple[str, ...],
    canonical: tuple[str, ...],
    ids: dict[str, int] | None,
    regression: bool,
    where: str | None = None,
) -> Dataset:
    where = where or _where(source, role)
    columns = list(data)
    has_label = source.label_column in columns
    missing = [c for c in text if c not in columns]
    if missing or (role != "test" and not has_label):
        absent = missing + ([] if has_label or role == "test" else [source.label_column])
        raise DataError(f"{where}: columns {absent} missing; the data has {columns}")
    out: dict[str, Any] = {}
    for column, name in zip(text, canonical, strict=True):
        values = data[column]
        _check_values(values, where, column, label=False)
        # a missing value; in your files an empty cell too (a --dataset's empty strings, e.g. QQP's, are texts)
        empty = [v is None or (v == "" and source.dataset is None) for v in values]
        if any(empty):
            raise DataError(f"{where}: row {empty.index(True) + 1}: column '{column}' is empty")
        out[name] = [str(v) for v in values]
    n_rows = len(out[canonical[0]])
    raw_labels = data[source.label_column] if has_label else [None] * n_rows
    _check_values(raw_labels, where, source.label_column, label=True)
    blank = _blank_rows(raw_labels)
    if has_label and role != "test" and blank:  # a test file's labels may be blank: it is predicted, not scored
        raise DataError(
            f"{where}: column '{source.label_column}' is blank in row(s) {_rows_text(blank)}; every "
            f"{role} row needs a label"
        )
    if has_label and role == "test" and len(blank) not in (0, n_rows):
        raise DataError(
            f"{where}: column '{source.label_column}' is blank in row(s) {_rows_text(blank)} only; give "
            f"every row a label (then it is scored) or none"
        )
    unlabelled = not has_label or len(blank) == n_rows
    if regression:
        scores = []
        for row, value in enumerate(raw_labels, start=1):
            number = None if unlabelled else _number(value)
            if not unlabelled and (number is None or not math.isfinite(number)):
                raise DataError(
                    f"{where}: row {row}: label {short_repr(value)} is not a finite number (a regression "
                    f"task's labels are scores)"
                )
            scores.append(0.0 if number is None else number)  # an unlabelled test row: no score to compare
        out["label"] = scores
        feature = Value("float32")
    else:
        ids = cast("dict[str, int]", ids)  # a classification task's label ids (None only for regression)
        label_ids = []
        for row, value in enumerate(raw_labels, start=1):
            key = None if unlabelled else label_key(value)
            if key is not None and key not in ids:
                raise DataError(
                    f"{where}: row {row}: label {short_repr(value)} is not one of the task's labels, those "
                    f"of the training data or the model (labels: {', '.join(ids)})"
                )
            label_ids.append(0 if key is None else ids[key])  # an unlabelled test row: a placeholder, never scored
        out["label"] = label_ids
        feature = ClassLabel(names=list(ids))
    features = Features({**{name: Value("string") for name in canonical}, "label": feature})
    return Dataset.from_dict(out, features=features)
