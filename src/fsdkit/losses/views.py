"""Views: which paired row matrices a structure loss compares.

- intra (tokens within a sample): for sample b, the real tokens of the chosen layer,
  ``X_b = H_S[b, mask_b]`` (L_b × D_S) against ``Y_b = H_T[b, mask_b]`` (L_b × D_T). Returned batched as
  B × L × D with the attention mask, so padding never enters (the similarity excludes masked rows).
- local (samples within a batch): each sample is one row — ``vec(H[b] ⊙ mask_b)`` (``flatten``; zero columns
  from padding change no inner product), the [CLS] vector (``cls``) or the masked mean (``mean``).
- global (samples against memory centroids): rows as in :func:`fsdkit.memory.feature_rows`, compared with
  the centroids inside :class:`fsdkit.losses.terms.memory.GlobalMemoryStructure`.
"""

from __future__ import annotations

from torch import Tensor

from fsdkit.errors import ConfigError
from fsdkit.feature_rows import POOLINGS
from fsdkit.features import Features

VIEWS = ("intra", "local")


def check_view(view: str, pooling: str) -> None:
    if view not in VIEWS:
        raise ConfigError(
            f"unknown view {view!r}; choose one of {', '.join(VIEWS)} (the global view is the 'memory' loss)"
        )
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")


def intra_rows(student: Features, teacher: Features, layer_student, layer_teacher) -> tuple[Tensor, Tensor, Tensor]:
    """(B × L × D_S, B × L × D_T, mask B × L): token rows per sample."""
    return student.hidden(layer_student), teacher.hidden(layer_teacher), student.attention_mask


def local_rows(
    student: Features, teacher: Features, layer_student, layer_teacher, pooling: str = "flatten"
) -> tuple[Tensor, Tensor, None]:
    """(B × d_S, B × d_T, None): one row per sample of the batch.

    Each side uses its own mask, so this view also works for teacher and student with different tokenizers.
    """
    return student.rows(layer_student, pooling), teacher.rows(layer_teacher, pooling), None
