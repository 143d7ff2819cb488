"""Model and time complexity (FSD paper Table 8): parameters, training and inference throughput relative to VKD.

- parameters: the exported model's parameter count (a training-time memory such as FSD's student memory is
  training state, not part of the exported model, so it is not counted);
- training throughput: ``train_samples_per_second`` from the run's ``fsdkit_run.json`` (examples/s);
- inference throughput: examples/s of plain forward passes over the dev set, measured by
  :func:`inference_throughput`.

Relative values divide by the reference method's value: parameters ×, training speed and inference speed
(higher = faster; the paper's 0.92 means 8 % slower than VKD).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsdkit.features import model_inputs

RUN_INFO_FILENAME = "fsdkit_run.json"


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


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


def read_run_info(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``fsdkit_run.json`` of a training output folder, or None when the folder has none."""
    path = Path(model_dir) / RUN_INFO_FILENAME
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return info


def _ratio(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or ref == 0:
        return None
    return value / ref


def complexity_table(records: Sequence[Mapping[str, Any]], reference: str = "vkd") -> dict[str, Any]:
    """Parameters and throughputs per method, each also relative to ``reference``.

    Args:
        records: one dict per model with ``"method"`` (name), ``"parameters"``,
            ``"inference_examples_per_second"`` and optionally ``"train_samples_per_second"`` (None or absent
            when the model has no ``fsdkit_run.json``).
        reference: the method the relative columns divide by (matched case-insensitively).

    Returns:
        ``{"reference", "note", "rows": [{"method", "parameters", "train_samples_per_second",
        "inference_examples_per_second", "relative_parameters", "relative_training_speed",
        "relative_inference_speed"}]}``. Relative values are None when the reference (or the value) is
        missing; ``note`` says why.
    """
    by_name = {str(r["method"]).lower(): r for r in records}
    ref = by_name.get(reference.lower())
    note = "" if ref is not None else f"reference method {reference!r} is not among {[r['method'] for r in records]}"
    rows = []
    ref_train = None if ref is None else ref.get("train_samples_per_second")
    ref_infer = None if ref is None else ref.get("inference_examples_per_second")
    for r in records:
        train = r.get("train_samples_per_second")
        infer = r.get("inference_examples_per_second")
        rows.append(
            {
                "method": r["method"],
                "parameters": int(r["parameters"]),
                "train_samples_per_second": None if train is None else float(train),
                "inference_examples_per_second": None if infer is None else float(infer),
                "relative_parameters": _ratio(r["parameters"], None if ref is None else ref["parameters"]),
                "relative_training_speed": _ratio(train, ref_train),
                "relative_inference_speed": _ratio(infer, ref_infer),
            }
        )
    return {"reference": reference, "note": note, "rows": rows}
