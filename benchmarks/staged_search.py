"""Benchmark v3's staged, per-task search (recipe-v3.yaml ``search``), run through ``fsdkit sweep``.

::

    OMP_NUM_THREADS=1 python benchmarks/staged_search.py --glue-dir ../shared/glue [--tasks mrpc,stsb] [--stages 1]

Stage 1, per task: the shared knobs (learning rate, α, T) on VKD (study ``v3-<task>-vkd``) and nDS's learning rate
(``v3-<task>-nds``), the same number of trials. Stage 2, per task: every other method's own weights
(``v3-<task>-<method>``), each weight with "off" among its choices, at the learning rate, α and T of stage 1's VKD
best (``fixed_from``), after one run of stage 1's VKD and nDS best on stage 2's teacher (``v3-<task>-vkd-rerun``,
``-nds-rerun``: a machine without ``work/`` fine-tunes the teachers again, to other weights; the row to take is
chosen among the rows of one teacher, :func:`settle`). Studies live in ``results/search-v3.db`` (the recipe's
``search.storage_file``); trial folders and each study's summary under ``work/v3-search/<task>/search/<method>/``.

Several workers may run the same command (give each ``OMP_NUM_THREADS=1``; a second one may take the tasks in
another order). A worker takes the first job, in ``--tasks`` order with every task's stage 1 before any stage 2, whose
study still needs trials and whose inputs are final (a stage-2 study needs its task's stage-1 VKD study finished);
when every open job waits for another worker's trials it waits too, and it stops when every study has its budget.
Each task's teacher (and FSDG memory, for the methods that read one) is built first, as the suite builds them, but
fine-tuned (and clustered) without the holdout rows: a teacher fine-tuned on them scores them from memory, and so do
the students started from its layers, which would select the settings that keep a student closest to its teacher
rather than those that generalise. The table's teachers (work/v3, v2's) are fine-tuned on the whole training set.
Killing a worker loses at most its running trial, which the next worker retries (``fsdkit sweep``'s heartbeat);
rerunning the command resumes. ``touch work/v3-search/STOP`` stops every worker before its next study.

``--settle`` writes the table's recipe, ``recipe-v3-table.yaml``, from the studies that have finished their budget
(:func:`settle`); rerun it as more finish: the suite runs the settled cells and blocks the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import Suite, load_recipe, reads_memory, recipe_output, runnable  # noqa: E402

DEFAULT_RECIPE = HERE / "recipe-v3.yaml"
#: the table's recipe, written by ``--settle``: recipe-v3 with every method's per-task settings
TABLE_RECIPE = HERE / "recipe-v3-table.yaml"
#: how long a worker whose open jobs all wait on another worker sleeps before it looks again (seconds)
POLL = 60


def storage_url(recipe: dict) -> str:
    return f"sqlite:///{HERE / recipe['search']['storage_file']}"


#: what a stage-2 rerun adds to its stage-1 method's study name and trial folder
RERUN_SUFFIX = "-rerun"


def reruns(recipe: dict) -> list[str]:
    """The stage-1 methods stage 2 runs again, once each at their stage-1 best (``search.stage2.rerun``)."""
    return list(recipe["search"]["stage2"].get("rerun") or ())


def is_rerun(recipe: dict, stage: int, method: str) -> bool:
    return stage == 2 and method in reruns(recipe)


def study_name(recipe: dict, task: str, method: str, stage: int = 1) -> str:
    """``<prefix>-<task>-<method>``; a stage-2 rerun of a stage-1 method ``<prefix>-<task>-<method>-rerun``."""
    return f"{recipe['search']['study_prefix']}-{task}-{method}" + (
        RERUN_SUFFIX if is_rerun(recipe, stage, method) else ""
    )


def budget(recipe: dict, stage: int, method: str) -> int:
    """The finished trials a study needs: its stage's ``trials``; a rerun one."""
    return 1 if is_rerun(recipe, stage, method) else int(recipe["search"][f"stage{stage}"]["trials"])


def jobs(recipe: dict, tasks: list[str], stages: list[int]) -> list[tuple[int, str, str]]:
    """(stage, task, method) in the order a worker takes them: every task's stage 1, then every task's stage 2 (its
    reruns first)."""
    search = recipe["search"]
    methods = {1: list(search["stage1"]["methods"]), 2: reruns(recipe) + list(search["stage2"]["methods"])}
    return [(stage, task, method) for stage in stages for task in tasks for method in methods[stage]]


#: the term_scale.py run whose measurement places a stage-2 method's weights: the FSD ablations and FSDI + MiniLM use
#: FSD's terms (the same intra, local and global terms), the others their own
MEASURED_BY = {"pkd": "pkd", "rkd": "rkd", "minilm": "minilm", "fsd-procrustes": "fsd-procrustes"}


def measured_space(space: dict, task: str, method: str, measurement: Path) -> dict:
    """``space`` with every weight's ``low``/``high`` replaced by ``task``'s measured range (term_scale.py's
    ``[λ*·1e-4, λ*·100]`` in whole decades, ``results/v3-term-scale.json``); a task without a measurement stops the
    study before its first trial."""
    tasks = json.loads(measurement.read_text())["tasks"] if measurement.is_file() else {}
    if task not in tasks:
        raise SystemExit(
            f"stage 2 of {task}: its term magnitudes are not measured in {measurement}; run "
            f"`python benchmarks/term_scale.py --glue-dir ... --tasks {task}` first"
        )
    source = MEASURED_BY.get(method, "fsd")
    out = {}
    for weight, spec in space.items():
        low, high = tasks[task][f"{source}.{weight}"]["range"]
        out[weight] = {**spec, "low": low, "high": high}
    return out


def sweep_spec(suite: Suite, stage: int, task: str, method: str) -> dict:
    """The ``fsdkit sweep`` configuration of one study: the suite's student settings for the method, less what the
    study searches or fixes from stage 1, scored on the holdout split after every epoch."""
    recipe = suite.recipe
    search = recipe["search"]
    section = search[f"stage{stage}"]
    rerun = is_rerun(recipe, stage, method)
    space = {} if rerun else dict(section["methods"][method] or {})
    if stage == 2 and section.get("ranges_from") and not rerun:
        space = measured_space(space, task, method, HERE / section["ranges_from"])
    settings = runnable(suite.student_settings(task, method, int(search["seed"])))
    fixed: set[str] = set()
    if rerun:  # every option its stage-1 study searched, at that study's best
        fixed = set(search["stage1"]["methods"][method])
    elif stage == 2:
        fixed = set(section.get("fixed_options") or ())
    base = {k: v for k, v in settings.items() if k not in space and k not in fixed and k != "output_dir"}
    base.update(holdout_fraction=search["holdout_fraction"], eval_strategy="epoch")
    if reads_memory(settings["method"]):
        base["memory"] = suite.ensure_memory(task)
    spec = {
        "command": "distill",
        "base": base,
        "space": space,
        "trials": budget(recipe, stage, method),
        "study_name": study_name(recipe, task, method, stage),
        "storage": storage_url(recipe),
        "startup_trials": int(search["startup_trials"]),
        "seed": int(search["seed"]),
        "output_dir": str(suite.work_dir / task / "search" / (method + RERUN_SUFFIX if rerun else method)),
        # a machine without work/ fine-tunes the teacher again: a study part-way goes on, listing both (teacher_of)
        "accept_teacher_change": True,
    }
    if stage == 2:
        source = method if rerun else section["fixed_from"]
        spec["fixed_from"] = {"study": study_name(recipe, task, source), "options": sorted(fixed)}
    metric = (search.get("metric") or {}).get(task)
    return spec if metric is None else {**spec, "metric": metric}


def study_state(recipe: dict, stage: int, task: str, method: str) -> str:
    """``done`` (its budget finished), ``full`` (every trial of the budget finished or under way elsewhere),
    ``blocked`` (stage 2 before its stage-1 study is done) or ``open``."""
    import optuna

    from fsdkit.sweep import _storage, finished_trials

    section = recipe["search"][f"stage{stage}"]
    source = method if is_rerun(recipe, stage, method) else section.get("fixed_from")
    if stage == 2 and study_state(recipe, 1, task, source) != "done":
        return "blocked"
    storage = _storage(storage_url(recipe), 60)
    try:
        study = optuna.load_study(study_name=study_name(recipe, task, method, stage), storage=storage)
    except KeyError:
        return "open"
    with warnings.catch_warnings():  # "experimental" in optuna: not news
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and queued again, not "under way"
    states = optuna.trial.TrialState
    finished = len(finished_trials(study))  # repeats not counted
    running = len(study.get_trials(deepcopy=False, states=(states.RUNNING,)))
    if finished >= budget(recipe, stage, method):
        return "done"
    return "full" if finished + running >= budget(recipe, stage, method) else "open"


def teacher_of(study) -> str | None:
    """The fingerprint (:func:`suite.teacher_fingerprint`, 12 hex digits) of the teacher a study's students distilled
    from and were made of (a student starts from its teacher's layers, nDS's too): from the ``teacher_sha256`` that
    ``fsdkit sweep`` records, else a ``teacher_fingerprint`` written into a study begun before sweeps recorded their
    teacher (stage 1's: the task's one search teacher of that day, benchmarks/README.md); None when neither is there.
    A study whose trials distilled from several (its teacher fine-tuned again part-way: ``fsdkit sweep``'s
    ``accept_teacher_change``) has theirs joined by ``+``: the teacher of no other study."""
    several = study.user_attrs.get("teachers")
    if several:
        return "+".join(str(sha)[:12] for sha in several)
    recorded = study.user_attrs.get("teacher_sha256") or study.user_attrs.get("teacher_fingerprint")
    return str(recorded)[:12] if recorded else None


def study_progress(recipe: dict, storage: str | None = None) -> list[dict[str, Any]]:
    """Every study of the search, stage by stage and task by task: its budget, trials finished and pruned, the holdout
    value of each finished trial in the order they finished (None: pruned), the best so far after each, the best
    trial (number, value, options) and whether the best still rose in the last third of the budget (a study that
    may not have converged); its failed trials, which the budget does not count: ``failed`` the exception type of
    each that failed by itself (a run that diverged), ``stopped`` how many were stopped or lost their worker;
    ``repeats``, the trials that drew a run scored already (not counted: ``fsdkit.sweep.finished_trials``); its
    cost, ``worker_hours``, the wall time of every trial that ended (pruned, failed and stopped ones included);
    ``teacher``, the fingerprint of its teacher (:func:`teacher_of`); ``rerun``, a stage-1 method's stage-2 rerun. A
    study not yet created has no trials."""
    import optuna

    from fsdkit.sweep import _storage, best_trial, budget_trials, repeat_count, trial_options

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or storage_url(recipe)
    search = recipe["search"]
    out = []
    for stage, task, method in jobs(recipe, list(search["tasks"]), [1, 2]):
        needed = budget(recipe, stage, method)
        row: dict[str, Any] = {"stage": stage, "task": task, "method": method, "budget": needed, "values": []}
        row.update(best_so_far=[], pruned=0, best=None, still_improving=False)
        row.update(study=study_name(recipe, task, method, stage), rerun=is_rerun(recipe, stage, method))
        row.update(failed=[], stopped=0, repeats=0, worker_hours=0.0, teacher=None)
        try:
            study = optuna.load_study(study_name=row["study"], storage=_storage(storage, 60))
        except KeyError:
            out.append(row)
            continue
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        trials = study.get_trials(deepcopy=False)
        errors = [t.user_attrs.get("error", "") for t in trials if t.state == optuna.trial.TrialState.FAIL]
        row["failed"] = [e.split(":")[0] for e in errors if e and not e.startswith("KeyboardInterrupt")]
        row["stopped"] = len(errors) - len(row["failed"])  # stopped, or no heartbeat (a worker that died)
        row["repeats"] = repeat_count(study)
        row["worker_hours"] = sum(
            (t.datetime_complete - t.datetime_start).total_seconds() / 3600
            for t in trials
            if t.datetime_start is not None and t.datetime_complete is not None
        )
        row["teacher"] = teacher_of(study)
        best_value = None
        for trial in budget_trials(study, needed):
            value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
            row["values"].append(value)
            row["pruned"] += value is None
            if value is not None and (best_value is None or sign * value > sign * best_value):
                best_value = value
                row["still_improving"] = not row["rerun"] and len(row["values"]) > 2 * needed / 3
            row["best_so_far"].append(best_value)
        best = best_trial(study, needed)
        if best is not None:
            fixed = (study.user_attrs.get("fixed_from") or {}).get("options") or {}
            row["best"] = {"trial": best.number, "value": best.value, "options": {**fixed, **trial_options(best)}}
        row.update(metric=study.user_attrs.get("metric"), sign=sign, done=len(row["values"]) >= needed)
        out.append(row)
    return out


def terms_in_use(recipe: dict, row: dict[str, Any]) -> int:
    """How many distillation terms a study's best trial trains with: nDS none, VKD its KD term, a stage-2 row the KD
    term, each of its searched weights that is not off (a row whose weights all drew off is VKD again) and each extra
    loss its recipe row always adds (FSDI + MiniLM's attention term). A rerun counts as its stage-1 row."""
    if row["stage"] == 1 or row.get("rerun"):
        return 0 if row["method"] == "nds" else 1
    weights = recipe["search"]["stage2"]["methods"][row["method"]]
    extra = (recipe["methods"].get(row["method"]) or {}).get("losses") or []
    searched = sum(1 for name in weights if row["best"]["options"].get(name))
    return 1 + searched + sum(1 for loss in extra if loss.get("weight", 1.0))


def comparison_teacher(rows: list[dict[str, Any]]) -> str | None:
    """The teacher whose rows a task's ``take`` compares: the one most of its stage-2 studies distilled from alone
    (a study of several teachers counts for none); among equally many, the one its reruns ran on (the teacher of the
    search's latest machine), then the first in the search's order; with no such study, the reruns' (else the first
    row's)."""
    alone = [r["teacher"] for r in rows if r["stage"] == 2 and not r["rerun"] and "+" not in (r["teacher"] or "")]
    if not alone:
        return next((r["teacher"] for r in rows if r["rerun"]), rows[0]["teacher"])
    counts = collections.Counter(alone)
    top = max(counts.values())
    most = [teacher for teacher in counts if counts[teacher] == top]  # in the search's order
    rerun_on = {r["teacher"] for r in rows if r["rerun"] and r["best"] is not None}
    return next((t for t in most if t in rerun_on), most[0])


def settle(recipe_path: Path, out: Path, storage: str | None = None) -> dict[str, Any]:
    """Write the table's recipe ``out`` (``recipe-v3-table.yaml``): ``extends`` the search's recipe, each method row
    with a ``per_task`` entry for every task whose study has finished its budget — the best trial's settings (stage
    2: on top of the stage-1 knobs it fixed), with ``chosen_from`` naming the study, trial and holdout value — and
    ``take``: for each task whose studies have all finished, the row with the best holdout score (the row a user
    should take; ``settled`` says how many of each task's studies have), a tie going to the row with fewer terms in
    use (:func:`terms_in_use`; then the search's order) and the others named in ``tied_with``. A task not settled
    for a method has no entry: the suite blocks that cell (``suite.method_row``).

    ``take`` compares rows of one teacher only (:func:`teacher_of`): a student's score depends on the teacher it is
    made of and distils from, and a teacher fine-tuned again on another machine is another teacher (same recipe and
    seed, other weights). That is the teacher most of the task's stage-2 studies used (:func:`comparison_teacher`);
    the rows of any other are left out, named in ``other_teacher`` (a stage-1 row is then compared through its
    rerun, ``search.stage2.rerun``; a rerun on its stage-1 study's teacher is that study's best run again, and is not
    compared twice). A rerun sets no per-task settings: its stage-1 study does."""
    recipe = load_recipe(recipe_path)
    if any("per_task" in (row or {}) for row in recipe["methods"].values()):
        raise SystemExit(f"--settle: {recipe_path} already has per-task settings; give the search's recipe")
    methods: dict[str, Any] = {name: dict(row or {}) for name, row in recipe["methods"].items()}  # rows not searched
    progress = study_progress(recipe, storage)
    settled: dict[str, list[int]] = {}
    for row in progress:
        task, method, best = row["task"], row["method"], row["best"]
        entry = methods.setdefault(method, {})
        entry.setdefault("per_task", {})
        count = settled.setdefault(task, [0, 0])
        count[1] += 1
        if not row.get("done") or best is None:
            continue
        count[0] += 1
        if row["rerun"]:
            continue
        chosen_from = {"study": row["study"], "trial": best["trial"], "holdout": round(best["value"], 6)}
        entry["per_task"][task] = {**best["options"], "chosen_from": chosen_from}
    take: dict[str, Any] = {}
    for task, (done, total) in settled.items():
        if done < total:
            continue
        rows = [r for r in progress if r["task"] == task]
        teacher = comparison_teacher(rows)
        other = [r for r in rows if r["teacher"] != teacher]
        rows = [r for r in rows if r["teacher"] == teacher]
        same = {r["method"] for r in rows if r["stage"] == 1}
        rows = [r for r in rows if not (r["rerun"] and r["method"] in same)]  # the run its stage-1 row scored
        top = max(r["sign"] * r["best"]["value"] for r in rows)
        tied = [r for r in rows if r["sign"] * r["best"]["value"] >= top - 1e-12]  # in the search's order
        best_row = min(tied, key=lambda r: terms_in_use(recipe, r))  # a tie goes to the simpler row
        take[task] = {"method": best_row["method"], "study": best_row["study"]}
        take[task]["holdout"] = round(best_row["best"]["value"], 6)
        take[task]["metric"] = best_row["metric"]
        if len(tied) > 1:
            take[task]["tied_with"] = [r["method"] for r in tied if r is not best_row]
        if other:
            take[task].update(teacher=teacher, other_teacher=[r["study"] for r in other])
    table = {
        "extends": os.path.relpath(recipe_path.resolve(), out.resolve().parent),
        "title": f"{recipe['title']} (the table: each method at its per-task settings)",
        "settled": {task: f"{done} of {total} studies" for task, (done, total) in settled.items()},
    }
    table.update(methods=methods, take=take)
    header = (
        f"# Generated by `python benchmarks/staged_search.py --settle` from {recipe['search']['storage_file']}: do not\n"
        f"# edit. Each method's per-task settings are its study's best trial on the holdout split (chosen_from); a\n"
        "# task without an entry has not finished that study, and the suite blocks its cells. `take`: the row with the\n"
        "# best holdout score of each task whose studies have all finished (`settled`), the row a user should take.\n"
    )
    from fsdkit.artifacts import atomic_write_text

    atomic_write_text(out, header + yaml.safe_dump(table, sort_keys=False, width=120, allow_unicode=True))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", default=None, help="GLUE folder (the search needs it; --settle does not)")
    parser.add_argument("--tasks", default=None, help="comma-separated, in this worker's order (default: search.tasks)")
    parser.add_argument("--stages", default="1,2", help="comma-separated stages to run (default: 1,2)")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument(
        "--results", default=None, help="the search teachers' records (default: the recipe's outputs.search_results)"
    )
    parser.add_argument(
        "--work-dir", default=None, help="teachers, memories, trial folders (default: outputs.search_work_dir)"
    )
    parser.add_argument(
        "--settle",
        nargs="?",
        const=str(TABLE_RECIPE),
        default=None,
        metavar="OUT",
        help=f"write the table's recipe (default {TABLE_RECIPE.name}) from the finished studies, and stop",
    )
    args = parser.parse_args(argv)
    if args.settle:
        table = settle(Path(args.recipe), Path(args.settle))
        settled = {m: sorted(row["per_task"]) for m, row in table["methods"].items()}
        print(json.dumps({"wrote": args.settle, "settled": settled, "take": table["take"]}, indent=1))
        return 0
    if args.glue_dir is None:
        parser.error("--glue-dir is required for the search")
    from fsdkit.cli import unwind_on_termination

    unwind_on_termination()  # `kill`: the trial stops like Ctrl-C; its study retries it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fsdkit.sweep import sweep

    recipe = load_recipe(args.recipe)
    tasks = args.tasks.split(",") if args.tasks else list(recipe["search"]["tasks"])
    stages = [int(s) for s in args.stages.split(",")]
    work_dir = Path(args.work_dir or recipe_output(recipe, "search_work_dir"))
    suites = {
        task: Suite.for_task(
            task,
            recipe,
            glue_dir=args.glue_dir,
            work_dir=work_dir,
            results=args.results or recipe_output(recipe, "search_results"),
            # the search's teachers and memories never see the holdout rows its trials are scored on
            overrides={"holdout_fraction": recipe["search"]["holdout_fraction"]},
        )
        for task in tasks
    }
    ready: set[str] = set()
    while not (work_dir / "STOP").exists():
        states = {job: study_state(recipe, *job) for job in jobs(recipe, tasks, stages)}
        job = next((j for j, state in states.items() if state == "open"), None)
        if job is None:
            if all(state == "done" for state in states.values()):
                return 0
            time.sleep(POLL)  # the open studies' last trials are under way in another worker, or stage 1 is
            continue
        stage, task, method = job
        if task not in ready:
            suites[task].run()  # the task's teacher, fine-tuned once and recorded like the suite's
            ready.add(task)
        summary = sweep(sweep_spec(suites[task], stage, task, method))
        best = summary["best"] or {}
        print(
            json.dumps(
                {
                    "stage": stage,
                    "task": task,
                    "method": method,
                    "best": best.get("options"),
                    "value": best.get("value"),
                    "trials": summary["trials"],
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
