"""Tokenize task data (no padding) and pad batches dynamically at collate time."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict, Value

from fsdkit.data.tasks import TaskSpec, get_task
from fsdkit.errors import DataError
from fsdkit.features import TEACHER_PREFIX


def _cut(tokenizer, text: str, keep: int) -> str:
    """``text`` up to the end of its ``keep``-th token (no special tokens)."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    return text if keep >= len(offsets) else text[: offsets[keep - 1][1]]


def cap_pair(tokenizer, first: str, second: str, max_length: int, long_chars: int | None = None) -> tuple[str, str]:
    """Cut the texts of a long pair so that truncating them gives the tokens truncating the full pair gives.

    A fast tokenizer truncating a pair ``longest_first`` materialises every overflowing window of both texts
    (thousands of pieces for two texts of a few thousand words: memory that grows with the input, not with
    ``max_length``). The truncated pair depends only on which text is longer and on the shorter's length up to
    ``M + 1`` (``M = max_length``), so when either text exceeds ``long_chars`` characters (default ``4 · M``)
    both are cut after ``min(n, M + 1)`` tokens, the longer after ``min(n, M + 2)``: same order, same result,
    bounded memory. Cuts fall at a token's end offset, which keeps the leading tokens of WordPiece
    tokenizations unchanged.
    """
    limit = 4 * max_length if long_chars is None else long_chars
    if len(first) <= limit and len(second) <= limit:
        return first, second
    n_first, n_second = (
        len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]) for t in (first, second)
    )
    keep_first = min(n_first, max_length + 1 + (n_first > n_second))
    keep_second = min(n_second, max_length + 1 + (n_second > n_first))
    return _cut(tokenizer, first, keep_first), _cut(tokenizer, second, keep_second)


def encode_dataset(
    ds: Dataset | DatasetDict, tokenizer, task: str | TaskSpec, max_length: int = 128
) -> Dataset | DatasetDict:
    """Tokenize the task's text columns of ``ds`` (a ``Dataset`` or ``DatasetDict``).

    Single sentences are tokenized alone, pairs as ``tokenizer(sentence1, sentence2)`` (long pairs first cut
    by :func:`cap_pair`, so memory does not grow with their length); both truncated
    to ``max_length`` tokens and left unpadded (see :func:`make_collator`). The result has the
    tokenizer's columns (``input_ids``, ``attention_mask``, ``token_type_ids`` for BERT) and ``labels``
    (``int64`` class ids, ``float32`` for regression); the text columns and ``label`` are removed, other
    columns are kept.
    """
    spec = get_task(task)
    splits = ds.values() if isinstance(ds, DatasetDict) else [ds]
    for split in splits:
        missing = [c for c in (*spec.text_columns, "label") if c not in split.column_names]
        if missing:
            raise DataError(
                f"cannot encode {spec.name} data: columns {missing} missing (has {split.column_names}); "
                "load it with fsdkit.data.load_task_data"
            )

    def tokenize(batch: dict) -> dict:
        texts = [batch[column] for column in spec.text_columns]
        if len(texts) == 2:
            texts = [list(t) for t in zip(*(cap_pair(tokenizer, a, b, max_length) for a, b in zip(*texts)))]
        encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return dict(encoded)

    encoded = ds.map(
        tokenize, batched=True, remove_columns=[*spec.text_columns, "label"], desc=f"tokenizing {spec.name}"
    )
    return encoded.cast_column("labels", Value("float32" if spec.is_regression else "int64"))


def token_counts(dataset: Dataset) -> np.ndarray:
    """The number of real tokens of every example of an encoded dataset (its attention mask, or its ids)."""
    column = "attention_mask" if "attention_mask" in dataset.column_names else "input_ids"
    rows = dataset[column]
    return np.array([int(np.sum(r)) if column == "attention_mask" else len(r) for r in rows], dtype=np.int64)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices of the examples in batches of ``batch_size`` examples of similar length (sorted by length, ties in
    order): a pass that only reads its outputs back by index (inference, the teacher-output cache) pads each batch
    to its own longest example and so computes far fewer padding positions than batches in dataset order."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def make_collator(tokenizer):
    """A ``DataCollatorWithPadding``: pads each batch to its longest row and returns torch tensors."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def add_teacher_encoding(encoded: Dataset, raw: Dataset, teacher_tokenizer, task, max_length: int = 128) -> Dataset:
    """``encoded`` (the student's tokenisation of ``raw``) plus the teacher's own tokenisation of the same rows,
    as ``teacher_input_ids``, ``teacher_attention_mask`` (and ``teacher_token_type_ids``)."""
    teacher = encode_dataset(raw, teacher_tokenizer, task, max_length=max_length).remove_columns(["labels"])
    for column in teacher.column_names:
        encoded = encoded.add_column(TEACHER_PREFIX + column, teacher[column])
    return encoded


class TwoTokenizerCollator:
    """Pads the student's and the teacher's tokenisations of a batch, each with its own tokenizer."""

    def __init__(self, student_tokenizer, teacher_tokenizer):
        self.student = make_collator(student_tokenizer)
        self.teacher = make_collator(teacher_tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        student = [{k: v for k, v in f.items() if not k.startswith(TEACHER_PREFIX)} for f in features]
        teacher = [
            {k[len(TEACHER_PREFIX) :]: v for k, v in f.items() if k.startswith(TEACHER_PREFIX)} for f in features
        ]
        batch = self.student(student)
        batch.update({TEACHER_PREFIX + k: v for k, v in self.teacher(teacher).items()})
        return batch


def text_rows_sha256(dataset, columns: tuple[str, ...]) -> str:
    """sha256 of the text ``columns`` of every row, in order: identifies the rows an artifact (a teacher memory)
    was built from, whatever tokenizer reads them later."""
    import hashlib

    digest = hashlib.sha256()
    for column in columns:
        for text in dataset[column]:
            digest.update(str(text).encode("utf-8"))
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()
