"""GLUE metrics: accuracy, F1 (positive class 1), Matthews correlation, Pearson and Spearman correlation.

scikit-learn and scipy are imported when a metric is computed, which keeps ``import fsdkit.data`` lighter.
"""

from __future__ import annotations

import numpy as np

from fsdkit.data.tasks import TaskSpec, get_task
from fsdkit.errors import DataError


def correlation(kind: str, x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson or Spearman correlation of ``x`` and ``y``; None where it is undefined (a constant side)."""
    import warnings

    from scipy.stats import pearsonr, spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float((pearsonr if kind == "pearson" else spearmanr)(x, y)[0])
    return None if np.isnan(value) else value


def _as_array(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (bfloat16 has no numpy dtype)
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    return np.asarray(values)


def compute_metrics(task: str | TaskSpec, predictions, references) -> dict[str, float]:
    """Score ``predictions`` against ``references`` with the task's GLUE metrics.

    Args:
        task: task name or :class:`TaskSpec`; the returned keys are ``task.metric_names``.
        predictions: classification — logits ``N×C`` (argmax is taken) or class ids ``N``;
            regression — scores ``N×1`` or ``N``. Numpy arrays, lists or tensors.
        references: class ids or gold scores, length ``N``.

    Returns:
        ``{"accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman"}`` as applicable, Python floats in the natural
        scale of each metric (accuracy in [0, 1], not percent). F1 is the F1 of class 1 (MRPC, QQP).
        Degenerate inputs do not fail: MCC is 0 for constant predictions, and Pearson / Spearman are
        0.0 (not NaN) when predictions or references are constant.
    """
    spec = get_task(task)
    preds = _as_array(predictions)
    refs = _as_array(references).reshape(-1)
    if spec.is_regression:
        if preds.ndim == 2 and preds.shape[1] == 1:
            preds = preds[:, 0]
        if preds.ndim != 1:
            raise DataError(f"{spec.name} predictions must have shape (N,) or (N, 1), got {preds.shape}")
        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
    else:
        if preds.ndim == 2:
            if preds.shape[1] != spec.num_labels:
                raise DataError(f"{spec.name} logits must have shape (N, {spec.num_labels}), got {preds.shape}")
            preds = preds.argmax(axis=-1)
        elif preds.ndim != 1:
            raise DataError(f"{spec.name} predictions must be logits (N, C) or class ids (N,), got {preds.shape}")
        preds, refs = preds.astype(np.int64), refs.astype(np.int64)
    if len(preds) != len(refs):
        raise DataError(f"{len(preds)} predictions but {len(refs)} references")
    if len(refs) == 0:
        raise DataError("no predictions to score")

    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    results: dict[str, float] = {}
    for name in spec.metric_names:
        if name == "accuracy":
            results[name] = float(accuracy_score(refs, preds))
        elif name == "f1":
            results[name] = float(f1_score(refs, preds, pos_label=1, average="binary", zero_division=0))
        elif name == "macro_f1":
            results[name] = float(f1_score(refs, preds, average="macro", zero_division=0))
        elif name == "mcc":
            results[name] = float(matthews_corrcoef(refs, preds))
        else:
            value = correlation(name, preds, refs)
            results[name] = 0.0 if value is None else value  # a constant predictor: no correlation
    return results
