"""Restoration rate of the teacher's predictions (FSD paper, section 5.2.1, Fig. 3).

The teacher's dev-set predictions are taken as the ground truth and a model's predictions are scored against
them, so the numbers say how faithfully the model reproduces the teacher, not how well it solves the task:

- binary tasks (positive class = 1), with TP/FP/FN counted against the teacher's labels:
  ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``f1 = 2 P R / (P + R)``,
  ``agreement = mean(model == teacher)``;
- multi-class tasks: ``agreement`` (accuracy of the model against the teacher's labels);
- regression tasks: ``pearson`` and ``spearman`` correlation between the model's and the teacher's scores.

Empty denominators follow the "nothing to get wrong" convention: a model that predicts no positive has
precision 1 (no false positive); when the teacher predicts no positive, recall is 1 (nothing to miss); F1 is
1 only when both predict no positive at all. A correlation with a constant side is undefined and reported
as ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fsdkit.data.metrics import correlation

BINARY_METRICS = ("precision", "recall", "f1", "agreement")
MULTICLASS_METRICS = ("agreement",)
REGRESSION_METRICS = ("pearson", "spearman")


def restoration_metric_names(task: Any) -> tuple[str, ...]:
    """The metrics :func:`restoration_rate` returns for ``task`` (an object with ``is_regression``, ``num_labels``)."""
    if task.is_regression:
        return REGRESSION_METRICS
    return BINARY_METRICS if task.num_labels == 2 else MULTICLASS_METRICS


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of predictions, got shape {arr.shape}")
    return arr


def _binary_scores(teacher: np.ndarray, model: np.ndarray) -> dict[str, float | None]:  # restoration_rate's shape
    t_pos = teacher == 1
    m_pos = model == 1
    tp = int(np.sum(t_pos & m_pos))
    fp = int(np.sum(~t_pos & m_pos))
    fn = int(np.sum(t_pos & ~m_pos))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "agreement": float(np.mean(teacher == model)),
    }


def restoration_rate(teacher_predictions: Any, model_predictions: Any, task: Any) -> dict[str, float | None]:
    """Score ``model_predictions`` against ``teacher_predictions`` taken as the ground truth.

    Args:
        teacher_predictions, model_predictions: 1-D arrays of length n — class ids (ints in
            ``0..num_labels-1``) for classification tasks, scores for regression tasks.
        task: an object with ``is_regression`` and ``num_labels`` (e.g. :class:`fsdkit.data.TaskSpec`).

    Returns:
        ``{"precision", "recall", "f1", "agreement"}`` for binary tasks, ``{"agreement"}`` for multi-class
        tasks, ``{"pearson", "spearman"}`` for regression (``None`` when a side is constant), all in the
        order of :func:`restoration_metric_names`.
    """
    teacher = _as_1d(teacher_predictions, "teacher_predictions")
    model = _as_1d(model_predictions, "model_predictions")
    if teacher.shape != model.shape:
        raise ValueError(f"teacher and model predictions differ in length: {teacher.shape[0]} vs {model.shape[0]}")
    if teacher.size == 0:
        raise ValueError("no predictions to compare")
    if task.is_regression:
        t, m = teacher.astype(np.float64), model.astype(np.float64)
        return {"pearson": correlation("pearson", t, m), "spearman": correlation("spearman", t, m)}
    for name, arr in (("teacher_predictions", teacher), ("model_predictions", model)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name}: expected integer class ids for a classification task, got dtype {arr.dtype}")
        bad = arr[(arr < 0) | (arr >= task.num_labels)]
        if bad.size:
            raise ValueError(f"{name}: class id {int(bad[0])} outside 0..{task.num_labels - 1}")
    if task.num_labels == 2:
        return _binary_scores(teacher, model)
    return {"agreement": float(np.mean(teacher == model))}
