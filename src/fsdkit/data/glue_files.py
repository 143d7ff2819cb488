"""Readers for a local data folder in the layout of the official GLUE download.

Layout: ``<data_dir>/<GlueFolder>/train.tsv`` and ``dev.tsv`` (MNLI: ``dev_matched.tsv`` and
``dev_mismatched.tsv``); ``data_dir`` may also be the task folder itself. Each task keeps the column
layout of the official files (CoLA has no header; MRPC starts with a UTF-8 BOM; MNLI's width comes from
its header). Files are split on tabs only — no quote handling, GLUE text contains unbalanced quotes —
and every line becomes a row: a malformed line raises :class:`DataError` naming the file and its 1-based
line number, it is never skipped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from datasets import Dataset, DatasetDict

from fsdkit.data.tasks import TaskSpec, get_task, task_features
from fsdkit.errors import DataError

SPLIT_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}
"""Split name -> file name inside the task folder."""

STSB_RANGE = (0.0, 5.0)


@dataclass(frozen=True)
class FileLayout:
    """The column layout of one task's TSV files.

    ``columns`` names the fields (the expected header when ``has_header``); ``text_fields`` and
    ``label_field`` index into a row; ``label_tokens[i]`` is how label id ``i`` is written in the file
    (compared case-insensitively), ``None`` for a float score. With ``width_from_header`` (MNLI) the
    row width is the header's, ``columns`` only names the fields the header must have at
    ``text_fields`` and last.
    """

    columns: tuple[str, ...]
    has_header: bool
    text_fields: tuple[int, ...]
    label_field: int
    label_tokens: tuple[str, ...] | None
    width_from_header: bool = False


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_SST = FileLayout(("sentence", "label"), True, (0,), 1, _BINARY)
_PAIR4 = ("index", "sentence1", "sentence2", "label")

LAYOUTS: dict[str, FileLayout] = {
    "cola": FileLayout(("source", "label", "original_mark", "sentence"), False, (3,), 1, _BINARY),
    "sst2": _SST,
    "mrpc": FileLayout(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), True, (3, 4), 0, _BINARY),
    "qqp": FileLayout(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"), True, (3, 4), 5, _BINARY),
    "stsb": FileLayout(
        ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"),
        True,
        (7, 8),
        9,
        None,
    ),
    "mnli": FileLayout(("sentence1", "sentence2", "gold_label"), True, (8, 9), -1, _NLI3, width_from_header=True),
    "qnli": FileLayout(("index", "question", "sentence", "label"), True, (1, 2), 3, _NLI2),
    "rte": FileLayout(_PAIR4, True, (1, 2), 3, _NLI2),
    "wnli": FileLayout(_PAIR4, True, (1, 2), 3, _BINARY),
    "sick": FileLayout(
        ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment"), True, (1, 2), 4, _NLI3
    ),
    "rt-sentiment": _SST,
}
"""Canonical task name -> :class:`FileLayout` of its files (rt-sentiment uses the SST-2 layout)."""


def _folder_key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def task_folder(task: str | TaskSpec, data_dir: str | os.PathLike) -> Path:
    """Return the folder holding ``task``'s files.

    ``data_dir`` is either a GLUE root (containing ``<GlueFolder>/train.tsv``; the folder name is matched
    ignoring case and ``-``/``_``, so ``SST-2`` and ``sst2`` both work) or the task folder itself.
    """
    spec = get_task(task)
    root = Path(data_dir).expanduser()
    expected = root / spec.glue_folder
    if not root.is_dir():
        raise DataError(
            f"data folder {root} not found; expected a GLUE folder with {expected}/train.tsv "
            f"(standard GLUE layout), or the {spec.glue_folder} folder itself"
        )
    if expected.is_dir():
        return expected
    key = _folder_key(spec.glue_folder)
    for child in sorted(root.iterdir()):
        if child.is_dir() and _folder_key(child.name) == key:
            return child
    if (root / "train.tsv").is_file():
        return root
    raise DataError(
        f"task folder {expected} not found; expected {expected}/train.tsv (standard GLUE layout), "
        f"or pass the {spec.glue_folder} folder itself as the data folder"
    )


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path} line {line}: not valid UTF-8 ({exc.reason}); GLUE files are UTF-8") from exc


def _lines(path: Path) -> list[str]:
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path} is empty; expected a GLUE TSV file")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():  # trailing blank lines are common and harmless
        lines.pop()
    return lines


def _check_header(path: Path, header: list[str], layout: FileLayout, spec: TaskSpec) -> int:
    """Validate the header line; return the number of fields every row must have."""
    names = [field.strip().lower() for field in header]
    if layout.width_from_header:
        wanted = dict(zip((*layout.text_fields, len(names) - 1), (c.lower() for c in layout.columns)))
        ok = len(names) > max(layout.text_fields) + 1 and all(names[i] == name for i, name in wanted.items())
        expected = (
            f"sentence1 at field {layout.text_fields[0] + 1}, sentence2 at field {layout.text_fields[1] + 1} "
            "and gold_label last"
        )
    else:
        ok = names == [c.lower() for c in layout.columns]
        expected = ", ".join(layout.columns)
    if not ok:
        shown = ", ".join(header)
        raise DataError(
            f"{path} line 1: unexpected header ({shown}); expected {expected} "
            f"(the {spec.glue_folder} layout of the GLUE download)"
        )
    return len(names)


def _label_parser(path: Path, layout: FileLayout, spec: TaskSpec):
    if layout.label_tokens is None:
        low, high = STSB_RANGE

        def parse_score(value: str, line: int) -> float:
            try:
                score = float(value)
            except ValueError:
                score = math.nan
            if not (math.isfinite(score) and low <= score <= high):
                raise DataError(
                    f"{path} line {line}: score {value!r} is not a number in [{low:g}, {high:g}] "
                    f"(the {spec.name} similarity score, last field)"
                )
            return score

        return parse_score

    ids = {token.lower(): i for i, token in enumerate(layout.label_tokens)}
    if layout.label_tokens == _BINARY:
        labels = cast("tuple[str, ...]", spec.labels)  # a classification task (its layout has label tokens)
        choices = ", ".join(f"{t} ({name})" for t, name in zip(layout.label_tokens, labels))
    else:
        choices = ", ".join(layout.label_tokens)

    def parse_label(value: str, line: int) -> int:
        label = ids.get(value.strip().lower())
        if label is None:
            raise DataError(f"{path} line {line}: unknown label {value!r}; expected one of {choices}")
        return label

    return parse_label


def read_tsv(path: str | os.PathLike, task: str | TaskSpec) -> dict[str, list]:
    """Read one split file of ``task`` into columns: the task's text columns and ``label``.

    Every data line becomes one row. Raises :class:`DataError` (with the path and 1-based line number)
    for a missing or empty file, an unexpected header, a line with the wrong number of tab-separated
    fields, an unknown label or a non-numeric / out-of-range STS-B score.
    """
    spec = get_task(task)
    layout = LAYOUTS[spec.name]
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    lines = _lines(path)
    first = 1
    width = len(layout.columns)
    field_names = ", ".join(layout.columns)
    if layout.has_header:
        width = _check_header(path, lines[0].split("\t"), layout, spec)
        if layout.width_from_header:
            field_names = "as in the header"
        first = 2
    if len(lines) < first:
        raise DataError(f"{path} has a header but no data rows")
    parse_label = _label_parser(path, layout, spec)
    texts: list[list[str]] = [[] for _ in layout.text_fields]
    labels: list = []
    label_field = layout.label_field if layout.label_field >= 0 else width + layout.label_field
    for line_number, line in enumerate(lines[first - 1 :], start=first):
        fields = line.split("\t")
        if len(fields) != width:
            raise DataError(
                f"{path} line {line_number}: expected {width} tab-separated fields ({field_names}), got {len(fields)}"
            )
        for column, index in zip(texts, layout.text_fields):
            column.append(fields[index])
        labels.append(parse_label(fields[label_field], line_number))
    columns: dict[str, list] = dict(zip(spec.text_columns, texts))
    columns["label"] = labels
    return columns


TEST_FILE = "test.tsv"
SUBMISSION_LABELS = {"sick": ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")}
"""Label names of a GLUE submission file where they differ from the training files' tokens (SICK's are upper case)."""


def test_text_columns(task: str | TaskSpec) -> tuple[str, ...]:
    """Header names of the text fields in ``task``'s unlabelled ``test.tsv`` (the GLUE download's layout)."""
    layout = LAYOUTS[get_task(task).name]
    if layout.width_from_header:
        return layout.columns[:2]
    return tuple(layout.columns[i] for i in layout.text_fields)


def submission_labels(task: str | TaskSpec) -> tuple[str, ...] | None:
    """How label id ``i`` is written in a GLUE submission (``None``: a float score, STS-B); a task of your own
    data (not in the GLUE layouts) writes its label names."""
    spec = get_task(task)
    if spec.name not in LAYOUTS:
        return spec.labels
    return SUBMISSION_LABELS.get(spec.name, LAYOUTS[spec.name].label_tokens)


def read_test_tsv(path: str | os.PathLike, task: str | TaskSpec) -> dict[str, list]:
    """Read an unlabelled GLUE ``test.tsv`` into ``index`` and the task's text columns, found by header name.

    The header must hold ``index`` and the task's text fields (:func:`test_text_columns`, case-insensitive);
    every row must have the header's number of tab-separated fields. :class:`DataError` names the file, the
    line and what was expected (a missing column lists the columns present).
    """
    spec = get_task(task)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: the unlabelled test split of {spec.name} is read from {TEST_FILE}")
    lines = _lines(path)
    header = [name.strip() for name in lines[0].split("\t")]
    lower = [name.lower() for name in header]
    wanted = ("index", *test_text_columns(spec))
    missing = [name for name in wanted if name.lower() not in lower]
    if missing:
        raise DataError(
            f"{path} line 1: columns {missing} missing; the header has {header} "
            f"(expected the GLUE test layout of {spec.glue_folder}: {', '.join(wanted)})"
        )
    where = [lower.index(name.lower()) for name in wanted]
    columns: dict[str, list] = {"index": [], **{c: [] for c in spec.text_columns}}
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path} line {line_number}: expected {len(header)} tab-separated fields, got {len(fields)}"
            )
        try:
            columns["index"].append(int(fields[where[0]]))
        except ValueError:
            raise DataError(f"{path} line {line_number}: index {fields[where[0]]!r} is not an integer") from None
        for column, field_index in zip(spec.text_columns, where[1:]):
            columns[column].append(fields[field_index])
    if not columns["index"]:
        raise DataError(f"{path} has a header but no rows")
    return columns


def load_glue_folder(task: str | TaskSpec, data_dir: str | os.PathLike) -> DatasetDict:
    """Load ``task`` from a GLUE-layout folder as a ``DatasetDict`` with ``train`` and the eval splits.

    Columns are the task's text columns and ``label`` (``ClassLabel`` ids in ``nyu-mll/glue`` order, or
    ``float32`` scores for STS-B).
    """
    spec = get_task(task)
    folder = task_folder(spec, data_dir)
    features = task_features(spec)
    splits = {}
    for split in ("train", *spec.eval_splits):
        path = folder / SPLIT_FILES[split]
        if not path.is_file():
            raise DataError(
                f"{path} not found: the {split} split of {spec.name} is read from {SPLIT_FILES[split]} in {folder}"
            )
        splits[split] = Dataset.from_dict(read_tsv(path, spec), features=features)
    return DatasetDict(splits)
