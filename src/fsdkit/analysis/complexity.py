"""Model and time complexity (FSD paper Table 8): parameters, training and inference throughput relative to VKD.

- parameters: the exported model's parameter count (a training-time memory such as FSD's student memory is
  training state, not part of the exported model, so it is not counted);
- training throughput: ``train_samples_per_second`` from the run's ``fsdkit_run.json`` (examples/s);
- inference throughput: examples/s of plain forward passes over the dev set, measured by
  :func:`fsdkit.evaluation.inference_throughput`.

Relative values divide by the reference method's value: parameters ×, training speed and inference speed
(higher = faster; the paper's 0.92 means 8 % slower than VKD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fsdkit.evaluation import inference_throughput
from fsdkit.models.architecture import count_parameters
from fsdkit.run_record import read_run_record

__all__ = ["complexity_table", "count_parameters", "inference_throughput", "read_run_record"]


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
