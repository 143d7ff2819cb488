"""``fsdkit export``: a model folder to ONNX, checked against PyTorch with ONNX Runtime.

The model is traced with ``torch.onnx.export`` (the TorchScript exporter, opset 17) with dynamic batch and
sequence axes; the output folder holds ``model.onnx``, the config and the tokenizer, so ONNX Runtime (or
Optimum's ``ORTModelForSequenceClassification``, where its version allows) can serve it. The export is then
run with ONNX Runtime on a batch of other texts, padded, and its logits are compared with PyTorch's: the
largest absolute difference is returned and must stay below ``atol`` (default 1e-4).

Optimum's own exporter (``optimum-onnx`` 0.1 / optimum 2.1) requires transformers < 5, which fsdkit cannot use.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsdkit.errors import ConfigError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PROBE = ["a short example", "a slightly longer example sentence, with punctuation, to check the export",
         "one more line of text"]


def export_onnx(model_dir: str, output_dir: str, *, opset: int = 17, atol: float = 1e-4) -> dict[str, Any]:
    """Export ``model_dir`` to ``output_dir/model.onnx`` (plus config and tokenizer) and check its logits."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("fsdkit export needs onnxruntime: pip install onnxruntime onnx") from None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fsdkit.models import check_model_folder

    folder = check_model_folder(model_dir, option="model")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    sample = tokenizer(PROBE[:2], padding=True, return_tensors="pt")
    names = [name for name in INPUT_NAMES if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    path = out / "model.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-level conditions of the attention code
        torch.onnx.export(model, tuple(sample[name] for name in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)

    probe = tokenizer(PROBE, padding=True, return_tensors="pt")  # other shapes than the traced ones, with padding
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {name: probe[name].numpy() for name in names})[0]
    with torch.no_grad():
        torch_logits = model(**{name: probe[name] for name in names}).logits.numpy()
    difference = float(np.abs(onnx_logits - torch_logits).max())
    if not difference <= atol:
        raise ConfigError(f"the ONNX export of {model_dir} differs from PyTorch by {difference:.3g} (> {atol})")
    return {"model": str(model_dir), "output": str(path), "opset": opset, "max_abs_logit_difference": difference}
