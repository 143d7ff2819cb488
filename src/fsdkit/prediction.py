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
from typing import Any, cast

import numpy as np

from fsdkit.artifacts import atomic_write_text, check_output_file
from fsdkit.config import PredictConfig, as_config, input_paths
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
            raise DataError(
                f"no {config.split!r} split in your data (splits: {', '.join(data)}); give --{config.split}-file"
            )
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
        records.append(
            {
                "index": i,
                "prediction": names[int(p.argmax())],
                **{f"p_{name}": round(float(v), 6) for name, v in zip(names, p)},
            }
        )
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
    from fsdkit.data import get_task
    from fsdkit.models import check_model_folder

    config = as_config(PredictConfig, config, overrides)
    if not config.model:
        raise ConfigError("predict needs a model folder (fsdkit predict MODEL_DIR --input FILE --output FILE)")
    if not config.output:
        raise ConfigError(f"--output is required: a {', '.join(FORMATS)} file")
    output = Path(config.output)
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"--output {output}: unknown format {output.suffix!r}; use {', '.join(FORMATS)}")
    if config.input:
        return _predict_input(config, output)
    check_output_file(output, "output", keep=input_paths(config))  # before the model runs, never over an input
    from fsdkit.data import resolve_task_data

    task, _ = resolve_task_data(config) if DataSource.from_config(config) else (get_task(config.task), None)
    check_model_folder(config.model, max_length=config.max_length, option="model")
    index, rows = _rows_to_predict(task, config)  # bad data fails before the model is loaded
    _write_predictions(config, task, index, rows, output, check_task=True, desc=f"predict {config.split}")
    return {
        "task": task.name,
        "model": str(config.model),
        "split": config.split,
        "output": str(output),
        "n_examples": len(index),
    }


def _write_predictions(
    config: PredictConfig, task, index: list[int], rows, output: Path, *, check_task: bool, desc: str
) -> np.ndarray:
    """Load the model, predict ``rows`` and write them to ``output``; the logits."""
    from fsdkit.data import make_collator
    from fsdkit.data.encode import encode_dataset
    from fsdkit.evaluation import check_model_matches_task, predict_logits
    from fsdkit.models import load_classifier

    model_path = cast(str, config.model)  # predict refuses a config without a model
    model, tokenizer = load_classifier(model_path, None)
    if check_task:
        check_model_matches_task(model, task, model_path)
    encoded = encode_dataset(rows, tokenizer, task, max_length=config.max_length)
    logits = predict_logits(
        model, encoded, make_collator(tokenizer), batch_size=config.batch_size, progress=config.progress, desc=desc
    )
    fields, records = _records(task, index, logits)
    atomic_write_text(output, format_predictions(fields, records, output.suffix.lower()))
    return logits


def _predict_input(config: PredictConfig, output: Path) -> dict[str, Any]:
    """``--input FILE``: predictions from the model folder alone — its ``id2label`` names the classes, the text
    columns come from ``--text-columns``, else the model's run record, else the usual defaults; a file with the
    label column is scored too (``metrics``)."""
    from fsdkit.data import compute_metrics
    from fsdkit.data.files import read_input
    from fsdkit.evaluation import model_label_names
    from fsdkit.models import check_model_folder, load_model_config
    from fsdkit.run_record import RunRecord

    given = [
        flag
        for flag, value in (
            ("--train-file", config.train_file),
            ("--validation-file", config.validation_file),
            ("--test-file", config.test_file),
            ("--dataset", config.dataset),
            ("--data-dir", config.data_dir),
        )
        if value
    ]
    if given:
        raise ConfigError(f"--input predicts from the model folder alone: drop {', '.join(given)}")
    check_output_file(output, "output", keep=input_paths(config))
    folder = check_model_folder(cast(str, config.model), max_length=config.max_length, option="model")
    model_config = load_model_config(folder)
    if getattr(model_config, "problem_type", None) == "regression" or model_config.num_labels == 1:
        labels = None
    else:
        labels = model_label_names(model_config) or tuple(
            str(model_config.id2label[i]) for i in range(model_config.num_labels)
        )
    record = RunRecord.read(folder)
    columns = config.text_columns or ((record.config if record else None) or {}).get("text_columns")
    source = DataSource(text_columns=tuple(columns) if columns else None, label_column=config.label_column)
    task, rows, labelled = read_input(cast(str, config.input), source, labels)  # bad input fails before the model loads
    # the task is the model's own (its label names): nothing to check it against
    logits = _write_predictions(config, task, list(range(len(rows))), rows, output, check_task=False, desc="predict")
    result: dict[str, Any] = {
        "model": str(config.model),
        "input": str(config.input),
        "output": str(output),
        "n_examples": len(rows),
        "labels": list(labels) if labels else None,
    }
    if labelled:
        result["metrics"] = compute_metrics(task, logits, rows["label"])
    return result
