"""Benchmark v2's equal-budget tuning (recipe.yaml, ``search``), run through ``fsdkit sweep``.

::

    python benchmarks/search.py --glue-dir ../shared/glue [--methods vkd,fsd] [--tasks mrpc]

For each task and method, one Optuna study (``<task>-<method>`` in ``benchmarks/results/search.db``) of
``search.trials`` trials: the suite's student settings for the method, with the shared knobs (learning rate,
alpha, T; nds only the learning rate) and the method's own weights searched, scored on the held-out
``holdout_fraction`` of the training set after every epoch (pruned on that curve). Rerunning resumes; several
workers may run the same command. Each study's summary (best trial, its command line, plots) goes to
``benchmarks/work/<task>/search/<method>/``; the best parameters are printed as JSON lines, to be written into
the recipe's ``methods``. The suite's teacher (and FSDG memory) of each task are built first, as the suite does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import DEFAULT_RECIPE, DEFAULT_RESULTS, DEFAULT_WORK_DIR, Suite, load_recipe, reads_memory, runnable  # noqa: E402

DEFAULT_STORAGE = f"sqlite:///{HERE / 'results' / 'search.db'}"
#: knobs a method without a teacher does not have
TEACHER_KNOBS = ("alpha", "temperature")


def sweep_spec(suite: Suite, task: str, method: str) -> dict:
    """The ``fsdkit sweep`` configuration of one (task, method) study."""
    search = suite.recipe["search"]
    space = {**search["shared_space"], **(search["methods"].get(method) or {})}
    settings = runnable(suite.student_settings(task, method, int(search["seed"])))
    if settings["method"] == "nds":
        space = {k: v for k, v in space.items() if k not in TEACHER_KNOBS}
    base = {k: v for k, v in settings.items() if k not in space and k != "output_dir"}
    base.update(holdout_fraction=search["holdout_fraction"], eval_strategy="epoch")
    if reads_memory(settings["method"]):
        base["memory"] = suite.ensure_memory(task)
    spec = {
        "command": "distill",
        "base": base,
        "space": space,
        "trials": int(search["trials"]),
        "study_name": f"{task}-{method}",
        "output_dir": str(suite.work_dir / task / "search" / method),
    }
    if "startup_trials" in search:  # else fsdkit sweep's default
        spec["startup_trials"] = int(search["startup_trials"])
    metric = (search.get("metric") or {}).get(task)  # the selection metric where the task's main one is unfit
    return spec if metric is None else {**spec, "metric": metric}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--tasks", default=None, help="comma-separated (default: search.tasks)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method in search.methods)")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="the suite's results (the teachers' records)")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument(
        "--teacher-results",
        default=None,
        help="adopt a teacher fine-tuned with the same settings from this results file (suite.py)",
    )
    args = parser.parse_args(argv)
    from fsdkit.cli import unwind_on_termination

    unwind_on_termination()  # `kill`: the run stops like Ctrl-C, resumable from its checkpoint
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fsdkit.sweep import sweep

    recipe = load_recipe(args.recipe)
    tasks = args.tasks.split(",") if args.tasks else list(recipe["search"]["tasks"])
    methods = args.methods.split(",") if args.methods else list(recipe["search"]["methods"])
    for task in tasks:
        suite = Suite(
            glue_dir=args.glue_dir,
            tasks=[task],
            methods=[],
            seeds=[],
            results=Path(args.results),
            work_dir=Path(args.work_dir),
            recipe=recipe,
            teacher_results=Path(args.teacher_results) if args.teacher_results else None,
        )
        suite.run()  # the task's teacher, fine-tuned once and recorded like the suite's
        for method in methods:
            summary = sweep(sweep_spec(suite, task, method), storage=args.storage)
            best = summary["best"] or {}
            print(
                json.dumps(
                    {
                        "task": task,
                        "method": method,
                        "best": best.get("params"),
                        "value": best.get("value"),
                        "trials": summary["trials"],
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
