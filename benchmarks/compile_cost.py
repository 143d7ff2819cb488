"""Does ``torch.compile`` make a v3 search trial cheaper on this CPU? (issue "benchmark v3", item 4)

::

    OMP_NUM_THREADS=1 python benchmarks/compile_cost.py --glue-dir ../shared/glue [--task mrpc] [--steps 103]

The student of a v3 trial — the search teacher's first 3 layers and head (``work/v3/<task>/teacher``), VKD at the
task's stage-1 settings, length-grouped batches of 32 (their shapes change from batch to batch), the teacher's
outputs from the teacher-output cache, scored on the holdout split — trains ``--steps`` optimizer steps (103 = one
MRPC epoch of a trial) twice from the same seed: eager, then with ``--torch-compile`` (transformers'
``torch_compile``: inductor, shapes made dynamic after the first change). Each step's wall time is recorded (the
trainer's ``training_step``, timed from outside), so the compiled run's cost splits into its compilation (the excess
of its first steps over eager's) and its steady step time. Written to ``results/v3-compile.json``: both runs' step
times, the estimated cost of a whole trial (3 epochs) each way, and both holdout scores (compilation must not change
what a trial measures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import Suite, load_recipe, recipe_output, runnable  # noqa: E402

#: stage 1's VKD best trial per task (v3-<task>-vkd in results/search-v3.db), the settings a stage-2 trial runs at
STAGE1 = {"mrpc": {"learning_rate": 1.37e-4, "alpha": 0.877, "temperature": 5.0}}


def timed_run(settings: dict, compiled: bool) -> dict:
    """One run; returns its per-step wall times, total time and holdout metrics."""
    from fsdkit import distill
    from fsdkit.training.trainer import DistillationTrainer

    times: list[float] = []
    original = DistillationTrainer.training_step

    def timed_step(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    DistillationTrainer.training_step = timed_step
    started = time.perf_counter()
    try:
        record = distill(**settings, torch_compile=compiled)
    finally:
        DistillationTrainer.training_step = original
    return {
        "compiled": compiled,
        "wall_s": time.perf_counter() - started,
        "step_s": times,
        "metrics": record["metrics"],
    }


def summary(eager: dict, compiled: dict, steps_per_trial: int) -> dict:
    """Compilation time, steady step times and a whole trial's estimated training time each way."""
    tail = len(eager["step_s"]) // 2  # the second half: compiled shapes seen, caches warm
    eager_step = statistics.median(eager["step_s"][tail:])
    compiled_step = statistics.median(compiled["step_s"][tail:])
    compile_s = sum(compiled["step_s"]) - compiled_step * len(compiled["step_s"])
    return {
        "eager_step_s": eager_step,
        "compiled_step_s": compiled_step,
        "steady_speedup": eager_step / compiled_step,
        "compile_s": compile_s,
        "trial_steps": steps_per_trial,
        "trial_train_s_eager": eager_step * steps_per_trial,
        "trial_train_s_compiled": compile_s + compiled_step * steps_per_trial,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--task", default="mrpc", choices=sorted(STAGE1))
    parser.add_argument("--steps", type=int, default=103, help="optimizer steps of each run (103: one MRPC epoch)")
    parser.add_argument("--recipe", default=str(HERE / "recipe-v3.yaml"))
    parser.add_argument(
        "--work-dir", default=None, help="the search's work folder: teacher, cache (default: the recipe's)"
    )
    parser.add_argument("--output", default=str(HERE / "results" / "v3-compile.json"))
    args = parser.parse_args(argv)
    recipe = load_recipe(Path(args.recipe))
    args.work_dir = args.work_dir or recipe_output(recipe, "work_dir")
    suite = Suite.for_task(args.task, recipe, glue_dir=args.glue_dir, work_dir=args.work_dir, results=os.devnull)
    if not (suite.teacher_dir(args.task) / "config.json").is_file():
        raise SystemExit(f"no teacher in {suite.teacher_dir(args.task)}: run benchmarks/staged_search.py first")
    settings = runnable(suite.student_settings(args.task, "vkd", int(recipe["search"]["seed"])))
    settings.update(STAGE1[args.task], holdout_fraction=recipe["search"]["holdout_fraction"], max_steps=args.steps)
    settings.update(eval_strategy="no", save_steps=10_000)
    epochs = float(settings.pop("epochs"))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for compiled in (False, True):
            settings["output_dir"] = str(Path(tmp) / ("compiled" if compiled else "eager"))
            runs.append(timed_run(settings, compiled))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "step_s"}), flush=True)
    result = {
        "task": args.task,
        "settings": {
            k: v for k, v in settings.items() if k not in ("output_dir", "data_dir", "teacher", "teacher_cache")
        },
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "summary": summary(*runs, steps_per_trial=round(args.steps * epochs)),
        "runs": runs,
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
