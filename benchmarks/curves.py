"""Benchmark v2's regime study: learning curves (dev after every epoch) of students in two initialisations.

::

    python benchmarks/curves.py --glue-dir ../shared/glue --tasks mrpc --methods nds,vkd --epochs 6
    python benchmarks/curves.py --glue-dir ../shared/glue --tasks mrpc --inits teacher --layers "1,3,5" --epochs 6
    python benchmarks/curves.py --glue-dir ../shared/glue --tasks cola --inits teacher --teacher-epochs 6 --epochs 6
    python benchmarks/curves.py --summary          # the curves and the plateau check, from the results
    python benchmarks/curves.py --plot results/curves   # one PNG per task and initialisation (dev metric per epoch)

Per task, a teacher is fine-tuned by the recipe's ``teacher`` settings with the dev metric after every epoch
(its own folder ``work/curves/<task>/teacher``, so the v1 suite's teacher and settings hashes are untouched;
``--teacher-epochs`` trains a teacher of another budget, ``…/teacher-<E>ep``, for a task whose teacher has not reached
its plateau in the recipe's epochs, and that command's students distil from it). A recorded teacher whose folder is
gone (``work/`` is not committed: a new machine) is trained again.
Then each method × initialisation × seed distils a student for ``--epochs`` epochs with the dev metric after
every epoch: ``teacher`` = the chosen layers and the head of the fine-tuned teacher (``--student teacher``),
``pretrained`` = the layers of the recipe's pretrained student model (v1's protocol; under a recipe of
teacher-initialised students, v2's, the pretrained model its teacher is fine-tuned from). ``--layers`` compares the
choice of layers: the recipe's ``student_layers`` (the first k) by default, or explicit 0-based sets such as ``1,3,5`` (every other
layer, ending with the top one; a set's runs go to ``…/<method>/layers-1-3-5/seed<k>``). All of them read one
teacher-output cache per task. Every finished run is appended at once to ``results/curves.jsonl`` with its
curve; a run already recorded with the same settings is skipped, so the study resumes where it stopped, and
several workers may run the same command (each job is taken under a file lock; start each with
``OMP_NUM_THREADS=1``). ``touch work/curves/STOP`` stops every worker before its next job.

The plateau rule (issue "Benchmark v2"): a curve has reached its plateau when its last two evaluations are
within 1 point of the main metric.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import (  # noqa: E402
    DEFAULT_RECIPE,
    _claim,
    _clean_output_dir,
    _csv,
    _prepare_output_dir,
    append_record,
    curve_points,
    load_recipe,
    method_row,
    read_records,
    recipe_section,
    run_record,
    runnable,
    settings_hash,
    teacher_fingerprint,
)

DEFAULT_RESULTS = HERE / "results" / "curves.jsonl"
DEFAULT_WORK_DIR = HERE / "work" / "curves"
INITS = ("teacher", "pretrained")
#: a curve whose last two evaluations differ by at most this many points of the main metric has plateaued
PLATEAU_POINTS = 1.0

logger = logging.getLogger("fsdkit.benchmarks.curves")


def teacher_dir(work_dir: Path, task: str, epochs: float | None = None) -> Path:
    """The task's teacher folder: ``teacher``, or ``teacher-<E>ep`` for a teacher budget other than the recipe's."""
    return work_dir / task / ("teacher" if epochs is None else f"teacher-{epochs:g}ep")


def teacher_settings(
    recipe: dict[str, Any], task: str, glue_dir: str, work_dir: Path, epochs: float | None = None
) -> dict[str, Any]:
    """The teacher's run settings; ``epochs``: a budget other than the recipe's (``--teacher-epochs``, the teacher's
    plateau study: recorded in the settings, so its hash is the one a recipe with that budget gives)."""
    # a whole number as a recipe writes it (6, not 6.0): the hash must equal the recipe's
    budget = {} if epochs is None else {"epochs": int(epochs) if float(epochs).is_integer() else epochs}
    return {
        **recipe["shared"],
        **recipe_section(recipe, "teacher", task),
        **budget,
        "eval_strategy": "epoch",
        "task": task,
        "data_dir": glue_dir,
        "output_dir": str(teacher_dir(work_dir, task, epochs)),
        "progress": False,
    }


def student_settings(
    recipe: dict[str, Any],
    task: str,
    method: str,
    init: str,
    seed: int,
    epochs: float,
    glue_dir: str,
    work_dir: Path,
    layers: list[int] | None = None,
    teacher_epochs: float | None = None,
) -> dict[str, Any]:
    """A student's run settings; ``layers``: an explicit set of 0-based layers instead of the recipe's
    ``student_layers`` (recorded in the settings; the run folder gets a ``layers-…`` level); ``teacher_epochs``: the
    teacher of that budget (``--teacher-epochs``; its folder is in the settings, and the run folder gets a
    ``teacher-<E>ep`` level)."""
    own = method_row(recipe, method, task)
    student = recipe["student"]["student"]
    if init == "teacher":
        student = "teacher"
    elif student == "teacher":  # a recipe of teacher-initialised students (v2): the model its teacher starts from
        student = recipe["teacher"]["model"]
    teacher = teacher_dir(work_dir, task, teacher_epochs)
    folder = work_dir / task / f"{init}-init" / method
    if teacher_epochs is not None:
        folder = folder / teacher.name
    chosen = {}
    if layers is not None:
        chosen = {"student_layers": layers}
        folder = folder / ("layers-" + "-".join(map(str, layers)))
    return {
        **recipe["shared"],
        **recipe_section(recipe, "student", task),
        **own,
        **chosen,
        "student": student,
        "epochs": epochs,
        "eval_strategy": "epoch",
        "method": method,
        "seed": seed,
        "task": task,
        "data_dir": glue_dir,
        "teacher": str(teacher),
        "teacher_cache": str(teacher.with_name(teacher.name + "-cache")),
        "output_dir": str(folder / f"seed{seed}"),
        "progress": False,
    }


def layer_sets(text: str | None) -> list[list[int] | None]:
    """``--layers``: ``None`` (the recipe's ``student_layers``) or ``;``-separated sets of 0-based layers."""
    if not text:
        return [None]
    sets = []
    for item in text.split(";"):
        try:
            sets.append([int(v) for v in item.split(",") if v.strip()])
        except ValueError:
            raise SystemExit(
                f"--layers {text!r}: expected sets of 0-based layer indices such as '1,3,5;0,1,2'"
            ) from None
    return sets


def plateaued(curve: list[dict[str, Any]], metric: str) -> bool | None:
    values = [point.get(f"eval_{metric}") for point in curve]
    values = [v for v in values if v is not None]
    return None if len(values) < 2 else abs(values[-1] - values[-2]) * 100 <= PLATEAU_POINTS


def run_job(
    kind: str,
    task: str,
    method: str,
    seed: int,
    init: str | None,
    settings: dict[str, Any],
    results: Path,
    teacher_epochs: float | None = None,
    recipe: str = DEFAULT_RECIPE.name,
) -> dict[str, Any]:
    """Train one job (resuming its checkpoint), append its record with the curve and the name of its ``recipe``
    file, delete its checkpoints (and, for a student, its model folder)."""
    from fsdkit import distill, finetune

    out = Path(settings["output_dir"])
    settings = {**settings, "resume": _prepare_output_dir(out)}
    job_hash = settings_hash(settings)
    started = time.time()
    logger.info("running %s %s / %s%s / seed %d", kind, task, method, f" ({init})" if init else "", seed)
    try:
        result = finetune(**settings) if kind == "teacher" else distill(**runnable(settings))
    except Exception as exc:  # noqa: BLE001 — a failed run is recorded and the study goes on
        record = run_record(
            task=task,
            method=method,
            seed=seed,
            settings=settings,
            job_hash=job_hash,
            status="failed",
            started=started,
            error=f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=8),
        )
    else:
        record = run_record(
            task=task,
            method=method,
            seed=seed,
            settings=settings,
            job_hash=job_hash,
            status="ok",
            started=started,
            result=result,
            output_dir=str(out) if kind == "teacher" else None,
        )
        _clean_output_dir(out, keep_model=kind == "teacher")
    record["init"], record["recipe"] = init, recipe
    # which fine-tuning of the teacher (for the teacher: its own weights; see suite.teacher_fingerprint)
    record["teacher_fingerprint"] = teacher_fingerprint(out if kind == "teacher" else settings["teacher"])
    if teacher_epochs is not None:  # a student of another teacher budget (its folder, not its hash, says which)
        record["teacher_epochs"] = teacher_epochs
    append_record(results, record)
    print({k: record.get(k) for k in ("task", "method", "init", "seed", "status", "metrics", "wall_time")}, flush=True)
    return record


def study(args) -> int:
    recipe, work_dir, results = load_recipe(args.recipe), Path(args.work_dir), Path(args.results)
    stop = work_dir / "STOP"
    failed = 0
    for task in _csv(args.tasks):
        jobs: list[tuple[str, str, int, str | None, dict[str, Any]]] = [
            (
                "teacher",
                "teacher",
                int(recipe["teacher"].get("seed", 42)),
                None,
                teacher_settings(recipe, task, args.glue_dir, work_dir, args.teacher_epochs),
            )
        ]
        for seed in (int(s) for s in _csv(args.seeds)):
            for init in _csv(args.inits):
                for layers in layer_sets(args.layers):
                    for method in _csv(args.methods):
                        jobs.append(
                            (
                                "student",
                                method,
                                seed,
                                init,
                                student_settings(
                                    recipe,
                                    task,
                                    method,
                                    init,
                                    seed,
                                    args.epochs,
                                    args.glue_dir,
                                    work_dir,
                                    layers,
                                    args.teacher_epochs,
                                ),
                            )
                        )
        for kind, method, seed, init, settings in jobs:
            if stop.exists():
                logger.info("%s found: stopping", stop)
                return 1 if failed else 0
            of_teacher = None if kind == "teacher" else args.teacher_epochs
            key = (task, method, seed, settings_hash({**settings, "resume": False}), of_teacher)
            # the teacher is waited for (students need it); a student another worker holds is left to it
            with _claim(Path(settings["output_dir"]), wait=kind == "teacher") as held:
                if not held:
                    continue
                done = {
                    (r["task"], r["method"], int(r["seed"]), r.get("settings_hash"), r.get("teacher_epochs"))
                    for r in read_records(results)
                    if r.get("status") == "ok"
                }
                # a recorded teacher whose folder is gone (a new machine: work/ is not committed) is trained again
                if key in done and (kind != "teacher" or (Path(settings["output_dir"]) / "config.json").is_file()):
                    continue
                record = run_job(kind, task, method, seed, init, settings, results, of_teacher, Path(args.recipe).name)
            failed += record["status"] != "ok"
            if kind == "teacher" and record["status"] != "ok":
                break  # nothing to distil from
    return 1 if failed else 0


def curve_metric(record: dict[str, Any], metrics: dict[str, str] | None = None) -> str:
    """The metric a curve is read by: ``metrics``' entry for its task (e.g. the recipe's ``search.metric``, the one its
    epoch rule reads: MRPC accuracy), else the record's main metric."""
    return (metrics or {}).get(record["task"]) or record.get("main_metric") or "accuracy"


def curve_recipe(record: dict[str, Any]) -> str:
    """The name of the recipe file a curve ran with; records without one ran with ``recipe.yaml``, this script's
    default until benchmark v2 became the default."""
    return record.get("recipe", "recipe.yaml")


def curve_rows(records: Iterable[dict[str, Any]], metrics: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per finished curve, in file order: ``task``, ``method``, ``init`` (None for a teacher), ``layers`` (an
    explicit 0-based set, or None for the recipe's first k), ``teacher_epochs`` (a teacher of another budget, or
    None), ``seed``, ``metric`` (:func:`curve_metric`), ``values`` (×100 after every epoch), ``peak`` and ``peak_epoch`` (1-based),
    ``plateau`` (:func:`plateaued`), ``minutes`` (wall time) and ``recipe`` (:func:`curve_recipe`)."""
    rows = []
    for r in records:
        if r.get("status") != "ok" or not r.get("curve"):
            continue
        metric = curve_metric(r, metrics)
        values = [100 * p[f"eval_{metric}"] for p in r["curve"] if f"eval_{metric}" in p]
        layers = r.get("settings", {}).get("student_layers")
        peak = max(range(len(values)), key=values.__getitem__) if values else None
        rows.append(
            {
                "task": r["task"],
                "method": r["method"],
                "init": r.get("init"),
                "layers": layers if isinstance(layers, list) else None,
                "teacher_epochs": r.get("teacher_epochs"),
                "seed": r["seed"],
                "metric": metric,
                "values": values,
                "peak": None if peak is None else values[peak],
                "peak_epoch": None if peak is None else peak + 1,
                "plateau": plateaued(r["curve"], metric),
                "minutes": r.get("wall_time", 0) / 60,
                "recipe": curve_recipe(r),
            }
        )
    return rows


def variant_label(layers: list[int] | None, teacher_epochs: float | None) -> str:
    """What sets a curve apart beside its method and initialisation, as in ``", layers 1,3,5, teacher 6 ep"``: an
    explicit layer set, a teacher of another budget; empty for the recipe's first k layers and teacher."""
    return (f", layers {','.join(map(str, layers))}" if layers is not None else "") + (
        f", teacher {teacher_epochs:g} ep" if teacher_epochs is not None else ""
    )


def summary(results: Path) -> None:
    """Each curve (main metric × 100 after every epoch) and whether it has plateaued."""
    for row in curve_rows(read_records(results)):
        init = row["init"] and row["init"] + variant_label(row["layers"], row["teacher_epochs"])
        label = f"{row['task']} {row['method']}" + (f" ({init})" if init else "") + f" seed {row['seed']}"
        print(
            f"{label}: {row['metric']} {' '.join(f'{v:.1f}' for v in row['values'])} — plateau: {row['plateau']}; "
            f"{row['minutes']:.1f} min"
        )


def plot(results: Path, out_dir: Path, metrics: dict[str, str] | None = None) -> list[Path]:
    """``<task>-<init>.png`` per task and initialisation: the dev metric (:func:`curve_metric`) after every epoch, one
    line per method and schedule length (layer sets apart; recipes apart where a plot has runs of several) — a method
    in one colour, a schedule in one line style —, seeds as a band, the task's teacher dashed."""
    from fsdkit.analysis.plots import learning_curves, save_figure

    records = [r for r in read_records(results) if r.get("status") == "ok" and r.get("curve")]
    teachers = {r["task"]: r for r in records if r["method"] == "teacher"}
    by_plot: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r["method"] != "teacher":
            by_plot.setdefault((r["task"], r.get("init") or "?"), []).append(r)
    groups: dict[tuple[str, str], dict[str, list]] = {}
    styles: dict[str, tuple[str, str]] = {}
    for key, runs in by_plot.items():
        several_recipes = len({curve_recipe(r) for r in runs}) > 1
        for r in runs:
            layers = r.get("settings", {}).get("student_layers")
            schedule = (
                f"{r.get('settings', {}).get('epochs', len(r['curve'])):g} ep"
                + variant_label(layers if isinstance(layers, list) else None, r.get("teacher_epochs"))
                + (f", {curve_recipe(r)}" if several_recipes else "")
            )  # schedules apart
            name = f"{r['method']}, {schedule}"
            styles[name] = (r["method"], schedule)
            groups.setdefault(key, {}).setdefault(name, []).append(curve_points(r, curve_metric(r, metrics)))
    written = []
    for (task, init), curves in sorted(groups.items()):
        teacher = teachers.get(task)
        metric = curve_metric(teacher or next(r for r in records if r["task"] == task), metrics)
        reference = 100 * teacher["metrics"][metric] if teacher and metric in teacher.get("metrics", {}) else None
        fig = learning_curves(
            curves, f"{task}, {init}-initialised students", metric, reference, "teacher (final)", styles=styles
        )
        written.append(save_figure(fig, out_dir / f"{task}-{init}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--tasks", default="mrpc")
    parser.add_argument("--methods", default="nds,vkd")
    parser.add_argument("--inits", default=",".join(INITS), help=f"student initialisations: {', '.join(INITS)}")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--epochs", type=float, default=6.0, help="epochs of every student (dev after each)")
    parser.add_argument(
        "--teacher-epochs",
        type=float,
        default=None,
        help="the teacher's epochs instead of the recipe's (a teacher budget's curve; its own folder "
        "teacher-<E>ep, and the students of this command distil from it)",
    )
    parser.add_argument(
        "--layers",
        default=None,
        help="student layer sets to compare, 0-based, ';'-separated (e.g. '0,1,2;1,3,5'); default: the "
        "recipe's student_layers",
    )
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--results", default=str(DEFAULT_RESULTS))
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--summary", action="store_true", help="print the recorded curves and stop")
    parser.add_argument("--plot", default=None, metavar="DIR", help="write the curves as PNGs into DIR and stop")
    args = parser.parse_args(argv)
    if args.summary:
        summary(Path(args.results))
        return 0
    if args.plot:
        for path in plot(Path(args.results), Path(args.plot)):
            print(path)
        return 0
    if not args.glue_dir:
        parser.error("--glue-dir is required to run the study")
    if bad := set(_csv(args.inits)) - set(INITS):
        parser.error(f"--inits: unknown {sorted(bad)}; choose from {', '.join(INITS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    from fsdkit.cli import unwind_on_termination

    unwind_on_termination()  # `kill`: the run stops like Ctrl-C, resumable from its checkpoint
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return study(args)


if __name__ == "__main__":
    sys.exit(main())
