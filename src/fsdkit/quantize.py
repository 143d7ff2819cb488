"""int8 deployment: an exported ``model.onnx`` quantized with ONNX Runtime, measured against the float model.

``fsdkit export MODEL --output-dir DIR --quantize int8`` writes ``DIR/model.int8.onnx`` beside ``DIR/model.onnx``
and ``DIR/quantization.json``: on the task's evaluation split, the metric of both models, their file sizes, and
their latency at batch 1 and batch 32 (ONNX Runtime on this machine, one run, the same rows). Two quantizations are
tried — dynamic (weights int8, activations quantized per batch at run time: ``quantize_dynamic``) and static
(activations' ranges calibrated once on ``calibration_samples`` training rows, QDQ format: ``quantize_static``) —
and one is kept by :func:`choose`: an int8 model exists to run faster than the float one, so a candidate slower than
the float model at batch 1 is kept only when no candidate is faster; among the rest, one within the tolerance comes
before one past it, then the better metric, then the lower latency. The metric is ``metric`` (default: the task's
main metric; ``fsdkit compress`` passes its own). A quantized model whose metric falls by more than ``tolerance``
points is kept but flagged (``flagged: true``) in the report and in the folder's model card, as is one slower than
the float model. Float and int8 latencies at batch 1 come from the same pass; :func:`remove_int8` takes an earlier
export's int8 files away when the float model is replaced.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fsdkit.errors import ConfigError

#: the rows a latency figure is timed over, after one warm-up batch
TIMED_BATCHES = 10
#: the files an int8 export adds to the float one's folder (and a section of its README.md)
INT8_FILES = ("model.int8.onnx", "quantization.json")
CARD_SECTION = "\n## int8 (ONNX Runtime)"


def _batches(encoded, names: list[str], pad_id: int, batch_size: int):
    """``encoded``'s rows (in order) as padded ``{input: int64 array}`` batches with ``names`` only."""
    for start in range(0, len(encoded), batch_size):
        rows = encoded[start : start + batch_size]
        length = max(len(ids) for ids in rows["input_ids"])
        batch = {}
        for name in names:
            fill = pad_id if name == "input_ids" else 0
            batch[name] = np.array([list(r) + [fill] * (length - len(r)) for r in rows[name]], dtype=np.int64)
        yield batch


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _logits(session, encoded, pad_id: int) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return np.concatenate([session.run(["logits"], batch)[0] for batch in _batches(encoded, names, pad_id, 64)])


def _latency_ms(session, encoded, pad_id: int, batch_size: int) -> float:
    """Milliseconds per batch of ``batch_size`` rows, the mean over :data:`TIMED_BATCHES` batches after a warm-up."""
    names = [i.name for i in session.get_inputs()]
    batches = list(
        _batches(encoded.select(range(min(len(encoded), batch_size * (TIMED_BATCHES + 1)))), names, pad_id, batch_size)
    )
    session.run(["logits"], batches[0])
    timed = batches[1:] or batches
    start = time.perf_counter()
    for batch in timed:
        session.run(["logits"], batch)
    return 1000.0 * (time.perf_counter() - start) / len(timed)


class _Calibration:
    """ONNX Runtime's calibration reader over training rows, one row at a time (no padding in the ranges)."""

    def __init__(self, encoded, names: list[str], pad_id: int):
        self.batches = iter(list(_batches(encoded, names, pad_id, 1)))

    def get_next(self):
        return next(self.batches, None)


def quantize_export(
    folder: str | Path,
    task,
    data,
    tokenizer,
    *,
    tolerance: float = 1.0,
    calibration_samples: int = 128,
    max_length: int = 128,
    metric: str | None = None,
) -> dict[str, Any]:
    """Quantize ``folder/model.onnx`` (see the module docstring); ``data`` is the task's ``DatasetDict`` (its first
    evaluation split is scored, its training split calibrates). Returns the report, also ``quantization.json``."""
    import json

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from fsdkit.artifacts import atomic_write_text
    from fsdkit.data import compute_metrics, encode_dataset

    folder = Path(folder)
    float_path = folder / "model.onnx"
    split = task.eval_splits[0] if task.eval_splits else None
    if split is None or split not in data:
        raise ConfigError(
            "--quantize measures the quantized model on an evaluation split: give one (e.g. "
            "--validation-file, or a task with a dev split)"
        )
    if not tolerance >= 0:
        raise ConfigError(f"--quantize-tolerance must be ≥ 0 points, got {tolerance}")
    pad_id = tokenizer.pad_token_id or 0
    dev = encode_dataset(data[split], tokenizer, task, max_length=max_length)
    references = np.asarray(dev["labels"])
    calibration = encode_dataset(
        data["train"].select(range(min(calibration_samples, len(data["train"])))),
        tokenizer,
        task,
        max_length=max_length,
    )
    float_session = _session(float_path)
    names = [i.name for i in float_session.get_inputs()]

    class Reader(_Calibration, CalibrationDataReader):
        pass

    candidates: dict[str, dict[str, Any]] = {}
    for mode in ("dynamic", "static"):
        path = folder / f"model.int8-{mode}.onnx"
        try:
            if mode == "dynamic":
                quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
            else:
                quantize_static(
                    str(float_path),
                    str(path),
                    Reader(calibration, names, pad_id),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                )
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's quantizer errors share no base: recorded, not fatal
            candidates[mode] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            path.unlink(missing_ok=True)
            continue
        session = _session(path)
        candidates[mode] = {
            "path": path,
            "session": session,
            "metrics": compute_metrics(task, _logits(session, dev, pad_id), references),
        }
    measured = {mode: c for mode, c in candidates.items() if "session" in c}
    if not measured:
        raise ConfigError(
            f"ONNX Runtime could not quantize {float_path}: "
            + "; ".join(f"{m}: {c['error']}" for m, c in candidates.items())
        )
    main = task.metric(metric)
    float_metrics = compute_metrics(task, _logits(float_session, dev, pad_id), references)
    float_batch1 = _latency_ms(float_session, dev, pad_id, 1)
    for c in measured.values():
        c["latency_ms_batch1"] = _latency_ms(c["session"], dev, pad_id, 1)
    chosen = choose(
        {m: (c["metrics"][main], c["latency_ms_batch1"]) for m, c in measured.items()},
        (float_metrics[main], float_batch1),
        tolerance,
    )
    final = folder / "model.int8.onnx"
    measured[chosen]["path"].replace(final)
    for mode, c in measured.items():
        if mode != chosen:
            c["path"].unlink(missing_ok=True)
    int8_session = _session(final)
    report: dict[str, Any] = {
        "split": split,
        "n_examples": len(dev),
        "metric": main,
        "quantization": chosen,
        "float": {
            "file": float_path.name,
            "size_mb": float_path.stat().st_size / 2**20,
            "metrics": float_metrics,
            "latency_ms_batch1": float_batch1,
            "latency_ms_batch32": _latency_ms(float_session, dev, pad_id, 32),
        },
        "int8": {
            "file": final.name,
            "size_mb": final.stat().st_size / 2**20,
            "metrics": measured[chosen]["metrics"],
            "latency_ms_batch1": measured[chosen]["latency_ms_batch1"],  # the pass that timed float's
            "latency_ms_batch32": _latency_ms(int8_session, dev, pad_id, 32),
        },
        "candidates": {
            mode: (
                {"metrics": c["metrics"], "latency_ms_batch1": c["latency_ms_batch1"]}
                if "metrics" in c
                else {"error": c["error"]}
            )
            for mode, c in candidates.items()
        },
        "tolerance_points": tolerance,
    }
    drop = 100.0 * (float_metrics[main] - report["int8"]["metrics"][main])
    report["drop_points"] = drop
    report["slower_than_float"] = report["int8"]["latency_ms_batch1"] >= float_batch1
    report["flagged"] = drop > tolerance or report["slower_than_float"]
    atomic_write_text(folder / "quantization.json", json.dumps(report, indent=2) + "\n")
    _card_section(folder, report)
    return report


def choose(candidates: dict[str, tuple[float, float]], float_model: tuple[float, float], tolerance: float) -> str:
    """The quantization to keep, from each candidate's ``(main metric, batch-1 latency in ms)`` and the float model's.

    Ranked by, in order: faster than the float model at batch 1; main metric within ``tolerance`` points of the
    float model's; the higher metric; the lower latency. Speed comes first because an int8 model slower than its
    float model has no use (ONNX Runtime runs a static QDQ model slower than float when it cannot fuse its int8
    kernels), and the metric's tolerance then decides between the fast ones.
    """
    float_metric, float_latency = float_model

    def rank(mode: str) -> tuple[bool, bool, float, float]:
        metric, latency = candidates[mode]
        return (
            latency < float_latency,
            100.0 * (float_metric - metric) <= tolerance,
            round(metric, 6),
            -latency,
        )

    return max(candidates, key=rank)


def _card_section(folder: Path, report: dict[str, Any]) -> None:
    """Append the int8 figures (and the flag, when the metric fell more than the tolerance) to the model card."""
    from fsdkit.artifacts import atomic_write_text

    card = folder / "README.md"
    text = _without_int8_section(card.read_text(encoding="utf-8")) if card.is_file() else "# Exported model\n"
    main, f, q = report["metric"], report["float"], report["int8"]
    lines = [
        "",
        CARD_SECTION.strip(),
        "",
        f"`{q['file']}` ({report['quantization']} quantization) beside `{f['file']}`, measured on the "
        f"{report['split']} split ({report['n_examples']} rows) on the exporting machine:",
        "",
        "| model | size (MB) | " + main + " | latency batch 1 (ms) | latency batch 32 (ms) |",
        "|---|---|---|---|---|",
        f"| float32 | {f['size_mb']:.1f} | {100 * f['metrics'][main]:.2f} | {f['latency_ms_batch1']:.2f} | "
        f"{f['latency_ms_batch32']:.1f} |",
        f"| int8 | {q['size_mb']:.1f} | {100 * q['metrics'][main]:.2f} | {q['latency_ms_batch1']:.2f} | "
        f"{q['latency_ms_batch32']:.1f} |",
        "",
    ]
    if report["drop_points"] > report["tolerance_points"]:
        lines += [
            f"**Flagged**: the int8 model's {main} is {report['drop_points']:.2f} points below the float "
            f"model's (tolerance {report['tolerance_points']:g}); check it on your data before you deploy it.",
            "",
        ]
    if report["slower_than_float"]:
        lines += [
            "**Flagged**: the int8 model is not faster than the float model at batch 1 on this machine (neither "
            "quantization was); deploy the float model here, or measure the int8 one on the target machine.",
            "",
        ]
    atomic_write_text(card, text + "\n".join(lines))


def remove_int8(folder: str | Path) -> None:
    """Take an earlier int8 export out of ``folder`` (its files and its model-card section): they measured a float
    model that a new export replaces."""
    from fsdkit.artifacts import atomic_write_text

    folder = Path(folder)
    for name in INT8_FILES:
        (folder / name).unlink(missing_ok=True)
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if CARD_SECTION in text:
            atomic_write_text(card, _without_int8_section(text))


def _without_int8_section(card: str) -> str:
    """A model card's text before its int8 section."""
    return card.split(CARD_SECTION)[0].rstrip() + "\n"
