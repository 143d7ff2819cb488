"""``fsdkit export``: a model folder to ONNX, checked against PyTorch with ONNX Runtime.

The model is traced with ``torch.onnx.export`` (the TorchScript exporter, opset 17) with dynamic batch and
sequence axes; the output folder holds ``model.onnx``, the config, the tokenizer and the PyTorch weights, so
ONNX Runtime serves ``model.onnx`` and ``transformers.pipeline("text-classification", model=FOLDER)`` the folder as
it is. The export is then
run with ONNX Runtime on a batch of other texts, padded, and its logits are compared with PyTorch's: the
largest absolute difference is returned and must stay below ``atol`` (default 1e-4).

Optimum's own exporter (``optimum-onnx`` 0.1 / optimum 2.1) requires transformers < 5, which fsdkit cannot use.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsdkit.errors import ConfigError, first_line
from fsdkit.quantize import quantize_export, remove_int8

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PROBE = [
    "a short example",
    "a slightly longer example sentence, with punctuation, to check the export",
    "one more line of text",
]


def export_onnx(model_dir: str, output_dir: str, *, opset: int = 17, atol: float = 1e-4) -> dict[str, Any]:
    """Export ``model_dir`` to ``output_dir/model.onnx`` (plus config and tokenizer) and check its logits.

    Inputs are passed by name, only those the model's ``forward`` takes, and the ONNX Runtime check feeds only the
    inputs the exported graph kept (a model without token types, DeBERTa-v3's, drops ``token_type_ids``). Files are
    written into a temporary folder inside ``output_dir`` and moved in only when the check passes: a failed export
    leaves nothing behind."""
    import inspect
    import shutil

    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("fsdkit export needs onnxruntime: pip install onnxruntime onnx") from None
    from torch.onnx import _constants
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fsdkit.artifacts import check_output_dir, follow_umask, remove_stale_temporaries, temporary_sibling
    from fsdkit.models import check_model_folder
    from fsdkit.models.loading import ensure_pad_token

    low, high = _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if not low <= opset <= high:
        raise ConfigError(f"--opset {opset}: the exporter writes opsets {low} to {high}; the default is 17")
    folder = check_model_folder(model_dir, option="model")
    out = check_output_dir(output_dir, keep={"the model folder": folder if Path(folder).is_dir() else None})
    remove_stale_temporaries(out / "model.onnx")  # an export killed before it could clean up
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager", trust_remote_code=False
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    ensure_pad_token(tokenizer, model.config, str(folder))  # the check pads a batch
    sample = tokenizer(PROBE[:2], padding=True, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in INPUT_NAMES if name in sample and name in accepted]
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    staging = temporary_sibling(out / "model.onnx")
    staging.mkdir()
    try:
        path = staging / "model.onnx"
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python-level conditions of the attention code
                torch.onnx.export(
                    model,
                    (),
                    str(path),
                    kwargs={name: sample[name] for name in names},
                    input_names=names,
                    output_names=["logits"],
                    dynamic_axes=axes,
                    opset_version=opset,
                    dynamo=False,
                )
        except Exception as exc:  # noqa: BLE001 - the exporter's errors share no base class: one line, the cause
            raise ConfigError(f"the ONNX export of {model_dir} at opset {opset} failed: {first_line(exc)}") from None
        model.save_pretrained(staging, safe_serialization=True)  # transformers.pipeline serves the folder as is
        tokenizer.save_pretrained(staging)

        probe = tokenizer(PROBE, padding=True, return_tensors="pt")  # other shapes than the traced ones, with padding
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fed = [i.name for i in session.get_inputs()]  # the inputs the graph kept
        onnx_logits = session.run(["logits"], {name: probe[name].numpy() for name in fed})[0]
        with torch.no_grad():
            torch_logits = model(**{name: probe[name] for name in names}).logits.numpy()
        difference = float(np.abs(onnx_logits - torch_logits).max())
        if not difference <= atol:
            raise ConfigError(f"the ONNX export of {model_dir} differs from PyTorch by {difference:.3g} (> {atol})")
        follow_umask(staging)  # safetensors writes its file 0600
        for file in staging.iterdir():
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "model": str(model_dir),
        "output": str(out / "model.onnx"),
        "opset": opset,
        "inputs": fed,
        "max_abs_logit_difference": difference,
    }


def export(config=None, **overrides) -> dict[str, Any]:
    """``fsdkit export``: :func:`export_onnx`, then with ``quantize`` :func:`fsdkit.quantize.quantize_export` on the
    task's evaluation split — the data flags, or else the data the model was trained on (its run record)."""
    from transformers import AutoTokenizer

    from fsdkit.config import ExportConfig, as_config

    config = as_config(ExportConfig, config, overrides)
    if not config.model or not config.output_dir:
        raise ConfigError("fsdkit export MODEL_DIR --output-dir DIR")
    if config.quantize is not None:
        task, data = _measurement_data(config)  # bad data fails before the export
        metric = task.metric(config.metric)
    elif config.metric is not None:
        raise ConfigError("--metric chooses the int8 model: it needs --quantize int8")
    result = export_onnx(config.model, config.output_dir, opset=config.opset, atol=config.atol)
    remove_int8(config.output_dir)  # an earlier export's int8 model measured the float model just replaced
    if config.quantize is not None:
        tokenizer = AutoTokenizer.from_pretrained(config.output_dir, trust_remote_code=False)  # saved with a pad token
        result["quantization"] = quantize_export(
            config.output_dir,
            task,
            data,
            tokenizer,
            tolerance=config.quantize_tolerance,
            calibration_samples=config.calibration_samples,
            max_length=config.max_length,
            metric=metric,
        )
    return result


def _measurement_data(config):
    """The task and data that measure a quantized export: the data flags, else the model's run record's data."""
    import dataclasses

    from fsdkit.config import DataOptions, EvaluateConfig, make_config
    from fsdkit.data import resolve_task_data
    from fsdkit.data.files import DataSource
    from fsdkit.run_record import RunRecord

    if config.data_dir and not config.task:
        raise ConfigError("--quantize with --data-dir: name the task whose evaluation split measures it (--task)")
    if DataSource.from_config(config) is not None or config.task or config.data_dir:
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(DataOptions)}
        return resolve_task_data(
            make_config(EvaluateConfig, {**values, "task": config.task or "rt-sentiment", "data_dir": config.data_dir})
        )
    record = RunRecord.read(config.model)
    if record is None or not isinstance(record.config, dict):
        raise ConfigError(
            f"--quantize measures the int8 model on a task's evaluation split: {config.model} has no "
            f"run record to take its data from, so give --task (and --data-dir) or --train-file / "
            f"--validation-file"
        )
    names = {f.name for f in dataclasses.fields(DataOptions)} | {"task", "data_dir"}
    return resolve_task_data(make_config(EvaluateConfig, {k: v for k, v in record.config.items() if k in names}))
