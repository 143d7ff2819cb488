"""Similarity measures by name, and how a measure becomes a loss.

A *similarity* (CKA variants; 1 = identical structure) becomes ``−log(s̄ + ε)`` (the FSD paper's form,
default) or ``1 − s̄``, where ``s̄`` is the mean over the view's row sets (e.g. over the samples of a batch
for the intra-feature view). A *distance* (Procrustes, Gram) is averaged and used as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.losses import similarities


@dataclass(frozen=True)
class Measure:
    name: str
    fn: Callable[..., Tensor]
    is_similarity: bool


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("linear_cka", similarities.linear_cka, True),
        Measure("rbf_cka", similarities.rbf_cka, True),
        Measure("debiased_cka", similarities.debiased_cka, True),
        Measure("procrustes", similarities.procrustes_distance, False),
        Measure("gram", similarities.gram_distance, False),
    )
}
LOSS_FORMS = ("neg_log", "one_minus")


def get_measure(name: str) -> Measure:
    if name not in MEASURES:
        raise ConfigError(f"unknown similarity {name!r}; choose one of {', '.join(MEASURES)}")
    return MEASURES[name]


def check_loss_form(form: str) -> str:
    if form not in LOSS_FORMS:
        raise ConfigError(f"unknown loss form {form!r}; choose one of {', '.join(LOSS_FORMS)}")
    return form


def measure_loss(values: Tensor, measure: Measure, form: str = "neg_log", eps: float = 1e-8) -> Tensor:
    """Turn per-set measure values (any shape) into a scalar loss (see module docstring)."""
    mean = values.mean()
    if not measure.is_similarity:
        return mean
    if form == "neg_log":
        return -torch.log(mean.clamp_min(0.0) + eps)
    return 1.0 - mean
