"""fsdkit — feature structure distillation (CKA-based) for BERT-family models.

Python API::

    from fsdkit import finetune, build_memory, distill, evaluate, predict, analyze, linear_cka

The names are imported on first use (module ``__getattr__``), so ``import fsdkit`` and ``fsdkit --help`` do not
load transformers, the Trainer or matplotlib.
"""

from __future__ import annotations

import importlib

from fsdkit._version import __version__

_LAZY = {
    "analyze": "fsdkit.analysis.run",
    "build_memory": "fsdkit.training.teacher_memory",
    "debiased_cka": "fsdkit.losses.similarities",
    "distill": "fsdkit.training.run",
    "evaluate": "fsdkit.evaluation",
    "finetune": "fsdkit.training.run",
    "gram_distance": "fsdkit.losses.similarities",
    "linear_cka": "fsdkit.losses.similarities",
    "predict": "fsdkit.prediction",
    "procrustes_distance": "fsdkit.losses.similarities",
    "rbf_cka": "fsdkit.losses.similarities",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fsdkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
