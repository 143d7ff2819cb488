"""The analysis report's text: its sections, tables and figures, from the results dictionary of
:func:`fsdkit.analysis.run.analyze`."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

from fsdkit.analysis.plots import RELATION_TITLES, cka_heatmaps, relation_curves, restoration_bar_chart
from fsdkit.analysis.relations import RECORD_KEYS, rank_values
from fsdkit.analysis.report import ReportFigure, Section, Table, format_value
from fsdkit.analysis.restoration import restoration_metric_names
from fsdkit.run_record import RUN_RECORD

TEACHER_SHORT = "T"  # the teacher in heat-map names: T–T, T–<model>


def report_sections(spec, results: dict[str, Any], teacher_dir: str, proposed: str) -> list[Section]:
    """The report's sections, in order: setup, dev-set scores, restoration rate, CKA heat maps, relation
    differences (on the dev set, then during training when recorded), complexity, and the runs over seeds."""
    students = list(results["models"])[1:]
    sections = [
        _setup_section(spec, results, teacher_dir),
        _scores_section(spec, results["models"]),
        _restoration_section(spec, results["restoration"], students),
        _cka_section(spec, results["cka"], results["cka_pool"]),
        _relation_section(results, students),
    ]
    if results["relation_histories"]:
        sections.append(_history_section(spec, results))
    sections.append(_complexity_section(results["complexity"]))
    if results["runs"]["summary"] or results["runs"]["ignored_other_task"]:
        sections.append(_runs_section(spec, results["runs"], proposed))
    return sections


def _setup_section(spec, results: dict[str, Any], teacher_dir: str) -> Section:
    """The task, split and machine of the analysis, the features it reads, and the models compared."""
    return Section(
        "Setup",
        [
            f"Task {spec.name}, split {results['split']}, {results['n_examples']} examples, tokenized to at "
            f"most {results['max_length']} tokens. Teacher: {teacher_dir}. Generated {results['created']} "
            f"on {results['device']} ({platform.platform()}).",
            "Features are the penultimate-layer token vectors (hidden_states[N−1] of an N-layer model); for "
            "the inter-feature analyses each example is one row, its token vectors flattened with padding "
            "zeroed.",
        ],
        [
            Table(
                ["model", "folder", "layers", "hidden size", "parameters", "training method"],
                [
                    [n, m["path"], m["num_layers"], m["hidden_size"], m["parameters"], m["method"]]
                    for n, m in results["models"].items()
                ],
            )
        ],
    )


def _scores_section(spec, models: Mapping[str, Any]) -> Section:
    """Every model's dev-set metrics against the gold labels."""
    return Section(
        "Dev-set scores",
        ["Each model's predictions scored against the gold labels."],
        [
            Table(
                ["model", *spec.metric_names],
                [[n, *(m["dev_metrics"][k] for k in spec.metric_names)] for n, m in models.items()],
            )
        ],
    )


def _restoration_section(spec, restoration: Mapping[str, Any], students: Sequence[str]) -> Section:
    """How well each model restores the teacher's predictions (paper Fig. 3), as a table and a bar chart."""
    metric_names = restoration_metric_names(spec)
    if metric_names[0] == "precision":
        kind = (
            "Binary task: precision, recall and F1 of the positive class (label 1), and agreement "
            "(fraction of identical predictions)."
        )
    elif metric_names == ("agreement",):
        kind = "Multi-class task: agreement (fraction of identical predictions)."
    else:
        kind = "Regression task: Pearson and Spearman correlation with the teacher's scores."
    return Section(
        "Restoration rate of the teacher's predictions",
        ["The teacher's predictions are the ground truth (paper Fig. 3). " + kind],
        [Table(["model", *metric_names], [[n, *(restoration[n][k] for k in metric_names)] for n in students])],
        [ReportFigure("restoration.png", restoration_bar_chart(restoration, spec.name), "Restoration rate per model")],
    )


def _cka_section(spec, cka: Mapping[str, Any], pool: Mapping[str, int]) -> Section:
    """The CKA heat maps of the teacher against itself and each model (paper Fig. 4, Table 6)."""
    return Section(
        "CKA heat maps",
        [
            f"The dev split, in order, is cut into {pool['batches']} mini-batches of {pool['batch_size']} "
            f"examples ({pool['examples_left_out']} examples of an incomplete last batch left out). Pixel "
            "(i, j) is the linear CKA between the teacher's rows of mini-batch i and the model's rows of "
            "mini-batch j (paper Fig. 4); the diagonal mean is the paper's Table 6 value. T–T is the "
            "teacher against itself (diagonal of ones). The colour scale is shared by all maps.",
        ],
        [
            Table(
                ["pair", "diagonal mean", "mean over all pixels"],
                [[f"T–{n}", cka[n]["diagonal_mean"], cka[n]["mean"]] for n in cka],
            )
        ],
        [
            ReportFigure(
                "cka_heatmaps.png", cka_heatmaps({n: cka[n]["heatmap"] for n in cka}, spec.name), "CKA heat maps"
            )
        ],
    )


#: the complexity table's columns: its header, and the key of a complexity row
_COMPLEXITY_COLUMNS = (
    ("model", "method"),
    ("parameters", "parameters"),
    ("training ex/s", "train_samples_per_second"),
    ("inference ex/s", "inference_examples_per_second"),
    ("relative parameters", "relative_parameters"),
    ("relative training speed", "relative_training_speed"),
    ("relative inference speed", "relative_inference_speed"),
)


def _complexity_section(complexity: Mapping[str, Any]) -> Section:
    """Parameters and training and inference speed of every model, relative to the reference (paper Table 8)."""
    return Section(
        "Model and time complexity",
        [
            f"Relative values divide by {complexity['reference']} (paper Table 8); speeds are examples per "
            "second, higher is faster. Training speed is train_samples_per_second of the model folder's "
            f"{RUN_RECORD}; inference speed was measured in this analysis (plain forward passes over the "
            "split, first batch excluded as warm-up) and depends on the machine's load. A training-time "
            "memory (FSDG) is not part of the exported model and is not counted."
            + (f" Note: {complexity['note']}." if complexity["note"] else "")
        ],
        [
            Table(
                [header for header, _ in _COMPLEXITY_COLUMNS],
                [[row[key] for _, key in _COMPLEXITY_COLUMNS] for row in complexity["rows"]],
            )
        ],
    )


def _relation_section(results: dict[str, Any], students: Sequence[str]) -> Section:
    """Each model's relation differences from the teacher on the dev set (paper eq. 12–13), with their mean rank."""
    rel = results["relation_differences"]
    keys = [k for k in RECORD_KEYS if all(rel[n][k] is not None for n in students)]
    ranks = {row["run"]: row for row in rank_values({n: rel[n] for n in students}, keys)} if keys else {}
    reasons = sorted({f"{n}: {rel[n]['intra_reason']}" for n in students if "intra_reason" in rel[n]})
    text = [
        "Mean absolute difference between a model's and the teacher's pairwise relations (paper eq. 12–13), "
        "relation = Euclidean distance or cosine similarity, each computed in the model's own feature space; "
        "pairs i ≠ j. Inter-feature: example pairs within each CKA mini-batch, averaged over the mini-batches. "
        "Intra-feature: pairs of real tokens within each example, averaged over examples. Lower is closer to "
        "the teacher; rank 1 = smallest, ranked over the models listed."
    ]
    if reasons:
        text.append("Intra-feature values missing — " + "; ".join(reasons) + ".")
    columns = ["model", *(RELATION_TITLES[k] for k in RECORD_KEYS), "mean rank"]
    rows = [[n, *(rel[n][k] for k in RECORD_KEYS), ranks[n]["mean_rank"] if n in ranks else None] for n in students]
    return Section("Relation differences on the dev set", text, [Table(columns, rows)])


def _history_section(spec, results: dict[str, Any]) -> Section:
    """The relation differences the trainer recorded during training (paper Fig. 6, Table 7)."""
    histories = results["relation_histories"]
    table = results["relation_history_ranks"]
    rows = [
        [
            row["run"],
            row["step"],
            *(f"{format_value(row['values'][k])} ({row['ranks'][k]:g})" for k in RECORD_KEYS),
            row["mean_rank"],
        ]
        for row in table["rows"]
    ]
    return Section(
        "Relation differences during training",
        [
            "Recorded by the trainer on training batches (relation_history.json in each model folder; paper "
            "Fig. 6). The table gives each run's values at its last recorded step with the rank in parentheses "
            "(paper Table 7: rank 1 = smallest difference; ties share the average rank).",
        ],
        [Table(["run", "last step", *(RELATION_TITLES[k] for k in RECORD_KEYS), "mean rank"], rows)],
        [
            ReportFigure(
                "relation_history.png",
                relation_curves(histories, spec.name),
                "Relation differences over training steps",
            )
        ],
    )


def _mean_std(stat: Mapping[str, Any] | None) -> str | None:
    """``mean (std, n=N)`` of a metric over seeds; ``mean (n=1)`` for a single run."""
    if stat is None:
        return None
    if stat["std"] is None:
        return f"{stat['mean']:.4f} (n=1)"
    return f"{stat['mean']:.4f} ({stat['std']:.4f}, n={stat['n']})"


def _runs_section(spec, runs: Mapping[str, Any], proposed: str) -> Section:
    """The dev-set scores over seeds per method, and the significance test of ``proposed``."""
    summary = runs["summary"]
    rows = [
        [r["method"], len(r["seeds"]), *(_mean_std(r["metrics"].get(k)) for k in spec.metric_names)] for r in summary
    ]
    text = ["Dev-set scores over seeds: mean (sample standard deviation, number of runs)."]
    sig = runs["significance"]
    if sig is not None:
        if sig["p_value"] is None:
            text.append(f"Significance of {proposed} on {sig['metric']}: not computed — {sig['reason']}.")
        else:
            relation = ">" if sig["alternative"] == "greater" else "<"
            text.append(
                f"One-sided Welch t-test (unequal variances) of {proposed} ({sig['mean']:.4f}, {sig['n']} runs) "
                f"against the best other method {sig['best_other']} ({sig['best_other_mean']:.4f}, "
                f"{sig['best_other_n']} runs) on {sig['metric']}: H1 {proposed} {relation} {sig['best_other']}, "
                f"p = {sig['p_value']:.4g}."
            )
    if runs["ignored_other_task"]:
        text.append("Runs of other tasks left out: " + ", ".join(runs["ignored_other_task"]) + ".")
    return Section("Mean and significance over seeds", text, [Table(["method", "runs", *spec.metric_names], rows)])
