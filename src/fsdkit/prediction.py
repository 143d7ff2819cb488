"""``fsdkit predict``: a model's predictions on a task split, written as a GLUE submission or as records.

- ``.tsv``: the GLUE submission format, ``index<TAB>prediction`` with the task's label names as the GLUE
  download writes them (``0``/``1`` for MRPC and SST-2, ``entailment``/``not_entailment`` for RTE,
  ``ENTAILMENT``/``NEUTRAL``/``CONTRADICTION`` for SICK) or a float for STS-B.
- ``.jsonl`` / ``.csv``: one record per example: ``index``, ``prediction`` (label name or score) and, for
  classification, the softmax probability of every label (``p_<label>``).

The ``test`` split is the unlabelled ``test.tsv`` of a GLUE folder (keyed by its ``index`` column); other
splits are the task's labelled splits, keyed by row number.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from fsdkit.artifacts import atomic_write_text, check_output_file
from fsdkit.config import PredictConfig, make_config
from fsdkit.data.files import DataSource
from fsdkit.errors import ConfigError, DataError

FORMATS = (".tsv", ".jsonl", ".csv")


def _rows_to_predict(task, config: PredictConfig):
    """``(index list, Dataset with the text columns and a placeholder label)`` of the split to predict."""
    from datasets import Dataset

    from fsdkit.data import resolve_task_data
    from fsdkit.data.glue_files import TEST_FILE, read_test_tsv, task_folder

    if DataSource.from_config(config) is not None:  # your own files: the test split is --test-file's rows
        _, data = resolve_task_data(config)
        if config.split not in data:
            raise DataError(f"no {config.split!r} split in your data (splits: {', '.join(data)}); "
                            f"give --{config.split}-file")
        return list(range(len(data[config.split]))), data[config.split]
    if config.split == "test":
        if config.data_dir is None:
            raise ConfigError(
                f"--split test reads the unlabelled {TEST_FILE} of a GLUE folder: give --data-dir (the hub's test "
                "splits are not read by fsdkit)"
            )
        columns = read_test_tsv(task_folder(task, config.data_dir) / TEST_FILE, task)
        index = columns.pop("index")
        placeholder = 0.0 if task.is_regression else 0
        return index, Dataset.from_dict({**columns, "label": [placeholder] * len(index)})
    _, data = resolve_task_data(config)
    if config.split not in data:
        raise DataError(f"task {task.name} has no split {config.split!r}; available: test, {', '.join(data)}")
    split = data[config.split]
    return list(range(len(split))), split


def _records(task, index: list[int], logits: np.ndarray) -> tuple[list[str], list[dict[str, Any]]]:
    from fsdkit.data.glue_files import submission_labels

    names = submission_labels(task)
    if names is None:
        return ["index", "prediction"], [{"index": i, "prediction": float(z[0])} for i, z in zip(index, logits)]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    fields = ["index", "prediction", *(f"p_{name}" for name in names)]
    records = []
    for i, p in zip(index, probabilities):
        records.append({"index": i, "prediction": names[int(p.argmax())],
                        **{f"p_{name}": round(float(v), 6) for name, v in zip(names, p)}})
    return fields, records


def format_predictions(fields: list[str], records: list[dict[str, Any]], suffix: str) -> str:
    if suffix == ".tsv":
        return "index\tprediction\n" + "".join(f"{r['index']}\t{r['prediction']}\n" for r in records)
    if suffix == ".jsonl":
        return "".join(json.dumps(r) + "\n" for r in records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def predict(config: PredictConfig | dict | None = None, **overrides) -> dict[str, Any]:
    """Predict ``config.split`` of ``config.task`` with the model folder ``config.model``; write ``config.output``.

    Returns ``{"task", "model", "split", "output", "n_examples"}``.
    """
    from fsdkit.data import get_task, make_collator
    from fsdkit.data.encode import encode_dataset
    from fsdkit.evaluation import check_model_matches_task, predict_logits
    from fsdkit.models import check_model_folder, load_classifier

    config = config if isinstance(config, PredictConfig) else make_config(PredictConfig, config, **overrides)
    if not config.model:
        raise ConfigError("predict needs a model folder (fsdkit predict MODEL_DIR --task T --output FILE)")
    if not config.output:
        raise ConfigError(f"--output is required: a {', '.join(FORMATS)} file")
    output = Path(config.output)
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"--output {output}: unknown format {output.suffix!r}; use {', '.join(FORMATS)}")
    inputs = {f"--{name.replace('_', '-')}": getattr(config, name, None)
              for name in ("train_file", "validation_file", "test_file")}
    check_output_file(output, "output", keep=inputs)  # before the model runs, and never over an input
    from fsdkit.data import resolve_task_data

    task, _ = resolve_task_data(config) if DataSource.from_config(config) else (get_task(config.task), None)
    check_model_folder(config.model, max_length=config.max_length, option="model")
    index, rows = _rows_to_predict(task, config)  # bad data fails before the model is loaded
    model, tokenizer = load_classifier(config.model, None)
    check_model_matches_task(model, task, config.model)
    encoded = encode_dataset(rows, tokenizer, task, max_length=config.max_length)
    logits = predict_logits(model, encoded, make_collator(tokenizer), batch_size=config.batch_size,
                            progress=config.progress, desc=f"predict {config.split}")
    fields, records = _records(task, index, logits)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, format_predictions(fields, records, output.suffix.lower()))
    return {"task": task.name, "model": str(config.model), "split": config.split, "output": str(output),
            "n_examples": len(records)}
