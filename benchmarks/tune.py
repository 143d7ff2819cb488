"""Benchmark v1's weight search, its fair-tuning protocol (benchmarks/recipe.yaml, ``tuning``; v2 tunes with
``search.py``).

::

    python benchmarks/tune.py --glue-dir ../shared/glue [--methods minilm,rkd,...]

On the recipe's tuning task and seed (MRPC, seed 1), every method's candidate weights (the same 3-value grid
size for every method) are each distilled once with the shared settings and scored on the dev set; one JSON
line per candidate goes to ``benchmarks/results/tuning.jsonl`` (recorded and skipped like the suite's runs,
with the ``candidate`` added). The teacher is the suite's (fine-tuned first if needed, recorded in the suite's
results file). The best candidate per method (main metric; a tie goes to the grid's middle value, the published
default) is printed; copy it into the recipe's ``methods``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import (  # noqa: E402
    V1_RECIPE,
    V1_RESULTS,
    V1_WORK_DIR,
    Suite,
    done_keys,
    load_recipe,
    parse_overrides,
    read_records,
)

DEFAULT_TUNING = HERE / "results" / "tuning.jsonl"


def best_candidates(records: list[dict], main_metric: str, grid: dict[str, list] | None = None) -> dict[str, dict]:
    """Method → its ``ok`` tuning record with the highest ``main_metric``.

    A tie goes to the method's published default, the middle of its grid (default / 3, default, 3 × default):
    equal scores give no reason to move away from it (e.g. candidates that all collapse to the majority class).
    """

    def default(record: dict) -> bool:
        values = (grid or {}).get(record["method"]) or []
        return bool(values) and record.get("candidate") == values[len(values) // 2]

    best: dict[str, dict] = {}
    for r in records:
        if r.get("status") != "ok" or main_metric not in r.get("metrics", {}):
            continue
        current = best.get(r["method"])
        if current is None or (r["metrics"][main_metric], default(r)) > (
            current["metrics"][main_metric],
            default(current),
        ):
            best[r["method"]] = r
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--methods", default=None, help="comma-separated (default: every method in tuning.grid)")
    parser.add_argument("--recipe", default=str(V1_RECIPE))
    parser.add_argument("--tuning-results", default=str(DEFAULT_TUNING))
    parser.add_argument("--results", default=str(V1_RESULTS), help="the suite's results (the teacher's record)")
    parser.add_argument("--work-dir", default=str(V1_WORK_DIR))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fsdkit.data import get_task

    recipe = load_recipe(args.recipe)
    tuning = recipe["tuning"]
    task, seed, grid = get_task(tuning["task"]).name, int(tuning["seed"]), tuning["grid"]
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(grid)
    overrides = parse_overrides(args.overrides)
    work_dir = Path(args.work_dir)
    # the teacher: the suite's own, recorded in the suite's results file
    Suite(
        glue_dir=args.glue_dir,
        tasks=[task],
        methods=[],
        seeds=[],
        results=Path(args.results),
        work_dir=work_dir,
        recipe=recipe,
        overrides=overrides,
    ).run()
    suite = Suite(
        glue_dir=args.glue_dir,
        tasks=[task],
        methods=methods,
        seeds=[seed],
        results=Path(args.tuning_results),
        work_dir=work_dir,
        recipe=recipe,
        overrides=overrides,
        keep_seed=seed,
        stop_file=work_dir / "STOP",
    )  # models kept: the chosen one becomes the suite's
    if not (suite.teacher_dir(task) / "config.json").is_file():
        raise SystemExit(f"no teacher in {suite.teacher_dir(task)}: see {args.results}")
    done = done_keys(read_records(suite.results))
    for method in methods:
        for i, candidate in enumerate(grid.get(method, [])):
            settings = {
                **suite.student_settings(task, method, seed),
                **candidate,
                "output_dir": str(work_dir / task / "tuning" / method / f"candidate{i}"),
            }
            if (task, method, seed, suite.job_hash(task, method, settings)) in done:
                continue
            if suite.stop_requested():
                return 0
            suite.run_one(task, method, seed, settings, extra={"candidate": candidate, "tuning": True})
    main_metric = get_task(task).main_metric
    current, _ = suite.split_current(read_records(suite.results))  # runs of an earlier recipe do not compete
    for method, record in best_candidates(current, main_metric, grid).items():
        print(json.dumps({"method": method, "best": record["candidate"], main_metric: record["metrics"][main_metric]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
