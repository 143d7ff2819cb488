"""Relation differences between student and teacher features (FSD paper eq. 12–13, Fig. 6, Table 7).

A relation d(u, v) between two feature vectors is either the Euclidean distance ``‖u − v‖₂`` or the cosine
similarity ``⟨u, v⟩ / (‖u‖ ‖v‖)``; each model's relations are computed in its own feature space, so the
widths D_S and D_T may differ.

- **inter** (eq. 12), over the B samples of a batch. Each sample is one row: its B × L × D token features
  flattened with padding zeroed (or an already pooled B × D row)::

      R_inter = mean_{i ≠ j} | d(s_i, s_j) − d(t_i, t_j) |

- **intra** (eq. 13), over the real tokens of each sample b (``T_b`` = its token positions)::

      R_intra = mean_b  mean_{k ≠ l ∈ T_b} | d(s_bk, s_bl) − d(t_bk, t_bl) |

  Padding positions are excluded, so the value does not depend on the padding amount; samples with fewer
  than two real tokens have no pair and are skipped.

The diagonal pairs (i = j, k = l) are excluded: their difference is always 0 for both relations, so
including them would only shrink the mean by a factor that depends on the batch or sentence length.
Lower is better (rank 1 = smallest difference).

:class:`RelationTracker` records the four values over training steps; :func:`relation_rank_table` ranks
several runs at their last recorded step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor
from transformers import TrainerCallback

LEVELS = ("inter", "intra")
METRICS = ("euclidean", "cosine")
RECORD_KEYS = ("inter_euclidean", "inter_cosine", "intra_euclidean", "intra_cosine")
HISTORY_FILENAME = "relation_history.json"
HISTORY_FORMAT = "fsdkit-relation-history"


def _relation_matrix(x: Tensor, metric: str) -> Tensor:
    """Pairwise relations among the rows of x (..., n, d) → (..., n, n), float64."""
    x = x.to(torch.float64)
    if metric == "euclidean":
        sq = (x * x).sum(-1)
        d2 = sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * (x @ x.transpose(-1, -2))
        return d2.clamp_min(0.0).sqrt()
    if metric == "cosine":
        unit = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
        return unit @ unit.transpose(-1, -2)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _rows(x: Tensor, mask: Tensor | None, name: str) -> Tensor:
    if x.dim() == 2:
        if mask is not None:
            raise ValueError(f"{name}: a mask applies to B × L × D token features, not to pooled B × D rows")
        return x
    if x.dim() == 3:
        if mask is not None:
            x = x * mask.to(x.dtype).unsqueeze(-1)
        return x.reshape(x.shape[0], -1)
    raise ValueError(f"{name}: expected B × D rows or B × L × D token features, got shape {tuple(x.shape)}")


def _check_mask(mask: Tensor | None, shape: torch.Size) -> Tensor | None:
    if mask is None or len(shape) != 3:
        return mask
    if mask.shape != shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the features' B × L = {tuple(shape[:2])}")
    return mask.bool()


def _inter(student: Tensor, teacher: Tensor, mask: Tensor | None, metric: str) -> float:
    s_rows = _rows(student, mask, "student")
    t_rows = _rows(teacher, mask, "teacher")
    n = s_rows.shape[0]
    if t_rows.shape[0] != n:
        raise ValueError(f"student and teacher have different batch sizes: {n} vs {t_rows.shape[0]}")
    if n < 2:
        raise ValueError("the inter-feature relation difference needs at least 2 samples")
    diff = (_relation_matrix(s_rows, metric) - _relation_matrix(t_rows, metric)).abs()
    upper = torch.triu_indices(n, n, offset=1)
    return float(diff[upper[0], upper[1]].mean())


def _intra(student: Tensor, teacher: Tensor, mask: Tensor | None, metric: str) -> float:
    if student.dim() != 3 or teacher.dim() != 3:
        raise ValueError("the intra-feature relation difference needs B × L × D token features for both models")
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"student and teacher token features differ in B × L: {tuple(student.shape[:2])} vs "
            f"{tuple(teacher.shape[:2])} (intra relations pair token k of both models: same tokenizer needed)"
        )
    b, length = student.shape[:2]
    real = torch.ones(b, length, dtype=torch.bool, device=student.device) if mask is None else mask.to(student.device)
    pairs = real.unsqueeze(-1) & real.unsqueeze(-2)
    pairs &= ~torch.eye(length, dtype=torch.bool, device=student.device)
    diff = (_relation_matrix(student, metric) - _relation_matrix(teacher.to(student.device), metric)).abs()
    counts = pairs.sum(dim=(1, 2))
    has_pairs = counts > 0
    if not bool(has_pairs.any()):
        raise ValueError("no sample has two real tokens: the intra-feature relation difference is undefined")
    per_sample = (diff * pairs).sum(dim=(1, 2))[has_pairs] / counts[has_pairs]
    return float(per_sample.mean())


def relation_difference(
    student: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    *,
    level: str,
    metric: str,
) -> float:
    """Mean absolute difference between the student's and the teacher's pairwise relations.

    Args:
        student: B × L × D_S token features (or B × D_S pooled rows, inter level only).
        teacher: B × L × D_T token features (or B × D_T pooled rows).
        mask: B × L, 1/True for real tokens (None = all real); padding is zeroed (inter) or excluded (intra).
        level: ``"inter"`` (sample pairs of the batch, eq. 12) or ``"intra"`` (token pairs within each
            sample, eq. 13).
        metric: ``"euclidean"`` (distance) or ``"cosine"`` (similarity).

    Returns:
        The mean over pairs i ≠ j (see the module docstring) as a Python float; 0 for identical features.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    with torch.no_grad():
        student = student.detach()
        teacher = teacher.detach()
        if level == "inter":
            return _inter(student, teacher.to(student.device), _check_mask(mask, student.shape), metric)
        return _intra(student, teacher, _check_mask(mask, student.shape), metric)


def relation_differences(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """All four values ``{inter,intra}_{euclidean,cosine}`` for B × L × D student and teacher features."""
    return {
        f"{level}_{metric}": relation_difference(student, teacher, mask, level=level, metric=metric)
        for level in LEVELS
        for metric in METRICS
    }


class RelationTracker(TrainerCallback):
    """Relation differences between student and teacher over training steps.

    The training loop, which holds both models' hidden states, calls :meth:`update` when
    :meth:`should_update` says so (every ``every_n_steps`` optimisation steps)::

        if tracker.should_update(step):
            tracker.update(step, student_hidden, teacher_hidden, attention_mask)

    As a ``transformers.TrainerCallback`` (pass it in ``callbacks=[tracker]``) it writes
    ``<args.output_dir>/relation_history.json`` at the end of training; :meth:`to_json` writes it anywhere.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be ≥ 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.records: list[dict[str, float]] = []

    def should_update(self, step: int) -> bool:
        """True on step 0 and every ``every_n_steps`` steps after."""
        return step % self.every_n_steps == 0

    def update(self, step: int, student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor | None) -> dict:
        """Record the four relation differences of one batch (B × L × D_S, B × L × D_T, mask B × L)."""
        record = {"step": int(step), **relation_differences(student_hidden, teacher_hidden, mask)}
        self.records.append(record)
        return record

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": HISTORY_FORMAT, "every_n_steps": self.every_n_steps, "records": self.records}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> RelationTracker:
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read relation history {path}: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != HISTORY_FORMAT:
            raise ValueError(f'{path} is not a relation history (expected "format": "{HISTORY_FORMAT}")')
        tracker = cls(int(payload.get("every_n_steps", 1)))
        for index, record in enumerate(payload.get("records", [])):
            missing = [key for key in ("step", *RECORD_KEYS) if key not in record]
            if missing:
                raise ValueError(f"{path}: record {index} lacks {missing}")
            tracker.records.append(record)
        return tracker

    def on_train_end(self, args, state, control, **kwargs):
        self.to_json(Path(args.output_dir) / HISTORY_FILENAME)
        return control


def rank_values(values: Mapping[str, Mapping[str, float]], keys: Sequence[str] = RECORD_KEYS) -> list[dict[str, Any]]:
    """Rank runs per key (rank 1 = smallest value; ties share the average rank) and by their mean rank.

    Args:
        values: run name → {key: relation difference}.

    Returns:
        rows ``{"run", "values", "ranks", "mean_rank"}`` sorted by mean rank (then name).
    """
    names = list(values)
    ranks = {key: rankdata([float(values[name][key]) for name in names], method="average") for key in keys}
    rows = []
    for index, name in enumerate(names):
        run_ranks = {key: float(ranks[key][index]) for key in keys}
        rows.append(
            {
                "run": name,
                "values": {key: float(values[name][key]) for key in keys},
                "ranks": run_ranks,
                "mean_rank": float(np.mean(list(run_ranks.values()))),
            }
        )
    rows.sort(key=lambda row: (row["mean_rank"], row["run"]))
    return rows


def relation_rank_table(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Rank runs by their relation differences at their last recorded step (paper Table 7).

    Args:
        histories: run name → records (``{"step", "inter_euclidean", ...}``, as kept by :class:`RelationTracker`).

    Returns:
        ``{"metrics": RECORD_KEYS, "rows": [{"run", "step", "values", "ranks", "mean_rank"}]}`` (see
        :func:`rank_values`); runs without records are left out.
    """
    last = {name: records[-1] for name, records in histories.items() if records}
    rows = rank_values(last) if last else []
    for row in rows:
        row["step"] = int(last[row["run"]]["step"])
    return {"metrics": list(RECORD_KEYS), "rows": rows}


def finite_records(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Drop records with a non-finite value (a diverged step) so plots and ranks stay defined."""
    return [dict(r) for r in records if all(math.isfinite(float(r[key])) for key in RECORD_KEYS)]
