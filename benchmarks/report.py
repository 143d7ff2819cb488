"""Generate ``benchmarks/RESULTS.md`` from the suite's JSON-lines results (the FSD paper's Tables 2–3 layout).

::

    python benchmarks/report.py          # benchmark v2: results/v2.jsonl, recipe-v2.yaml, search.db, curves.jsonl → RESULTS.md
    python benchmarks/report.py --analyze mrpc --glue-dir ../shared/glue   # also (re)build the analysis report
    python benchmarks/report.py --results benchmarks/results/results.jsonl --recipe benchmarks/recipe.yaml \
        --tuning benchmarks/results/tuning.jsonl --search-db '' --curves-dir '' --regime-results '' \
        --analysis-dir benchmarks/analysis --output benchmarks/RESULTS-v1.md          # benchmark v1

Per task × method: mean (std) over seeds of every task metric (×100, sample std), the teacher's dev score, each
student's retention of the teacher's score (student mean / teacher × 100, main metric), the one-sided Welch
p-value of FSD (and of FSD-Procrustes) against the best baseline (``fsdkit.analysis.significance``), the FSD
ablation table, the dev curves per task, the regime study's curves (``curves.py``: teacher-initialised against
pretrained-layer students, choices of layers), the training throughput relative to VKD, the teachers, the recipe,
the equal-budget search (v1: the weight search of ``tune.py``), the failed runs, and a link to the analysis report
of one task (``fsdkit.analyze`` on the seed-1 models the suite keeps). The first lines of the file give the
exact command that regenerated it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from curves import curve_rows  # noqa: E402
from curves import plot as plot_regimes  # noqa: E402
from staged_search import RERUN_SUFFIX, study_progress  # noqa: E402
from suite import (  # noqa: E402
    ABLATION_METHODS,
    DEFAULT_RECIPE,
    MAJORITY,
    TABLE_METHODS,
    TABLE_TASKS,
    TEACHER,
    Suite,
    curve_points,
    flatten_metrics,
    load_recipe,
    read_records,
    recipe_output,
    seeds_for,
)

TASK_ORDER = ("mrpc", "stsb", "cola", "sick", "rte", "sst2", "wnli", "qnli", "qqp", "mnli")
BASELINES = ("nds", "vkd", "pkd", "rkd", "minilm", "internal-sid")
PROPOSED = ("fsd", "fsd-procrustes", "fsdi-minilm")
DISPLAY = {
    "nds": "nDS",
    "vkd": "VKD",
    "pkd": "PKD",
    "rkd": "RKD",
    "minilm": "MiniLM",
    "fsd": "FSD",
    "fsd-procrustes": "FSD-Procrustes",
    "fsdi-minilm": "FSDI + MiniLM",
    "fsdi": "FSDI",
    "fsdl": "FSDL",
    "fsdg": "FSDG",
    "fsdil": "FSDIL",
    "internal-sid": "Internal-SID",
    TEACHER: "Teacher",
    MAJORITY: "Majority class",
}
METRIC_DISPLAY = {"f1": "F1", "accuracy": "Acc", "mcc": "MCC", "pearson": "Pearson", "spearman": "Spearman"}


# ------------------------------------------------------------------------------------------------ selection
def latest_ok(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last ``ok`` record of every (task, method, seed) — a re-run supersedes an earlier one.

    Metrics are flattened to ``{name: value}`` (``split/name`` for tasks with several eval splits).
    """
    latest: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for r in records:
        if r.get("status") == "ok":
            latest[(r["task"], r["method"], r["seed"])] = {**r, "metrics": flatten_metrics(r.get("metrics") or {})}
    return list(latest.values())


def open_failures(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Failed runs not followed by a successful run of the same (task, method, seed)."""
    state: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for r in records:
        state[(r["task"], r["method"], r["seed"])] = dict(r)
    return [r for r in state.values() if r.get("status") == "failed"]


def teacher_finetunings(history: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per task, each fine-tuning of its teacher (``ok`` teacher records in file order; records with the same
    ``teacher_fingerprint`` are one fine-tuning, adopted again), each with ``students``: the number of ``ok`` student
    runs distilled from it — by their ``teacher_fingerprint``, or, for records written before fingerprints, the
    teacher recorded last before them (a worker records its teacher before any student of the task starts)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in history:
        if r.get("status") != "ok" or r["method"] == MAJORITY:
            continue
        runs = out.setdefault(r["task"], [])
        fingerprint = r.get("teacher_fingerprint")
        owner = next((t for t in runs if fingerprint and t["record"].get("teacher_fingerprint") == fingerprint), None)
        if r["method"] == TEACHER:
            if owner is None:
                runs.append({"record": dict(r), "students": 0})
            continue
        if owner is None and not fingerprint and runs:
            owner = runs[-1]
        if owner is not None:
            owner["students"] += 1
    return {task: runs for task, runs in out.items() if runs}


def ordered_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = set(tasks)
    return [t for t in TASK_ORDER if t in tasks] + sorted(tasks - set(TASK_ORDER))


def task_metrics(task: str) -> tuple[list[str], str]:
    """(metric names, main metric) of a task, from fsdkit's task registry."""
    from fsdkit.data import get_task

    spec = get_task(task)
    return list(spec.metric_names), spec.main_metric


# ------------------------------------------------------------------------------------------------ numbers
def summary_table(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(task, method) → metric → {"mean", "std", "n"} over seeds (``fsdkit.analysis.significance.summarize_runs``)."""
    from fsdkit.analysis.significance import summarize_runs

    return {(row["task"], row["method"]): row["metrics"] for row in summarize_runs(list(records))}


def fmt(stat: Mapping[str, Any] | None, expected_n: int | None = None) -> str:
    """``mean (std)`` in percent with two decimals; the number of seeds is appended when it is not the expected one."""
    if not stat:
        return "–"
    text = f"{100 * stat['mean']:.2f}"
    if stat.get("std") is not None:
        text += f" ({100 * stat['std']:.2f})"
    if expected_n is not None and stat.get("n") != expected_n:
        text += f" [n={stat.get('n')}]"
    return text


def seeds_cell(scores: Sequence[float]) -> str:
    """``mean ± sd (each seed's score)`` of scores already in points (no ``±`` for a single seed)."""
    spread = f" ± {statistics.stdev(scores):.2f}" if len(scores) > 1 else ""
    return f"{statistics.mean(scores):.2f}{spread} ({', '.join(f'{s:.2f}' for s in scores)})"


def significance_rows(records: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Welch one-sided test of each proposed method against the best baseline, per task (main metric)."""
    from fsdkit.analysis.significance import significance_against_best

    rows = []
    for task in tasks:
        _, main = task_metrics(task)
        for method in PROPOSED:
            if not any(r["task"] == task and r["method"] == method for r in records):
                continue
            rows.append(significance_against_best(records, task, method, main, candidates=BASELINES))
    return rows


def throughput_ratios(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(task, method) → mean training examples/s relative to VKD's on the same task."""
    import numpy as np

    speeds: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.get("train_samples_per_second") and r["method"] not in (TEACHER, MAJORITY):
            speeds.setdefault((r["task"], r["method"]), []).append(float(r["train_samples_per_second"]))
    out = {}
    for (task, method), values in speeds.items():
        base = speeds.get((task, "vkd"))
        if base:
            out[(task, method)] = float(np.mean(values) / np.mean(base))
    return out


# ------------------------------------------------------------------------------------------------ markdown
def _p_value(p: float) -> str:
    """Four decimals, or two significant digits below 1e-4 (so that a small p does not print as 0.0000)."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _significance_table(results: Sequence[Mapping[str, Any]], against: str = "Best baseline") -> list[str]:
    rows = [
        [
            s["task"],
            DISPLAY.get(s["method"], s["method"]),
            METRIC_DISPLAY.get(s["metric"], s["metric"]),
            "–" if s["mean"] is None else f"{100 * s['mean']:.2f} (n={s['n']})",
            DISPLAY.get(s["best_other"], s["best_other"] or "–"),
            "–" if s["best_other_mean"] is None else f"{100 * s['best_other_mean']:.2f} (n={s['best_other_n']})",
            s["alternative"] or "–",
            _p_value(s["p_value"]) if s["p_value"] is not None else f"– ({s['reason']})",
        ]
        for s in results
    ]
    return _table(["Task", "Method", "Metric", "Mean", against, "Its mean", "H1", "p"], rows)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _methods_present(records, candidates: Sequence[str]) -> list[str]:
    present = {r["method"] for r in records}
    extra = sorted(present - set(candidates) - set(ABLATION_METHODS) - {TEACHER, MAJORITY})
    return [m for m in candidates if m in present] + extra


def _score_table(
    tasks: Sequence[str],
    methods: Sequence[str],
    stats,
    references: Mapping[str, Mapping[str, Any]],
    expected_seeds: int | Mapping[str, int],
) -> list[str]:
    """Methods × (task, metric) table: the reference rows (teacher, majority class; one run each), then the
    methods' mean (std)."""
    header = ["Method"]
    columns: list[tuple[str, str]] = []
    for task in tasks:
        names, _ = task_metrics(task)
        for name in names:
            columns.append((task, name))
            header.append(f"{task.upper()} {METRIC_DISPLAY.get(name, name)}")
    rows = []
    for reference, runs in references.items():
        if any(t in runs for t in tasks):
            rows.append(
                [DISPLAY[reference]]
                + [
                    f"{100 * runs[t]['metrics'][m]:.2f}" if t in runs and m in runs[t]["metrics"] else "–"
                    for t, m in columns
                ]
            )
    for method in methods:
        rows.append(
            [DISPLAY.get(method, method)]
            + [fmt(stats.get((t, method), {}).get(m), seeds_for(expected_seeds, t)) for t, m in columns]
        )
    return _table(header, rows)


@dataclass
class _Tables:
    """What the sections of RESULTS.md share: the finished records and their summary over seeds, by task and
    method."""

    records: Sequence[Mapping[str, Any]]
    recipe: Mapping[str, Any]  # {} without a recipe
    expected_seeds: int | Mapping[str, int]
    ablation_seeds: int | Mapping[str, int]
    stats: dict[tuple[str, str], dict[str, dict[str, Any]]]  # see summary_table
    tasks: list[str]  # in TASK_ORDER
    core: list[str]  # the tasks of the core table
    further: list[str]  # the other tasks
    teachers: dict[str, Mapping[str, Any]]  # task → the teacher's record
    references: dict[str, dict[str, Mapping[str, Any]]]  # teacher, majority class → task → record
    students: list[Mapping[str, Any]]  # every record but the references'
    main_methods: list[str]  # the student methods of the main table, in its order

    @classmethod
    def of(cls, records, recipe, expected_seeds, ablation_seeds) -> _Tables:
        """The shared views of ``records``."""
        tasks = ordered_tasks(r["task"] for r in records)
        teachers = {r["task"]: r for r in records if r["method"] == TEACHER}
        students = [r for r in records if r["method"] not in (TEACHER, MAJORITY)]
        return cls(
            records=records,
            recipe=recipe or {},
            expected_seeds=expected_seeds,
            ablation_seeds=expected_seeds if ablation_seeds is None else ablation_seeds,
            stats=summary_table(records),
            tasks=tasks,
            core=[t for t in tasks if t in TABLE_TASKS],
            further=[t for t in tasks if t not in TABLE_TASKS],
            teachers=teachers,
            references={TEACHER: teachers, MAJORITY: {r["task"]: r for r in records if r["method"] == MAJORITY}},
            students=students,
            main_methods=_methods_present(students, TABLE_METHODS),
        )

    @property
    def student_layers(self) -> int:
        """The recipe's student layers (the first k)."""
        return self.recipe.get("student", {}).get("student_layers", 3)


def render(
    records: Sequence[Mapping[str, Any]],
    *,
    command: str,
    failures: Sequence[Mapping[str, Any]] = (),
    tuning: Sequence[Mapping[str, Any]] = (),
    recipe: Mapping[str, Any] | None = None,
    expected_seeds: int | Mapping[str, int] = 3,
    ablation_seeds: int | Mapping[str, int] | None = None,
    analysis_link: str | None = None,
    analysis: Mapping[str, Any] | None = None,
    earlier: Sequence[Mapping[str, Any]] = (),
    curve_links: Mapping[str, str] | None = None,
    search: Sequence[Mapping[str, Any]] | None = None,
    recipe_path: str = "benchmarks/recipe-v2.yaml",
    history: Sequence[Mapping[str, Any]] | None = None,
    regimes: Sequence[Mapping[str, Any]] = (),
    regime_links: Mapping[str, str] | None = None,
    search_plot_links: Mapping[str, str] | None = None,
    previous: Sequence[Mapping[str, Any]] | None = None,
    previous_labels: tuple[str, str] = ("v2", "v3"),
) -> str:
    """The RESULTS.md text for ``records`` (latest ok records; see :func:`latest_ok`).

    ``analysis`` is the ``results.json`` of the analysis report at ``analysis_link`` (its key numbers are inlined);
    ``earlier``: finished runs of an earlier recipe, not shown in the tables (counted under Provenance);
    ``curve_links``: task → the plot of its dev curves (:func:`plot_curves`); ``search``: the studies of the
    equal-budget search (:func:`search_summary`), shown instead of the weight search of ``tune.py``;
    ``ablation_seeds``: the expected seeds of the ablation cells where they differ from ``expected_seeds``;
    ``history``: every record of the current recipe in file order (the teachers' fine-tunings; default ``records``);
    ``regimes``: the regime study's curves (:func:`curves.curve_rows`), ``regime_links`` their plots (name → path);
    ``previous``: the latest ok records of an earlier benchmark, whose cells that moved are shown (labelled
    ``previous_labels``: earlier, this one).
    """
    tables = _Tables.of(records, recipe, expected_seeds, ablation_seeds)
    lines = _header(tables, command) + _main_table_section(tables) + _take_section(tables)
    if previous is not None:
        lines += comparison_section(tables.stats, summary_table(previous), previous_labels)
    lines += _curves_section(curve_links)
    if regimes:
        lines += regime_section(regimes, regime_links or {}, tables.student_layers, Path(recipe_path).name)
    lines += _retention_section(tables) + _significance_section(tables) + _ablation_section(tables)
    lines += _throughput_section(tables) + _further_tasks_section(tables)
    lines += _teachers_section(tables, history if history is not None else records)
    if recipe:
        lines += _recipe_section(tables, recipe_path)
    if search is None:
        lines += _tuning_section(tuning, tables.recipe)
    elif search and "stage" in search[0]:  # benchmark v3's staged search (staged_search.study_progress)
        lines += staged_search_section(search, search_plot_links)
    else:
        lines += search_section(search, tables.recipe)
    if analysis_link:
        lines += analysis_section(analysis_link, analysis or {})
    lines += _failures_section(failures) + _coverage_section(tables) + _provenance_section(tables, earlier, recipe_path)
    return "\n".join(lines)


def _header(tables: _Tables, command: str) -> list[str]:
    """The title, the command that generated the file, and how to read its scores."""
    student = tables.recipe.get("student", {})
    layers = tables.student_layers
    students_are = (
        f"the first {layers} layers and the classification head of the fine-tuned teacher "
        "(teacher-initialised: the paper's regime of students near their teacher)"
        if student.get("student") == "teacher"
        else f"its first {layers} layers"
    )
    expected_seeds = tables.expected_seeds
    if isinstance(expected_seeds, int):
        seeds_text = f"k ≠ {expected_seeds}"
    else:
        named = ", ".join(f"{t.upper()} {n}" for t, n in expected_seeds.items() if t != "default")
        seeds_text = f"k ≠ the task's seeds ({named}; {seeds_for(expected_seeds, '')} elsewhere)"
    return [
        f"# {tables.recipe.get('title') or 'fsdkit quality benchmark: the FSD paper' + chr(39) + 's comparison at CPU scale'}",
        "",
        "Generated from the results files by:",
        "",
        "```",
        command,
        "```",
        "",
        "Do not edit by hand. Scores are dev-set metrics ×100, **mean (std)** over seeds (sample std); `[n=k]` marks a "
        f"cell with {seeds_text} finished seeds. Teacher: the packaged all-MiniLM-L6-v2 (6 layers, 384 wide) "
        f"fine-tuned per task by the recipe below; students: {students_are}.",
        "",
    ]


def _main_table_section(tables: _Tables) -> list[str]:
    """Methods × core tasks, all metrics (paper Tables 2–3 layout), with the majority-class floor and the
    selection effect of weight-search runs adopted into the table."""
    lines = ["## Main table (paper Tables 2–3 layout)", ""]
    lines += _score_table(tables.core, tables.main_methods, tables.stats, tables.references, tables.expected_seeds)
    lines += [""]
    majority = tables.references[MAJORITY]
    if majority:
        lines += [
            "Majority class: the constant prediction of the training set's most frequent label (STS-B: its mean "
            "score, which has no correlation), scored on the same dev set (`fsdkit.evaluation.majority_baseline`)"
            " — the floor a student has to clear."
            + (
                ' Always predicting "paraphrase" scores a high F1 on MRPC, so MRPC F1 separates the students '
                "less than the other columns do."
                if "mrpc" in majority
                else ""
            ),
            "",
        ]
    adopted = sorted({(r["task"], r["seed"]) for r in tables.students if r.get("adopted_from")})
    if adopted:
        where = ", ".join(f"{task.upper()} seed {seed}" for task, seed in adopted)
        sizes = {len(g) for g in (tables.recipe.get("tuning", {}).get("grid") or {}).values()}
        budget = f"its {sizes.pop()} candidates" if len(sizes) == 1 else "its candidates"
        lines += [
            f"Selection effect: the {where} run of each weighted method is its chosen weight-search run, picked "
            f"as the best of {budget} on this same dev set, so that cell slightly favours the methods with "
            "a weight of their own over nDS and VKD; the other seeds are not selected.",
            "",
        ]
    return lines


def _take_section(tables: _Tables) -> list[str]:
    """The recipe's ``take`` (staged_search --settle): per task, the row with the best holdout score of its search —
    the row a user should take, chosen without dev — and its dev score in the table above."""
    take = tables.recipe.get("take") or {}
    if not take:
        return []
    rows = []
    for task in ordered_tasks(take):
        method, metric = take[task]["method"], str(take[task].get("metric") or "").split(".")[-1]
        _, main = task_metrics(task)
        tied = ", ".join(DISPLAY.get(m, m) for m in take[task].get("tied_with") or ())
        rows.append(
            [
                task.upper(),
                DISPLAY.get(method, method) + (f" (tied with {tied}: the simpler row)" if tied else ""),
                f"{METRIC_DISPLAY.get(metric, metric)} {100 * take[task]['holdout']:.2f}"
                + (" (its stage-2 rerun)" if str(take[task].get("study", "")).endswith(RERUN_SUFFIX) else ""),
                fmt(tables.stats.get((task, method), {}).get(main)),
            ]
        )
    others = [
        f"- {task.upper()}: compared among the rows of teacher {take[task].get('teacher') or '–'}; not compared "
        f"(another teacher): {', '.join(take[task]['other_teacher'])}."
        for task in ordered_tasks(take)
        if take[task].get("other_teacher")
    ]
    return (
        [
            "## The row to take, per task",
            "",
            "Chosen on the holdout split (the best of every method's search on the task), not on dev; its dev score "
            "is the table's. A tie goes to the row training with fewer distillation terms (nDS none, VKD its KD "
            "term, another row KD and each of its weights not off). Stage 1's rows are the best of more trials "
            "than stage 2's (recipe-v3.yaml), which favours them slightly. Only rows distilled from one teacher are "
            "compared: that of most of the task's stage-2 studies.",
            "",
        ]
        + _table(["Task", "Row", "Best on the holdout split", "Dev (main metric, mean (std))"], rows)
        + ([""] + others if others else [])
        + [""]
    )


def comparison_section(
    stats: Mapping[tuple[str, str], Mapping[str, Any]],
    before: Mapping[tuple[str, str], Mapping[str, Any]],
    labels: tuple[str, str],
) -> list[str]:
    """The cells that moved from the earlier benchmark ``labels[0]`` (``before``) to this one (``stats``): main
    metric, a cell moved when its means differ by more than the larger of its two seed standard deviations."""
    old, new = labels
    rows, steady, unfinished = [], 0, 0
    for task, method in sorted(set(stats) & set(before), key=lambda k: (TASK_ORDER.index(k[0]), k[1])):
        if method in (TEACHER, MAJORITY):
            continue
        _, main = task_metrics(task)
        now, then = stats[task, method].get(main), before[task, method].get(main)
        if not now or not then:
            continue
        if now.get("n", 0) < 2 or then.get("n", 0) < 2:  # no spread to judge a move by
            unfinished += 1
            continue
        delta = 100 * (now["mean"] - then["mean"])
        spread = 100 * max(now.get("std") or 0.0, then.get("std") or 0.0)
        if abs(delta) <= spread:
            steady += 1
            continue
        rows.append([task.upper(), DISPLAY.get(method, method), fmt(then), fmt(now), f"{delta:+.2f}"])
    lines = [
        f"## {new} against {old}: the cells that moved",
        "",
        f"Main metric, mean (std) over each cell's seeds. A cell moved when its {old} and {new} means differ by more "
        f"than the larger of their two standard deviations; {steady} cells present in both did not"
        + (f", and {unfinished} with fewer than 2 seeds on a side are not compared yet." if unfinished else "."),
        "",
    ]
    header = ["Task", "Method", f"{old}", f"{new}", "Δ"]
    return lines + (_table(header, rows) if rows else ["No cell moved."]) + [""]


def _curves_section(curve_links: Mapping[str, str] | None) -> list[str]:
    """Links to each task's plot of quality against training budget (none without plots)."""
    if not curve_links:
        return []
    return [
        "## Quality against training budget (dev after every epoch)",
        "",
        "One line per method (mean over its seeds), the seeds' range as a band, the teacher's final score "
        "dashed: " + ", ".join(f"[{t.upper()}]({link})" for t, link in curve_links.items()) + ".",
        "",
    ]


def _retention_section(tables: _Tables) -> list[str]:
    """Each method's mean as a percentage of the teacher's score, per core task (main metric)."""
    lines = ["## Retention of the teacher's score (main metric, student mean / teacher × 100)", ""]
    core = tables.core
    header = ["Method"] + [f"{t.upper()} {METRIC_DISPLAY.get(task_metrics(t)[1], task_metrics(t)[1])}" for t in core]
    ablations = [m for m in ABLATION_METHODS if any(r["method"] == m for r in tables.students)]
    rows = []
    for method in tables.main_methods + ablations:
        row = [DISPLAY.get(method, method)]
        for task in core:
            _, main = task_metrics(task)
            stat = tables.stats.get((task, method), {}).get(main)
            teacher = tables.teachers.get(task, {}).get("metrics", {}).get(main)
            row.append(f"{100 * stat['mean'] / teacher:.1f} %" if stat and teacher else "–")
        rows.append(row)
    return lines + _table(header, rows) + [""]


def _significance_section(tables: _Tables) -> list[str]:
    """The one-sided Welch test of each proposed method against the best baseline, per core task."""
    return [
        "## Significance: FSD against the best baseline (one-sided Welch, main metric)",
        "",
        f"Baselines: {', '.join(DISPLAY[b] for b in BASELINES)}. H1: FSD > best baseline when FSD's mean is at "
        "least the baseline's, else FSD < best baseline (the paper's convention). FSD-Procrustes and FSDI + "
        "MiniLM are tested the same way.",
        "",
        *_significance_table(significance_rows(tables.records, tables.core)),
        "",
    ]


def _ablation_section(tables: _Tables) -> list[str]:
    """VKD, FSD's ablations and FSD per core task (paper Table 4 layout, main metric), and FSD tested against each
    ablation."""
    from fsdkit.analysis.significance import significance_against_best

    ablation = [m for m in ("vkd", *ABLATION_METHODS, "fsd") if any(r["method"] == m for r in tables.students)]
    if not any(m in ABLATION_METHODS for m in ablation):
        return ["## FSD ablations", "", "No ablation run (fsdi, fsdl, fsdg, fsdil) has finished yet.", ""]
    rows = [
        [DISPLAY.get(m, m)]
        + [
            fmt(
                tables.stats.get((t, m), {}).get(task_metrics(t)[1]),
                seeds_for(tables.ablation_seeds if m in ABLATION_METHODS else tables.expected_seeds, t),
            )
            for t in tables.core
        ]
        for m in ablation
    ]
    tests = [
        significance_against_best(tables.records, t, "fsd", task_metrics(t)[1], candidates=[m])
        for t in tables.core
        if any(r["task"] == t and r["method"] == "fsd" for r in tables.students)
        for m in ABLATION_METHODS
        if any(r["task"] == t and r["method"] == m for r in tables.students)
    ]
    lines = [
        "## FSD ablations (paper Table 4 layout, main metric)",
        "",
        *_table(["Method"] + [t.upper() for t in tables.core], rows),
        "",
    ]
    if tests:
        lines += [
            "FSD (all three terms) against each of its ablations, one-sided Welch on the main metric: H1 is FSD > "
            "the ablation when FSD's mean is at least the ablation's, else FSD < the ablation — whether the terms "
            "FSD adds to it help or hurt.",
            "",
            *_significance_table(tests, against="Ablation"),
            "",
        ]
    return lines


def _throughput_section(tables: _Tables) -> list[str]:
    """Each method's training throughput relative to VKD's per core task (none without VKD runs)."""
    ratios = throughput_ratios(tables.records)
    if not ratios:
        return []
    speed_methods = [m for m in tables.main_methods + list(ABLATION_METHODS) if any(k[1] == m for k in ratios)]
    rows = [
        [DISPLAY.get(m, m)] + [f"{ratios[(t, m)]:.2f}" if (t, m) in ratios else "–" for t in tables.core]
        for m in speed_methods
    ]
    return [
        "## Training throughput relative to VKD (suite runs; shared machine, indicative only)",
        "",
        *_table(["Method"] + [t.upper() for t in tables.core], rows),
        "",
        "Controlled speed measurements (same inputs, quiet machine, other libraries): [speed/SPEED.md](speed/SPEED.md).",
        "",
    ]


def _further_tasks_section(tables: _Tables) -> list[str]:
    """The score table and significance tests of the tasks outside the core table (none without such tasks)."""
    further = tables.further
    if not further:
        return []
    lines = [
        "## Further tasks (not in the core table)",
        "",
        "Same recipe and methods. A teacher close to the majority class (RTE, WNLI) leaves too little "
        "between the floor and the ceiling to rank students: read these as reported, not as a ranking.",
        "",
    ]
    methods = _methods_present([r for r in tables.students if r["task"] in further], TABLE_METHODS)
    lines += _score_table(further, methods, tables.stats, tables.references, tables.expected_seeds) + [""]
    significance = significance_rows(tables.records, further)
    if significance:
        lines += _significance_table(significance) + [""]
    return lines


def _teachers_section(tables: _Tables, history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every fine-tuning of each task's teacher: when, its dev score, machine, weights and the students from it."""
    rows = []
    finetunings = teacher_finetunings(history)
    for task in tables.tasks:
        for run in finetunings.get(task, []):
            t = run["record"]
            scores = ", ".join(
                f"{METRIC_DISPLAY.get(k, k)} {100 * v:.2f}" for k, v in flatten_metrics(t.get("metrics") or {}).items()
            )
            rows.append(
                [
                    task,
                    str(t.get("finished_at") or "–")[:16],
                    scores,
                    (t.get("host") or {}).get("cpu_model") or "not recorded",
                    t.get("teacher_fingerprint") or "–",
                    str(run["students"]),
                    f"{t.get('wall_time', 0) / 60:.1f} min",
                    str(t.get("git_commit") or "–")[:10],
                ]
            )
    header = [
        "Task",
        "Fine-tuned",
        "Dev score",
        "CPU",
        "Weights (SHA-256)",
        "Student runs from it",
        "Wall time",
        "fsdkit commit",
    ]
    lines = ["## Teachers", "", *_table(header, rows), ""]
    if any(len(runs) > 1 for runs in finetunings.values()):
        lines += [
            "A task with several rows was fine-tuned again by the same recipe and seed on another machine "
            "(`benchmarks/work`, where the teachers live, is not committed): a CPU whose kernels round "
            "differently gives other weights. Each student run records the weights it distilled from "
            "(`teacher_fingerprint`; before fingerprints, the teacher recorded last before it); the reference "
            "row and the retention use the latest.",
            "",
        ]
    return lines


def _recipe_section(tables: _Tables, recipe_path: str) -> list[str]:
    """The recipe's shared, student and teacher settings, and each method's own settings as run."""
    recipe = tables.recipe
    lines = [
        f"## Recipe ({recipe_path})",
        "",
        "Shared by every student method: "
        + ", ".join(f"`{k}={v}`" for k, v in {**recipe.get("shared", {}), **recipe.get("student", {})}.items()),
        "",
        "Teacher: "
        + ", ".join(f"`{k}={v}`" for k, v in {**recipe.get("shared", {}), **recipe.get("teacher", {})}.items()),
        "",
    ]
    if any("per_task" in (row or {}) for row in recipe.get("methods", {}).values()):
        return lines + _per_task_settings(recipe)
    lines += ["Each method's own settings as run (from the records; anything else is shared):", ""]
    rows = []
    common = {*recipe.get("shared", {}), *recipe.get("student", {}), "task", "method", "seed"}
    for method in sorted({r["method"] for r in tables.students}):
        weights = {
            k: v
            for r in tables.students
            if r["method"] == method
            for k, v in (r.get("settings") or {}).items()
            if k not in common
        }
        rows.append(
            [
                DISPLAY.get(method, method),
                ", ".join(f"{k}={v}" for k, v in sorted(weights.items())) or "method defaults",
            ]
        )
    return lines + _table(["Method", "Own settings"], rows) + [""]


def _per_task_settings(recipe: Mapping[str, Any]) -> list[str]:
    """Each method's settings per task as the search chose them (a table recipe's ``per_task`` rows), with the study
    and trial each came from; they replace the shared settings of the same name."""
    rows = []
    for method, row in recipe["methods"].items():
        for task in ordered_tasks((row or {}).get("per_task") or {}):
            entry = dict(row["per_task"][task])
            source = entry.pop("chosen_from", {})
            own = {k: v for k, v in row.items() if k not in ("per_task", "preset")}
            settings = {**own, **entry}
            rows.append(
                [
                    DISPLAY.get(method, method),
                    task.upper(),
                    ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()),
                    f"{source.get('study', '–')} #{source.get('trial', '–')}",
                ]
            )
    intro = [
        "Each method's settings per task, chosen on the holdout split by its study (they replace the shared settings "
        "of the same name):",
        "",
    ]
    return intro + _table(["Method", "Task", "Settings", "Study, trial"], rows) + [""]


def _tuning_section(tuning: Sequence[Mapping[str, Any]], recipe: Mapping[str, Any]) -> list[str]:
    """Benchmark v1's weight search (``tune.py``): every candidate run, the best of each method marked."""
    lines = ["## Weight search (benchmarks/tune.py)", ""]
    if not tuning:
        return lines + [
            "Not run yet: the weights above are the published defaults (see the recipe's tuning protocol).",
            "",
        ]
    from tune import best_candidates

    ok = [r for r in tuning if r.get("status") == "ok"]
    own = recipe.get("methods", {})
    grid = recipe.get("tuning", {}).get("grid", {})
    best = best_candidates(ok, task_metrics(ok[0]["task"])[1], grid) if ok else {}
    order = {method: i for i, method in enumerate(best)}  # methods in first-run order
    done = collections.Counter(r["method"] for r in ok)
    rows = []
    for r in sorted(ok, key=lambda r: order[r["method"]]):
        size = len(grid.get(r["method"], ())) or None
        chosen = (
            ""
            if best[r["method"]] is not r
            else (
                "**best**"
                if size is None or done[r["method"]] >= size
                else f"best so far ({done[r['method']]} of {size} candidates run)"
            )
        )
        in_recipe = all(own.get(r["method"], {}).get(k) == v for k, v in (r.get("candidate") or {}).items())
        rows.append(
            [
                DISPLAY.get(r["method"], r["method"]),
                json.dumps(r.get("candidate")),
                ", ".join(f"{METRIC_DISPLAY.get(k, k)} {100 * v:.2f}" for k, v in r.get("metrics", {}).items()),
                " · ".join(filter(None, [chosen, "in the recipe" if in_recipe else ""])),
            ]
        )
    lines += [
        f"On {ok[0]['task'] if ok else '–'}, seed {ok[0]['seed'] if ok else '–'}; the best candidate of each "
        "method (main metric) is to be copied into the recipe's `methods`.",
        "",
    ]
    return lines + _table(["Method", "Candidate", "Dev score", "Choice"], rows) + [""]


def _failures_section(failures: Sequence[Mapping[str, Any]]) -> list[str]:
    """The failed runs not yet re-run successfully, with the first line of their error (none without failures)."""
    if not failures:
        return []
    rows = [
        [
            f["task"],
            DISPLAY.get(f["method"], f["method"]),
            str(f["seed"]),
            (f.get("error") or "").splitlines()[0][:160].replace("|", "\\|"),
        ]
        for f in failures
    ]
    return ["## Failed runs (not yet re-run successfully)", "", *_table(["Task", "Method", "Seed", "Error"], rows), ""]


def _coverage_section(tables: _Tables) -> list[str]:
    """How much of the suite's plan has finished, part by part."""
    rows = coverage_rows(
        tables.students,
        tables.teachers,
        tables.expected_seeds,
        tables.ablation_seeds,
        tables.recipe.get("methods") or {},
        tables.recipe.get("table"),
    )
    header = ["Part", "Tasks × methods × seeds", "Runs finished", "With test predictions", "Teachers"]
    return ["## Coverage (the suite's plan, in its order)", "", *_table(header, rows), ""]


def _provenance_section(tables: _Tables, earlier: Sequence[Mapping[str, Any]], recipe_path: str) -> list[str]:
    """How many runs, which fsdkit commits and machines made them, and the earlier recipe's runs not shown."""
    records = tables.records
    commits = sorted({str(r.get("git_commit"))[:10] for r in records if r.get("git_commit")})
    hosts = sorted(
        {f"{r['host'].get('cpu_count')} CPUs, torch {r['host'].get('torch_version')}" for r in records if r.get("host")}
    )
    lines = [
        "## Provenance",
        "",
        f"- runs: {len(records)} finished records over {len(tables.tasks)} task(s)",
        f"- fsdkit commits: {', '.join(commits) or '–'}",
        f"- machines: {'; '.join(hosts) or '–'}",
    ]
    if earlier:
        counts = collections.Counter((r["task"], DISPLAY.get(r["method"], r["method"])) for r in earlier)
        lines.append(
            f"- not shown: {len(earlier)} finished runs of an earlier recipe (settings no longer in "
            f"{Path(recipe_path).name}; kept in the results file as history): "
            + ", ".join(f"{method} on {task} × {n}" for (task, method), n in sorted(counts.items()))
        )
    return lines + [""]


INIT_DISPLAY = {"teacher": "teacher-initialised", "pretrained": "pretrained layers"}


def pretrained_table(rows: Sequence[Mapping[str, Any]], recipe: str) -> list[str]:
    """RESULTS.md lines for the pretrained-layer regime at a glance: per task (a row) and method (a column) the peak of
    seed 1's longest curve under ``recipe`` (a recipe file's name) — its first k layers, its teacher — with its epoch,
    beside the teacher's final score (its longest curve). Empty without such curves."""
    longest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        if (
            row["layers"] is None
            and row["teacher_epochs"] is None
            and (row["init"] is None or (row["init"] == "pretrained" and row["seed"] == 1 and row["recipe"] == recipe))
        ):
            key = (row["task"], row["method"])
            if key not in longest or len(row["values"]) > len(longest[key]["values"]):
                longest[key] = row
    tasks = sorted(
        {t for (t, m), r in longest.items() if r["init"] == "pretrained"},
        key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t),
    )
    if not tasks:
        return []
    methods = _methods_present(
        [{"method": m} for (t, m), r in longest.items() if r["init"] == "pretrained"], TABLE_METHODS + ("fsdi",)
    )
    table = []
    for task in tasks:
        teacher = longest.get((task, TEACHER))
        cells = [f"{teacher['values'][-1]:.1f}" if teacher and teacher["values"] else "–"]
        for method in methods:
            row = longest.get((task, method))
            cells.append(
                "–"
                if row is None or row["peak"] is None
                else f"{row['peak']:.1f} ({row['peak_epoch']}/{len(row['values'])})"
            )
        metric = next(r["metric"] for (t, m), r in longest.items() if t == task)
        table.append([f"{task.upper()} ({METRIC_DISPLAY.get(metric, metric)})", *cells])
    return [
        "**The pretrained-layer regime at a glance**: the peak dev score (its epoch / the schedule's epochs) of "
        "seed 1's longest curve per method, students taking the first layers of the packaged all-MiniLM-L6-v2 "
        "and a new head, each method at the recipe's settings; the teacher's final dev score beside them. One "
        "seed: differences of a point or two are within the seed-to-seed spread of the tables above.",
        "",
        *_table(["Task (metric)", "Teacher", *(DISPLAY.get(m, m) for m in methods)], table),
        "",
    ]


def regime_section(rows: Sequence[Mapping[str, Any]], links: Mapping[str, str], first_k: int, recipe: str) -> list[str]:
    """RESULTS.md lines for the regime study (``benchmarks/curves.py``): one table row per recorded curve — per task
    its teacher, then the students by initialisation, layer set and method — with its peak and the plateau rule."""

    def order(row: Mapping[str, Any]) -> tuple:
        init = row["init"]
        return (
            TASK_ORDER.index(row["task"]) if row["task"] in TASK_ORDER else len(TASK_ORDER),
            row["task"],
            init is not None,
            tuple(INIT_DISPLAY).index(init) if init in INIT_DISPLAY else 0,
            row["layers"] is not None,
            row["teacher_epochs"] or 0,
            list(DISPLAY).index(row["method"]) if row["method"] in DISPLAY else len(DISPLAY),
            row["method"],
            row["seed"],
            len(row["values"]),
        )

    table = []
    for row in sorted(rows, key=order):
        teacher = row["init"] is None
        epochs = len(row["values"])
        layers = (
            "all"
            if teacher
            else ("first " + str(first_k) if row["layers"] is None else ",".join(map(str, row["layers"])))
        )
        if row["teacher_epochs"] is not None:
            layers += f" (teacher of {row['teacher_epochs']:g} epochs)"
        table.append(
            [
                row["task"].upper(),
                DISPLAY.get(row["method"], row["method"]),
                "–" if teacher else INIT_DISPLAY.get(row["init"], row["init"]),
                layers,
                str(row["seed"]),
                f"{METRIC_DISPLAY.get(row['metric'], row['metric'])} " + " ".join(f"{v:.1f}" for v in row["values"]),
                "–" if row["peak"] is None else f"{row['peak']:.1f} ({row['peak_epoch']} of {epochs})",
                {True: "yes", False: "no", None: "–"}[row["plateau"]],
                f"{row['minutes']:.1f}",
                row["recipe"],
            ]
        )
    lines = ["## Two regimes and the choice of layers (benchmarks/curves.py)", ""]
    lines += pretrained_table(rows, recipe)
    lines += [
        "All curves, one run per row, the dev metric ×100 after every epoch of its schedule (`results/curves.jsonl`): the "
        "one the recipe's epoch rule reads (its `search.metric`: MRPC accuracy, its F1 being lenient), else the "
        "main one. "
        "Teacher-initialised students take the chosen layers and the classification head of the fine-tuned teacher "
        "(the regime of the tables above, near their teacher); pretrained-layer students take the layers of the "
        "packaged all-MiniLM-L6-v2 and a new head (the paper's protocol: a student that starts far from its "
        "teacher). Layers are 0-based. Plateau: the last two evaluations within 1 point, the rule by which the "
        "recipe chose each task's epochs (a curve that peaks and falls takes its peak's epoch). Recipe: the settings' file "
        "(`recipe.yaml`: v1's shared settings and weights; `recipe-v2.yaml`: the searched ones, length-grouped "
        "batches)."
        + (" Plots: " + ", ".join(f"[{name}]({link})" for name, link in links.items()) + "." if links else ""),
        "",
    ]
    return (
        lines
        + _table(
            [
                "Task",
                "Run",
                "Student",
                "Layers",
                "Seed",
                "Dev after each epoch",
                "Peak (epoch)",
                "Plateau",
                "Min",
                "Recipe",
            ],
            table,
        )
        + [""]
    )


#: the parts of the suite in the order they are run (the committed core table first)
PLAN = (
    ("core table", TABLE_TASKS, TABLE_METHODS),
    ("FSDI + MiniLM", TABLE_TASKS, ("fsdi-minilm",)),
    ("FSD ablations", TABLE_TASKS, ABLATION_METHODS),
    ("Internal-SID", TABLE_TASKS, ("internal-sid",)),
    ("RTE", ("rte",), TABLE_METHODS),
    ("SST-2", ("sst2",), TABLE_METHODS),
    ("WNLI", ("wnli",), TABLE_METHODS),
)


def coverage_rows(
    students: Sequence[Mapping[str, Any]],
    teachers: Mapping[str, Any],
    expected_seeds: int | Mapping[str, int],
    ablation_seeds: int | Mapping[str, int],
    recipe_rows: Iterable[str] = (),
    table: Mapping[str, Any] | None = None,
) -> list[list[str]]:
    """Per part of :data:`PLAN`: how many of its runs (tasks × methods × seeds 1..expected; the ablations'
    ``ablation_seeds``) have finished, and how many of those wrote their test-set predictions. A part with a method
    that is neither one of fsdkit's nor a row of the recipe (``recipe_rows``: v1's has no FSDI + MiniLM) is left out;
    so is a part outside the recipe's ``table`` (its tasks and methods, when given) none of whose runs has finished
    (v2 ran Internal-SID and the further tasks beside its table; v3 does not)."""
    from fsdkit.methods import METHODS

    done = {(r["task"], r["method"], r["seed"]): bool(r.get("test_predictions")) for r in students}
    known = {*METHODS, *recipe_rows}
    rows = []
    for part, tasks, methods in PLAN:
        if not known.issuperset(methods):
            continue
        expected = ablation_seeds if methods == ABLATION_METHODS else expected_seeds
        planned = [(t, m, s) for t in tasks for m in methods for s in range(1, seeds_for(expected, t) + 1)]
        in_table = table is None or (
            set(tasks) <= set(table.get("tasks") or ()) and set(methods) <= set(table.get("methods") or ())
        )
        if not in_table and not any(key in done for key in planned):
            continue
        seeds = sorted({seeds_for(expected, t) for t in tasks})
        rows.append(
            [
                part,
                f"{len(tasks)} × {len(methods)} × {'/'.join(map(str, seeds))}",
                f"{sum(key in done for key in planned)} of {len(planned)}",
                str(sum(done.get(key, False) for key in planned)),
                f"{sum(t in teachers for t in tasks)} of {len(tasks)}",
            ]
        )
    return rows


def search_summary(storage: str, recipe: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The equal-budget search's studies (``benchmarks/search.py``: one ``<task>-<method>`` Optuna study each) in the
    recipe's task and method order: trials by state, the best of the study's budget (its first ``search.trials``
    finished trials, :func:`fsdkit.sweep.best_trial`) with its holdout value and parameters."""
    import optuna

    from fsdkit.sweep import best_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    search = recipe.get("search") or {}
    budget = int(search.get("trials", 0))
    out = []
    for task in search.get("tasks", []):
        for method in search.get("methods", {}):
            if f"{task}-{method}" not in names:
                out.append({"task": task, "method": method, "trials": {}, "best": None})
                continue
            study = optuna.load_study(study_name=f"{task}-{method}", storage=storage)
            trials = study.get_trials(deepcopy=False)
            states = collections.Counter(t.state.name.lower() for t in trials)
            best = best_trial(study, budget)
            out.append(
                {
                    "task": task,
                    "method": method,
                    "trials": dict(states),
                    "metric": study.user_attrs.get("metric"),
                    "best": None if best is None else {"value": best.value, "params": best.params},
                }
            )
    return out


def search_section(studies: Sequence[Mapping[str, Any]], recipe: Mapping[str, Any]) -> list[str]:
    """RESULTS.md lines for the equal-budget search (see :func:`search_summary`)."""
    search = recipe.get("search") or {}
    budget = int(search.get("trials", 0))
    lines = [
        "## Equal-budget search (benchmarks/search.py)",
        "",
        f"Every method gets {budget} Optuna trials (TPE + median pruner on the per-epoch curve) over the learning "
        "rate, α, T and its own weights, scored on a fixed "
        f"{100 * float(search.get('holdout_fraction', 0)):g} % of the training set (seed 0) — never on dev. A "
        f"study is judged on its first {budget} finished trials (trials that finish beyond them, when two workers "
        "each finish a last one, are not considered); its best parameters go into the recipe's `methods` before "
        "the table is run.",
        "",
    ]
    rows = []
    for s in studies:
        trials = s["trials"]
        finished = trials.get("complete", 0) + trials.get("pruned", 0)
        state = f"{min(finished, budget)} of {budget}" + (
            f" ({trials['pruned']} pruned)" if trials.get("pruned") else ""
        )
        if finished > budget:  # both workers finished a last trial: beyond the budget, not considered
            state += f", {finished - budget} more not considered"
        if (trials.get("running") or trials.get("waiting")) and finished < budget:  # (a done study's are stale)
            state += f", {trials.get('running', 0) + trials.get('waiting', 0)} running"
        best = s.get("best")
        metric = str(s.get("metric") or "").split(".")[-1]
        rows.append(
            [
                s["task"].upper(),
                DISPLAY.get(s["method"], s["method"]),
                state,
                "–" if best is None else f"{METRIC_DISPLAY.get(metric, metric)} {100 * best['value']:.2f}",
                "–"
                if best is None
                else ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()
                ),
            ]
        )
    return (
        lines
        + _table(["Task", "Method", "Trials finished", "Best on the holdout split", "Its parameters"], rows)
        + [""]
    )


def staged_search_section(
    studies: Sequence[Mapping[str, Any]], plot_links: Mapping[str, str] | None = None
) -> list[str]:
    """RESULTS.md lines for benchmark v3's staged search (``staged_search.study_progress``): per study its trials, its
    best holdout score and trial, the best so far after each trial, and whether it still rose in the last third of
    the budget; each task's best-so-far plot (``plot_links``)."""
    lines = [
        "## The staged search (benchmarks/staged_search.py)",
        "",
        "Per task, stage 1 searches the learning rate, α and T on VKD and nDS's learning rate; stage 2 each other "
        "method's own weights (each with \"off\" among its choices) at stage 1's VKD best knobs. Scored on a fixed "
        "10 % of the training set (seed 0), never on dev; a study is judged on its first budget of finished trials. "
        "*Best so far* lists the best holdout score after each finished trial (– : pruned before any trial "
        "completed); **still rising** marks a study whose best improved in the last third of its budget: more "
        "trials might have found better settings. A failed trial (e.g. a FloatingPointError: the run diverged) or a "
        "stopped one (its worker stopped or lost) is not one of the budget's: the study runs another in its place. "
        "Nor is a repeat, a draw of options a trial has scored already (e.g. every weight off again): the same "
        "deterministic run, not trained; an untried random draw runs in its place. *Teacher*: the fingerprint of "
        "the teacher the study's students are made of and distil from (the first 12 hex digits of its weights' "
        "SHA-256); a machine without the search's work folder fine-tunes the teachers again (the same recipe and "
        "seed give other weights on another CPU), so stage 2 reruns stage 1's VKD and nDS best once on its own "
        "teacher (*rerun*), and the row to take is chosen among the rows of one teacher.",
        "",
    ]
    rows = []
    for s in studies:
        metric = str(s.get("metric") or "").split(".")[-1]
        finished = len(s["values"])
        notes = [f"{s['pruned']} pruned"] if s["pruned"] else []
        failed = collections.Counter(s.get("failed") or ())
        notes += [f"{n} failed: {kind}" for kind, n in sorted(failed.items())]
        notes += [f"{s['stopped']} stopped"] if s.get("stopped") else []
        notes += [f"{s['repeats']} repeat{'s' * (s['repeats'] > 1)} not counted"] if s.get("repeats") else []
        state = f"{finished} of {s['budget']}" + (f" ({'; '.join(notes)})" if notes else "")
        best = s.get("best")
        series = " ".join("–" if v is None else f"{100 * v:.1f}" for v in s["best_so_far"])
        rows.append(
            [
                s["task"].upper(),
                str(s["stage"]),
                DISPLAY.get(s["method"], s["method"]) + (" (rerun)" if s.get("rerun") else ""),
                s.get("teacher") or "–",
                state,
                "–"
                if best is None
                else f"{METRIC_DISPLAY.get(metric, metric)} {100 * best['value']:.2f} (#{best['trial']})",
                series or "–",
                f"{s.get('worker_hours', 0.0):.1f}",
                "**still rising**" if s.get("still_improving") and s.get("done") else "",
            ]
        )
    header = [
        "Task",
        "Stage",
        "Method",
        "Teacher",
        "Trials",
        "Best (trial)",
        "Best so far, trial by trial",
        "Worker-h",
        "",
    ]
    lines += _table(header, rows)
    cost: dict[str, float] = {}
    for s in studies:
        cost[s["task"]] = cost.get(s["task"], 0.0) + s.get("worker_hours", 0.0)
    lines += [
        "",
        "Worker-hours: the wall time of every trial that ended (pruned, failed and stopped ones included; one "
        "1-thread worker, two side by side on the 2-core machine), by task: "
        + ", ".join(f"{task.upper()} {hours:.1f}" for task, hours in cost.items())
        + f"; {sum(cost.values()):.1f} in all (the search teachers' fine-tuning not included).",
    ]
    for task, link in (plot_links or {}).items():
        lines += ["", f"![best so far, {task.upper()}]({link})"]
    return lines + [""]


def plot_best_so_far(studies: Sequence[Mapping[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``<task>.png`` per task: each study's best holdout score after each finished trial (stage 1 solid, stage 2
    dashed)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from fsdkit.analysis.plots import save_figure

    written = {}
    for task in ordered_tasks({s["task"] for s in studies if s["values"]}):
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        metric = ""
        for s in studies:
            points = [(i + 1, 100 * v) for i, v in enumerate(s["best_so_far"]) if v is not None]
            if s["task"] != task or not points:
                continue
            metric = str(s.get("metric") or "").split(".")[-1]
            ax.plot(
                *zip(*points, strict=True),
                marker="o",
                markersize=3,
                linestyle="-" if s["stage"] == 1 else "--",
                label=f"{DISPLAY.get(s['method'], s['method'])} (stage {s['stage']}{', rerun' if s.get('rerun') else ''})",
            )
        ax.set_xlabel("finished trials")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"best holdout {METRIC_DISPLAY.get(metric, metric)}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        ax.set_title(f"Staged search, best so far — {task.upper()}")
        written[task] = save_figure(fig, out_dir / f"{task}.png")
        plt.close(fig)
    return written


def plot_curves(records: Sequence[Mapping[str, Any]], out_dir: Path, recipe: Mapping[str, Any]) -> dict[str, Path]:
    """``<task>.png`` per task: each student method's dev curve (the task's selection metric: the recipe's
    ``search.metric`` entry, else its main metric), mean over seeds with their range as a band, the teacher dashed."""
    from fsdkit.analysis.plots import learning_curves, save_figure

    chosen = (recipe.get("search") or {}).get("metric") or {}
    teachers = {r["task"]: r for r in records if r["method"] == TEACHER}
    written = {}
    for task in ordered_tasks({r["task"] for r in records if r.get("curve") and r["method"] != TEACHER}):
        metric = chosen.get(task) or task_metrics(task)[1]
        curves: dict[str, list] = {}
        for r in records:
            if r["task"] == task and r["method"] not in (TEACHER, MAJORITY) and r.get("curve"):
                curves.setdefault(DISPLAY.get(r["method"], r["method"]), []).append(curve_points(r, metric))
        teacher = teachers.get(task, {}).get("metrics", {}).get(metric)
        fig = learning_curves(curves, task.upper(), metric, None if teacher is None else 100 * teacher, "teacher")
        written[task] = save_figure(fig, out_dir / f"{task}.png")
    return written


def analysis_section(link: str, analysis: Mapping[str, Any]) -> list[str]:
    """The RESULTS.md lines that summarise an analysis report (``fsdkit.analyze``'s ``results.json``).

    Per student: restoration of the teacher's predictions (``fsdkit.analysis.restoration``: F1 of the positive
    class and agreement, agreement alone, or the correlations for regression), the diagonal mean of its CKA heat map
    against the teacher (paper Table 6), and the mean absolute relation differences to the teacher on the dev set
    (paper eq. 12–13; lower is closer).
    """
    lines = ["## Analysis report", ""]
    cka = analysis.get("cka") or {}
    restoration = analysis.get("restoration") or {}
    relations = analysis.get("relation_differences") or {}
    students = [m for m in (analysis.get("models") or {}) if m != "teacher"]
    if students:
        task = str(analysis.get("task", "")).upper()
        lines += [
            f"{task} dev set ({analysis.get('n_examples')} examples), the seed-1 students against the teacher; "
            "restoration treats the teacher's predictions as the labels (paper Fig. 3); CKA diagonal = mean linear "
            "CKA of the teacher's and the student's penultimate-layer rows over the same dev mini-batches "
            "(paper Table 6); relation differences = mean |student − teacher| pairwise Euclidean distance / "
            "cosine similarity (paper eq. 12–13, lower is closer).",
            "",
        ]
        keys = [
            k
            for k in ("f1", "agreement", "pearson", "spearman")
            if any(k in (restoration.get(m) or {}) for m in students)
        ]

        def num(value: Any, digits: int = 4) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        rows = []
        for m in students:
            rest, rel = restoration.get(m) or {}, relations.get(m) or {}
            rows.append(
                [
                    DISPLAY.get(m, m),
                    *(num(rest.get(k)) for k in keys),
                    num((cka.get(m) or {}).get("diagonal_mean")),
                    num(rel.get("inter_euclidean"), 2),
                    num(rel.get("inter_cosine")),
                    num(rel.get("intra_euclidean")),
                    num(rel.get("intra_cosine")),
                ]
            )
        lines += _table(
            [
                "Student",
                *(f"Restoration {METRIC_DISPLAY.get(k, k)}" if k != "agreement" else "Agreement" for k in keys),
                "CKA diagonal",
                "Inter Euclidean",
                "Inter cosine",
                "Intra Euclidean",
                "Intra cosine",
            ],
            rows,
        ) + [""]
    lines += [f"Full report (heat maps, relation histories, complexity): [{link}]({link}).", ""]
    return lines


def run_analysis(task: str, glue_dir: str, work_dir: Path, out_dir: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``fsdkit.analyze`` of the task's teacher against the seed-1 students the suite kept; returns report.md."""
    from fsdkit.analysis import analyze

    teacher = work_dir / task / TEACHER
    models = {}
    for r in records:
        folder = r.get("output_dir")
        if r["task"] == task and r["method"] != TEACHER and folder and (Path(folder) / "config.json").is_file():
            models[DISPLAY.get(r["method"], r["method"])] = os.path.relpath(folder)  # the report shows the paths
    if not (teacher / "config.json").is_file() or not models:
        raise SystemExit(f"--analyze {task}: no teacher or no kept student folder under {work_dir / task}")
    analyze(
        task=task,
        teacher=os.path.relpath(teacher),
        models=models,
        data_dir=glue_dir,
        output_dir=str(out_dir),
        reference="VKD",
        proposed="FSD",
        progress=False,
    )
    return out_dir / "report.md"


def _version(recipe_path: str) -> str:
    """A recipe's benchmark label from its file name: recipe-v3-table.yaml → v3 (recipe.yaml: v1)."""
    stem = Path(recipe_path).stem.split("-")
    return stem[1] if len(stem) > 1 else "v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate benchmarks/RESULTS.md from the suite's results files. The defaults are benchmark v2's "
        "(recipe-v2.yaml, results/v2.jsonl, the search's Optuna storage, the regime study's curves); "
        "an empty value ('') turns an optional part off. Benchmark v1: see benchmarks/README.md."
    )
    parser.add_argument(
        "--results",
        action="append",
        default=None,
        help="JSON-lines results file(s) (default: the recipe's outputs.results; v2's results/v2.jsonl)",
    )
    parser.add_argument("--tuning", default="", help="v1's weight-search results (tune.py, results/tuning.jsonl)")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--output", default=None, help="the report (default: the recipe's outputs.report)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="expected seeds per cell (default: the recipe's table.seeds, else 3)"
    )
    parser.add_argument(
        "--search-db",
        default=None,
        help="the search's Optuna storage (search.py; v3: staged_search.py): its studies replace the tune.py "
        "section (default: the recipe's search.storage_file, else results/search.db)",
    )
    parser.add_argument(
        "--search-plots",
        default=None,
        metavar="DIR",
        help="a staged search (v3): each task's best-so-far plot as DIR/<task>.png (default: the recipe's "
        "outputs.search_plots)",
    )
    parser.add_argument(
        "--curves-dir",
        default=None,
        help="write each task's dev curves as DIR/<task>.png and link them (default: the recipe's outputs.curves)",
    )
    parser.add_argument(
        "--regime-results",
        default=str(HERE / "results" / "curves.jsonl"),
        help="the regime study's curves (benchmarks/curves.py), shown as a table (default results/curves.jsonl)",
    )
    parser.add_argument(
        "--regime-plots",
        default=str(HERE / "results" / "curves"),
        metavar="DIR",
        help="with --regime-results: write its plots (one PNG per task and initialisation) into DIR "
        "and link them (default results/curves)",
    )
    parser.add_argument(
        "--compare",
        default=None,
        metavar="RECIPE",
        help="an earlier benchmark's recipe (e.g. benchmarks/recipe-v2.yaml): its runs (its outputs.results) are "
        "compared cell by cell, the cells that moved shown",
    )
    parser.add_argument("--analyze", default=None, metavar="TASK", help="also run fsdkit.analyze on TASK's kept models")
    parser.add_argument(
        "--analysis-dir", default=None, help="analysis reports: ANALYSIS_DIR/TASK/ (default: the recipe's outputs)"
    )
    parser.add_argument("--glue-dir", default=None, help="GLUE folder (needed with --analyze)")
    parser.add_argument("--work-dir", default=None, help="the suite's model folders (default: the recipe's)")
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe)
    paths = args.results or [recipe_output(recipe, "results")]
    for name, place in (("output", "report"), ("curves_dir", "curves"), ("analysis_dir", "analysis")):
        if getattr(args, name) is None:  # '' (a part turned off) stays
            setattr(args, name, recipe_output(recipe, place))
    if args.search_plots is None:
        args.search_plots = recipe_output(recipe, "search_plots")
    # only the runs of the current recipe count; runs of an earlier one stay in the file as history
    suite = Suite(glue_dir="", tasks=[], methods=[], seeds=[], recipe=recipe)
    raw, earlier = suite.split_current(r for p in paths for r in read_records(p))
    tuning, _ = suite.split_current(read_records(args.tuning)) if args.tuning else ([], [])
    records = latest_ok(raw)
    output = Path(args.output)
    if args.analyze:
        out_dir = Path(args.analysis_dir) / args.analyze
        report = run_analysis(
            args.analyze, args.glue_dir, Path(args.work_dir or recipe_output(recipe, "work_dir")), out_dir, records
        )
    else:
        report = next(iter(sorted(Path(args.analysis_dir).glob("*/report.md"))), None)
    analysis_link = None if report is None else os.path.relpath(Path(report).resolve(), output.resolve().parent)
    summary = Path(report).with_name("results.json") if report is not None else None
    analysis = json.loads(summary.read_text(encoding="utf-8")) if summary is not None and summary.is_file() else None
    command = "python benchmarks/report.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    table = recipe.get("table") or {}
    seeds = args.seeds if args.seeds is not None else (table.get("seeds") or 3)
    curve_links = None
    if args.curves_dir:
        plots = plot_curves(records, Path(args.curves_dir), recipe)
        curve_links = {t: os.path.relpath(Path(path).resolve(), output.resolve().parent) for t, path in plots.items()}
    regimes, regime_links = [], {}
    if args.regime_results:
        # table and plots read the metric of the recipe's epoch rule (MRPC: accuracy, its F1 being lenient)
        rule = (recipe.get("search") or {}).get("metric")
        regimes = curve_rows(read_records(args.regime_results), rule)
        if args.regime_plots:
            regime_links = {
                Path(path).stem: os.path.relpath(Path(path).resolve(), output.resolve().parent)
                for path in plot_regimes(Path(args.regime_results), Path(args.regime_plots), rule)
            }
    previous = None
    if args.compare:
        earlier_recipe = load_recipe(args.compare)
        then = Suite(glue_dir="", tasks=[], methods=[], seeds=[], recipe=earlier_recipe)
        previous = latest_ok(then.split_current(read_records(recipe_output(earlier_recipe, "results")))[0])
    search_db = args.search_db
    if search_db is None:
        storage_file = (recipe.get("search") or {}).get("storage_file", "results/search.db")
        search_db = f"sqlite:///{HERE / storage_file}"
    search, search_links = None, {}
    if search_db and "stage1" in (recipe.get("search") or {}):
        search = study_progress(recipe, search_db)
        if args.search_plots:
            search_links = {
                task: os.path.relpath(Path(path).resolve(), output.resolve().parent)
                for task, path in plot_best_so_far(search, Path(args.search_plots)).items()
            }
    elif search_db:
        search = search_summary(search_db, recipe)
    text = render(
        records,
        command=command.strip(),
        failures=open_failures(raw),
        tuning=tuning,
        recipe=recipe,
        expected_seeds=seeds,
        ablation_seeds=table.get("ablation_seeds"),
        analysis_link=analysis_link,
        analysis=analysis,
        earlier=latest_ok(earlier),
        curve_links=curve_links,
        search=search,
        search_plot_links=search_links,
        previous=previous,
        previous_labels=(_version(args.compare), _version(args.recipe)) if args.compare else ("", ""),
        recipe_path=os.path.relpath(Path(args.recipe).resolve(), HERE.parent),
        history=raw,
        regimes=regimes,
        regime_links=regime_links,
    )
    output.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {output} ({len(records)} finished runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
