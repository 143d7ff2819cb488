"""Mean (std) over seeds and the one-sided Welch test of a method against the best other (FSD paper Tables 2–3).

A run record is ``{"task", "method", "seed", "metrics": {name: value}}``. Per task × method, each metric is
summarised as the mean and the sample standard deviation (ddof = 1) over seeds.

Significance (paper section 5.1.1): with μ_B the mean of the best other method (highest mean of the metric
on the task; every task metric — accuracy, F1, MCC, Pearson, Spearman — is higher-is-better) and μ_M the
method's mean, H0: μ_M = μ_B is tested with Welch's unequal-variance t statistic::

    t = (mean(a) − mean(b)) / sqrt(s_a²/n_a + s_b²/n_b)
    ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))

right-tailed (H1: μ_M > μ_B) when μ_M ≥ μ_B, else left-tailed (H1: μ_M < μ_B), as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from fsdkit.run_record import RUN_RECORD, RunRecord


def _metric_values(records: Iterable[Mapping[str, Any]], task: str, method: str, metric: str) -> list[float]:
    return [
        float(r["metrics"][metric])
        for r in records
        if r["task"] == task and r["method"] == method and r["metrics"].get(metric) is not None
    ]


def summarize_runs(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof = 1) of every metric per task × method, in first-seen order.

    Returns:
        rows ``{"task", "method", "seeds": [...], "metrics": {name: {"mean", "std", "n"}}}``; ``std`` is None
        for a metric seen in a single run.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        for key in ("task", "method", "metrics"):
            if key not in r:
                raise ValueError(f"run record lacks {key!r}: {dict(r)}")
        groups.setdefault((r["task"], r["method"]), []).append(r)
    rows = []
    for (task, method), group in groups.items():
        names = list(dict.fromkeys(name for r in group for name in r["metrics"]))
        metrics = {}
        for name in names:
            values = _metric_values(group, task, method, name)
            if not values:
                continue
            metrics[name] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                "n": len(values),
            }
        rows.append({"task": task, "method": method, "seeds": [r.get("seed") for r in group], "metrics": metrics})
    return rows


def welch_one_sided(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Welch p-value for H1: mean(a) > mean(b) (``scipy.stats.ttest_ind``, ``equal_var=False``).

    Raises ``ValueError`` when the test is undefined: fewer than 2 values on a side, or no variance on
    either side (the t statistic would divide by zero).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's test needs at least 2 values per side, got {x.size} and {y.size}")
    if np.var(x) == 0 and np.var(y) == 0:
        raise ValueError("Welch's test is undefined: both samples have zero variance")
    result = stats.ttest_ind(x, y, equal_var=False, alternative="greater")
    return float(result.pvalue)


def significance_against_best(
    records: Sequence[Mapping[str, Any]],
    task: str,
    method: str,
    metric: str,
    candidates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Welch test of ``method`` against the other method with the best mean ``metric`` on ``task``.

    Args:
        records: run records (see the module docstring).
        candidates: the methods eligible as "best other" (default: every other method with the metric).

    Returns:
        ``{"task", "method", "metric", "mean", "n", "best_other", "best_other_mean", "best_other_n",
        "alternative" ("greater"/"less"), "p_value", "reason"}``; ``p_value`` is None and ``reason`` says why
        when the test cannot be run (a single seed, no variance, no other method); ``reason`` is "" otherwise.
    """
    result: dict[str, Any] = {
        "task": task,
        "method": method,
        "metric": metric,
        "mean": None,
        "n": 0,
        "best_other": None,
        "best_other_mean": None,
        "best_other_n": 0,
        "alternative": None,
        "p_value": None,
        "reason": "",
    }
    values = _metric_values(records, task, method, metric)
    result["n"] = len(values)
    if not values:
        result["reason"] = f"no run of {method!r} on {task!r} reports {metric!r}"
        return result
    result["mean"] = float(np.mean(values))
    others = {r["method"] for r in records if r["task"] == task and r["method"] != method}
    if candidates is not None:
        others &= set(candidates)
    means = {m: float(np.mean(v)) for m in others if (v := _metric_values(records, task, m, metric))}
    if not means:
        result["reason"] = f"no other method on {task!r} reports {metric!r}"
        return result
    best = max(sorted(means), key=means.__getitem__)
    best_values = _metric_values(records, task, best, metric)
    result.update(best_other=best, best_other_mean=means[best], best_other_n=len(best_values))
    greater = result["mean"] >= means[best]
    result["alternative"] = "greater" if greater else "less"
    try:
        p = welch_one_sided(values, best_values) if greater else welch_one_sided(best_values, values)
    except ValueError as exc:
        result["reason"] = f"{method} ({len(values)} runs) vs {best} ({len(best_values)} runs): {exc}"
        return result
    if not math.isfinite(p):
        result["reason"] = f"Welch's test gave a non-finite p-value for {method} vs {best}"
        return result
    result["p_value"] = p
    return result


def _split_metrics(metrics: Mapping[str, Any], split: str | None, where: Path) -> dict[str, float]:
    """``{metric: value}``, or ``{split: {metric: value}}`` reduced to one split (see :func:`load_run_record`)."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    if not nested:
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if split is None:
        if len(nested) > 1:
            raise ValueError(f"{where}: metrics of several splits {sorted(nested)}; choose one with split=")
        split = next(iter(nested))
    if split not in nested:
        raise ValueError(f"{where}: no metrics for split {split!r} (has {sorted(nested)})")
    return _split_metrics(nested[split], None, where)


def load_run_record(run_dir: str | Path, split: str | None = None) -> dict[str, Any]:
    """One run record from a training output folder's ``fsdkit_run.json``.

    ``task``, ``method`` and ``seed`` are read from it, the dev metrics from its ``"metrics"`` object: either
    ``{metric: value}`` or ``{split: {metric: value}}``, reduced to ``split`` (needed only when the run
    reports several splits, as MNLI does).
    """
    run_dir = Path(run_dir)
    info = RunRecord.read(run_dir)
    where = run_dir / RUN_RECORD
    if info is None:
        raise ValueError(f"{run_dir} has no {RUN_RECORD}: not an fsdkit training output folder")
    missing = [key for key in ("task", "method", "metrics") if not getattr(info, key)]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    if not isinstance(info.metrics, Mapping):
        raise ValueError(f'{where}: "metrics" must be an object')
    return {
        "task": str(info.task),
        "method": str(info.method),
        "seed": info.seed,
        "metrics": _split_metrics(info.metrics, split, where),
        "run_dir": str(run_dir),
    }
