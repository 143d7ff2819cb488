"""Predict with a model over a task split and score the predictions with the task's official metrics."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fsdkit.features import model_inputs


def predict_logits(
    model, dataset, collator, *, batch_size: int = 128, progress: bool = True, desc: str = "predict"
) -> np.ndarray:
    """Logits (N × C) of ``model`` over an encoded ``dataset``, in dataset order, under ``torch.inference_mode``.

    The examples are run in batches of similar length (:func:`fsdkit.data.encode.length_sorted_batches`), each
    padded to its own longest example, and the logits put back in order: the same values as batches in dataset
    order (up to float rounding), with far fewer padding positions computed.
    """
    from fsdkit.data.encode import length_sorted_batches, token_counts

    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    rows = dataset.select_columns(columns)
    out = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for index in tqdm(
            length_sorted_batches(token_counts(rows), batch_size), desc=desc, disable=not progress, leave=False
        ):
            chunk = rows[index.tolist()]
            batch = collator([{c: chunk[c][i] for c in columns} for i in range(len(index))])
            batch = {k: v.to(device) for k, v in model_inputs(batch).items()}
            out[index] = model(**batch).logits.float().cpu().numpy()
    return out


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def inference_throughput(
    model: nn.Module, dataloader: Iterable[Mapping[str, Any]], max_batches: int | None = None
) -> float:
    """Examples per second of ``model(**inputs)`` under ``torch.inference_mode`` in eval mode.

    The first batch is a warm-up and is not timed; then up to ``max_batches`` batches (all when None) are
    timed. With a single batch in the loader, that batch is run again for the timing. Labels are not passed.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be ≥ 1, got {max_batches}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    examples = 0
    elapsed = 0.0
    first = None
    timed = 0
    try:
        with torch.inference_mode():
            for batch in dataloader:
                inputs = _to_device(model_inputs(batch), device)
                if first is None:
                    first = inputs
                    model(**inputs)
                    continue
                if max_batches is not None and timed >= max_batches:
                    break
                elapsed += _timed_forward(model, inputs)
                examples += inputs["input_ids"].shape[0]
                timed += 1
            if first is None:
                raise ValueError("the dataloader is empty: no batch to time")
            if timed == 0:
                elapsed += _timed_forward(model, first)
                examples += first["input_ids"].shape[0]
    finally:
        model.train(was_training)
    return examples / elapsed


def _timed_forward(model: nn.Module, inputs: Mapping[str, Any]) -> float:
    start = time.perf_counter()
    model(**inputs)
    if inputs["input_ids"].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def inference_speed(model, tokenizer, task, dataset, *, batches: int, max_length: int = 128) -> dict[str, Any]:
    """Inference latency at batch 1 (ms per example) and throughput at batch 32 (examples/s) on ``dataset``,
    each over ``batches`` timed batches after one warm-up batch (:func:`latency_ms`)."""
    return {
        "latency_ms_batch1": latency_ms(
            model, tokenizer, task, dataset, batch_size=1, batches=batches, max_length=max_length
        ),
        "examples_per_second_batch32": 1000.0
        / latency_ms(model, tokenizer, task, dataset, batch_size=32, batches=batches, max_length=max_length),
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
    }


def latency_ms(model, tokenizer, task, dataset, *, batch_size: int, batches: int, max_length: int = 128) -> float:
    """Milliseconds per example of ``model`` on ``dataset`` in batches of ``batch_size``: ``batches`` timed batches
    after one warm-up batch (:func:`inference_throughput`)."""
    from fsdkit.data import encode_dataset, make_collator

    encoded = encode_dataset(dataset, tokenizer, task, max_length=max_length)
    columns = [c for c in encoded.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    loader = DataLoader(encoded.select_columns(columns), batch_size=batch_size, collate_fn=make_collator(tokenizer))
    return 1000.0 / inference_throughput(model, loader, max_batches=batches)


def evaluate_model(
    model,
    tokenizer,
    task,
    data,
    *,
    splits: list[str] | None = None,
    batch_size: int = 128,
    max_length: int = 128,
    max_eval_samples: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics per evaluation split: ``{split: {metric: value}}`` (``data`` is the task's DatasetDict)."""
    from fsdkit.data import compute_metrics, encode_dataset, make_collator
    from fsdkit.errors import DataError

    splits = list(splits or task.eval_splits)
    collator = make_collator(tokenizer)
    results = {}
    for split in splits:
        if split not in data:
            raise DataError(f"task {task.name} has no split {split!r}; available: {', '.join(data)}")
        ds = data[split]
        if max_eval_samples is not None:
            ds = ds.select(range(min(max_eval_samples, len(ds))))
        encoded = encode_dataset(ds, tokenizer, task, max_length=max_length)
        logits = predict_logits(
            model, encoded, collator, batch_size=batch_size, progress=progress, desc=f"eval {split}"
        )
        results[split] = compute_metrics(task, logits, np.asarray(encoded["labels"]))
    return results


def majority_baseline(task, data, *, splits: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Metrics per evaluation split of the constant predictor fitted on ``data["train"]``.

    Classification: every example gets the training set's most frequent label (ties: the smallest label id);
    regression: the training set's mean score. It is the floor a model has to clear to have learned anything;
    on MRPC it is high for F1 (always "paraphrase": F1 81.2 on the dev set), on CoLA it is MCC 0 and on STS-B
    a constant has no correlation (0.0, see :func:`fsdkit.data.compute_metrics`).
    """
    from fsdkit.data import compute_metrics, get_task
    from fsdkit.errors import DataError

    task = get_task(task)
    if "train" not in data or len(data["train"]) == 0:
        raise DataError(f"task {task.name}: the majority baseline needs a non-empty train split")
    train = np.asarray(data["train"]["label"])
    if task.is_regression:
        constant = float(train.astype(np.float64).mean())
    else:
        labels, counts = np.unique(train.astype(np.int64), return_counts=True)
        constant = int(labels[counts.argmax()])  # np.unique sorts: the first maximum is the smallest id
    results = {}
    for split in splits or task.eval_splits:
        if split not in data:
            raise DataError(f"task {task.name} has no split {split!r}; available: {', '.join(data)}")
        references = np.asarray(data[split]["label"])
        results[split] = compute_metrics(task, np.full(len(references), constant), references)
    return results


def evaluate(config=None, **overrides) -> dict[str, Any]:
    """``fsdkit evaluate``: load a model folder, score it on the task's evaluation split(s), optionally write JSON.

    Returns ``{"task", "model", "metrics": {split: {metric: value}}, "n_examples": {split: n}}``.
    """
    from fsdkit.artifacts import atomic_write_text, check_output_dir, check_output_file
    from fsdkit.config import EvaluateConfig, as_config, input_paths
    from fsdkit.data import resolve_task_data
    from fsdkit.errors import ConfigError
    from fsdkit.models import check_model_folder, load_classifier

    config = as_config(EvaluateConfig, config, overrides)
    if not config.model:
        raise ConfigError("evaluate needs a model folder (fsdkit evaluate MODEL_DIR --task T)")
    check_model_folder(config.model, max_length=config.max_length, option="model")
    inputs = input_paths(config, without=("model",))  # eval_results.json beside the model is run_glue.py's habit
    targets = [Path(config.output)] if config.output else []
    if config.output_dir:
        targets.append(check_output_dir(config.output_dir, keep=inputs) / "eval_results.json")
    for target in targets:  # before the model runs, and never over an input
        check_output_file(target, "output", keep=inputs)
    task, data = resolve_task_data(config)  # a bad data file fails before the model is loaded
    model, tokenizer = load_classifier(config.model, None)
    check_model_matches_task(model, task, config.model)
    splits = [config.split] if config.split else None
    metrics = evaluate_model(
        model,
        tokenizer,
        task,
        data,
        splits=splits,
        batch_size=config.batch_size,
        max_length=config.max_length,
        max_eval_samples=config.max_eval_samples,
        progress=config.progress,
    )
    sizes = {s: min(len(data[s]), config.max_eval_samples or len(data[s])) for s in metrics}
    result = {"task": task.name, "model": str(config.model), "metrics": metrics, "n_examples": sizes}
    if config.speed_batches:
        result["speed"] = inference_speed(
            model,
            tokenizer,
            task,
            data[next(iter(metrics))],
            batches=config.speed_batches,
            max_length=config.max_length,
        )
    for target in targets:
        atomic_write_text(target, json.dumps(result, indent=2) + "\n")
    return result


def check_model_matches_task(model, task, where: str | os.PathLike) -> None:
    """Refuse a model whose head does not fit the task (wrong number of labels, or fine-tuned on another task)."""
    from fsdkit.errors import ModelError

    expected = 1 if task.is_regression else task.num_labels
    if model.config.num_labels != expected:
        raise ModelError(
            f"model {where} has {model.config.num_labels} outputs but task {task.name} needs {expected}; "
            "was it fine-tuned on another task?"
        )
    trained = getattr(model.config, "fsdkit_task", None)
    if trained is not None and trained != task.name:
        raise ModelError(f"model {where} was fine-tuned on task {trained!r}, not {task.name!r}")
    names = model_label_names(model.config)
    if task.is_regression or names is None:
        return
    ours, theirs = [n.lower() for n in names], [n.lower() for n in task.labels]
    if ours == theirs:  # the same classes in the same order (SST-2's NEGATIVE / negative alike)
        return
    if sorted(ours) == sorted(theirs):
        raise ModelError(
            f"model {where} orders its labels {list(names)} (its id2label) and the data {list(task.labels)}: class "
            f"ids would be swapped. Save the model with the data's order, or fine-tune one on this data"
        )
    changed = [f"{a!r} vs {b!r}" for a, b in zip(names, task.labels, strict=True) if a.lower() != b.lower()]
    raise ModelError(
        f"model {where} predicts the labels {list(names)} (its id2label) but the data's labels are "
        f"{list(task.labels)} ({'; '.join(changed[:3])}): each prediction would get another class's name. Use "
        f"data with the model's label names, or fine-tune a model on this data"
    )


def model_label_names(config) -> tuple[str, ...] | None:
    """The class names a model's ``id2label`` gives, in class order; None for transformers' placeholders
    (``LABEL_0``, …: a model whose labels were never named) or a regression head."""
    import re

    mapping = getattr(config, "id2label", None) or {}
    names = tuple(str(mapping[i]) for i in sorted(mapping, key=int)) if mapping else ()
    if not names or all(re.fullmatch(r"LABEL_\d+", n) for n in names) or names == ("score",):
        return None
    return names
