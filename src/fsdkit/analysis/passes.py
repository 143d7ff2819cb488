"""The analyses' model passes: one inference pass per model over the dev split, and what is measured on it.

:func:`model_pass` collects each model's predictions and penultimate-layer token features (and times a plain
pass for inference throughput); :func:`pool` cuts the samples into the CKA heat maps' mini-batches;
:func:`dev_relations` measures the relation differences of a model against the teacher. Each example is one
row for the inter-feature analyses: its token vectors flattened, padding zeroed; each mini-batch is padded to
its longest example, which gives exactly the values of padding the whole split to one fixed length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from fsdkit.analysis.complexity import count_parameters, inference_throughput
from fsdkit.analysis.relations import METRICS, relation_difference
from fsdkit.features import FeatureRequest, forward_features
from fsdkit.run_record import RunRecord


@dataclass
class ModelPass:
    """What one pass of a model over the dev split gives the analyses."""

    name: str
    path: str
    predictions: np.ndarray  # n class ids, or n scores for regression
    samples: list[Tensor]  # n tensors L_k × D: penultimate-layer vectors of the real tokens
    token_ids: list[Tensor]  # n tensors L_k: the real tokens' ids
    num_layers: int
    hidden_size: int
    parameters: int
    inference_examples_per_second: float
    run_info: RunRecord | None  # the model folder's run record, if it has one

    @property
    def train_samples_per_second(self) -> float | None:
        """The model's training throughput from its run record (None without one)."""
        return self.run_info.train_samples_per_second if self.run_info else None

    @property
    def method(self) -> str | None:
        """The method that trained the model, from its run record (None without one)."""
        return self.run_info.method if self.run_info else None


def model_pass(name, path, spec, dataset, *, batch_size, max_length, device, throughput_batches, progress) -> ModelPass:
    from torch.utils.data import DataLoader

    from fsdkit.data import encode_dataset, make_collator
    from fsdkit.models import load_classifier

    model, tokenizer = load_classifier(path, spec)
    model.to(device).eval()
    encoded = encode_dataset(dataset, tokenizer, spec, max_length=max_length)
    loader = DataLoader(encoded, batch_size=batch_size, shuffle=False, collate_fn=make_collator(tokenizer))
    predictions, samples, token_ids = [], [], []
    request = FeatureRequest(hidden_states=True)
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{name}: features", disable=not progress, leave=False):
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            features = forward_features(model, batch, request)
            hidden = features.hidden("penultimate").float().cpu()
            mask = features.attention_mask.bool().cpu()
            ids = batch["input_ids"].cpu()
            logits = features.logits.float().cpu()
            predictions.append(logits[:, 0] if spec.is_regression else logits.argmax(dim=-1))
            for k in range(hidden.shape[0]):
                samples.append(hidden[k, mask[k]])
                token_ids.append(ids[k, mask[k]])
        num_layers = features.num_layers
    throughput = inference_throughput(model, loader, max_batches=throughput_batches)
    result = ModelPass(
        name=name,
        path=str(path),
        predictions=torch.cat(predictions).numpy(),
        samples=samples,
        token_ids=token_ids,
        num_layers=num_layers,
        hidden_size=samples[0].shape[-1],
        parameters=count_parameters(model),
        inference_examples_per_second=throughput,
        run_info=RunRecord.read(path),
    )
    del model
    return result


def _padded(samples: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad L_k × D samples to b × L_max × D, with the b × L_max mask of real tokens."""
    length = max(s.shape[0] for s in samples)
    out = samples[0].new_zeros(len(samples), length, samples[0].shape[-1])
    mask = torch.zeros(len(samples), length, dtype=torch.bool)
    for k, s in enumerate(samples):
        out[k, : s.shape[0]] = s
        mask[k, : s.shape[0]] = True
    return out, mask


def _rows(samples: Sequence[Tensor]) -> Tensor:
    """b × (L_max · D) flattened rows, padding zeroed."""
    padded, _ = _padded(samples)
    return padded.reshape(padded.shape[0], -1)


def pool(samples: Sequence[Tensor], batch_size: int, n_batches: int):
    for p in range(n_batches):
        yield _rows(samples[p * batch_size : (p + 1) * batch_size])


def dev_relations(model: ModelPass, teacher: ModelPass, batch_size: int, n_batches: int) -> dict[str, Any]:
    """The four relation differences of ``model`` vs the teacher on the dev split (see the module docstring)."""
    values: dict[str, Any] = {}
    for metric in METRICS:
        per_batch = [
            relation_difference(
                _rows(model.samples[p * batch_size : (p + 1) * batch_size]),
                _rows(teacher.samples[p * batch_size : (p + 1) * batch_size]),
                level="inter",
                metric=metric,
            )
            for p in range(n_batches)
        ]
        values[f"inter_{metric}"] = float(np.mean(per_batch))
    same_tokens = len(model.token_ids) == len(teacher.token_ids) and all(
        torch.equal(a, b) for a, b in zip(model.token_ids, teacher.token_ids, strict=True)
    )
    if not same_tokens:
        values["intra_reason"] = "the model and the teacher tokenize the dev examples differently"
        for metric in METRICS:
            values[f"intra_{metric}"] = None
        return values
    n = len(model.samples)
    for metric in METRICS:
        total = 0.0
        for start in range(0, n, batch_size):
            s, mask = _padded(model.samples[start : start + batch_size])
            t, _ = _padded(teacher.samples[start : start + batch_size])
            total += relation_difference(s, t, mask, level="intra", metric=metric) * s.shape[0]
        values[f"intra_{metric}"] = total / n
    return values
