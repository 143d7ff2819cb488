"""fsdkit — feature structure distillation (CKA-based) for BERT-family models.

Python API::

    from fsdkit import finetune, build_memory, distill, evaluate, analyze, linear_cka
"""

__version__ = "0.1.0"

from fsdkit.losses.similarities import debiased_cka, gram_distance, linear_cka, procrustes_distance, rbf_cka  # noqa: E402
from fsdkit.training.run import build_memory, distill, finetune  # noqa: E402
from fsdkit.evaluation import evaluate  # noqa: E402
from fsdkit.analysis.run import analyze  # noqa: E402

__all__ = [
    "__version__",
    "analyze",
    "build_memory",
    "debiased_cka",
    "distill",
    "evaluate",
    "finetune",
    "gram_distance",
    "linear_cka",
    "procrustes_distance",
    "rbf_cka",
]
