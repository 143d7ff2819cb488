"""Tokenize task data (no padding) and pad batches dynamically at collate time."""

from __future__ import annotations

from datasets import Dataset, DatasetDict, Value

from fsdkit.data.tasks import TaskSpec, get_task
from fsdkit.errors import DataError


def encode_dataset(
    ds: Dataset | DatasetDict, tokenizer, task: str | TaskSpec, max_length: int = 128
) -> Dataset | DatasetDict:
    """Tokenize the task's text columns of ``ds`` (a ``Dataset`` or ``DatasetDict``).

    Single sentences are tokenized alone, pairs as ``tokenizer(sentence1, sentence2)``; both truncated
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
        encoded = tokenizer(
            *(batch[column] for column in spec.text_columns), truncation=True, max_length=max_length
        )
        encoded["labels"] = batch["label"]
        return dict(encoded)

    encoded = ds.map(
        tokenize, batched=True, remove_columns=[*spec.text_columns, "label"], desc=f"tokenizing {spec.name}"
    )
    return encoded.cast_column("labels", Value("float32" if spec.is_regression else "int64"))


def make_collator(tokenizer):
    """A ``DataCollatorWithPadding``: pads each batch to its longest row and returns torch tensors."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)
