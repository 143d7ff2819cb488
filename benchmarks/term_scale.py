"""The magnitude of every weighted loss term against VKD's, to place each weight's search range (recipe-v3 stage 2).

::

    OMP_NUM_THREADS=1 python benchmarks/term_scale.py --glue-dir ../shared/glue --tasks mrpc,stsb

fsdkit's terms are scaled differently from the paper's (CKA losses in [0, 1], RKD's and PKD's distances, MiniLM's
KL summed over heads), so the paper's grid (1e-7 … 1) does not carry over. Per task, from the search's teacher
(``work/v3/<task>/teacher``): each method's student (the teacher's first 3 layers and head) trains ``--steps``
steps at every weight 1 and stage 1's defaults (learning rate 1e-4, α 0.5, T 5), logging every term each step. A
term's *balance weight* is ``λ* = (α·task + (1−α)·KD) / term``, its logged values' means over the steps: the
weight at which the term is as large as the VKD objective it joins. Its search range is the decades from
``λ*·1e-4`` — the term then is a ten-thousandth of the objective and no longer moves training (and "off", 0, is a
choice too) — to ``λ*·100``, where it outweighs the objective a hundredfold (benchmark v2's best FSDI + MiniLM
weight, λ_I = 213, is 27 times MRPC's intra balance weight: one decade above λ* would have cut it off). The measurement and the ranges go to
``results/v3-term-scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from suite import Suite, load_recipe, reads_memory, recipe_output  # noqa: E402

#: the methods whose terms cover every weight of stage 2 (the FSD ablations and fsdi-minilm reuse these terms)
#: (method, its weights in the run, weight option → the label its term logs); RKD's two weights scale the parts of one
#: term, so each is measured with the other at 0
RUNS = [
    ("pkd", {"beta_pkd": 1.0}, {"beta_pkd": "pkd"}),
    ("rkd", {"lambda_rkd_distance": 1.0, "lambda_rkd_angle": 0.0}, {"lambda_rkd_distance": "rkd"}),
    ("rkd", {"lambda_rkd_distance": 0.0, "lambda_rkd_angle": 1.0}, {"lambda_rkd_angle": "rkd"}),
    ("minilm", {"lambda_minilm": 1.0}, {"lambda_minilm": "minilm"}),
    *(
        (
            method,
            dict.fromkeys(("lambda_intra", "lambda_local", "lambda_global"), 1.0),
            {"lambda_intra": "intra", "lambda_local": "local", "lambda_global": "global"},
        )
        for method in ("fsd", "fsd-procrustes")
    ),
]
ALPHA = 0.5
#: decades below and above the balance weight that a search range spans
BELOW, ABOVE = 4, 2


def search_range(balance: float) -> tuple[float, float]:
    """``[λ*·1e-4, λ*·100]`` widened to whole decades."""
    return (10.0 ** math.floor(math.log10(balance) - BELOW), 10.0 ** math.ceil(math.log10(balance) + ABOVE))


def run_settings(
    task: str, method: str, options: dict[str, float], glue_dir: str, teacher: str, steps: int, memory: str | None
) -> dict[str, Any]:
    """The distill settings of one measurement: ``steps`` steps of ``method`` at ``options`` and stage 1's defaults,
    every term logged each step; the memory only for a method that reads one (another method has no such setting)."""
    return {
        "task": task,
        "data_dir": glue_dir,
        "teacher": teacher,
        "student": "teacher",
        "student_layers": 3,
        "method": method,
        "max_steps": steps,
        "batch_size": 32,
        "logging_steps": 1,
        "learning_rate": 1e-4,
        "alpha": ALPHA,
        "temperature": 5.0,
        "relation_every": 0,
        "progress": False,
        **options,
        **({"memory": memory} if memory and reads_memory(method) else {}),
    }


def measure(
    task: str,
    method: str,
    options: dict[str, float],
    labels: dict[str, str],
    glue_dir: str,
    teacher: str,
    steps: int,
    memory: str | None,
) -> dict[str, float]:
    """Mean logged value of the VKD objective and of each weighted term over ``steps`` training steps."""
    from fsdkit import distill

    out = Path(tempfile.mkdtemp(prefix=f"term-scale-{task}-{method}-"))
    try:
        settings = run_settings(task, method, options, glue_dir, teacher, steps, memory)
        distill(**settings, output_dir=str(out / "run"))
        history = json.loads((out / "run" / "log_history.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    logged = [entry for entry in history if "loss_kd" in entry]
    mean = {key: sum(e[key] for e in logged) / len(logged) for key in logged[0] if key.startswith("loss_")}
    values = {"vkd": ALPHA * mean["loss_task"] + (1 - ALPHA) * mean["loss_kd"], "steps": len(logged)}
    values.update({label: mean[f"loss_{label}"] for label in labels.values()})
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--tasks", default="mrpc,stsb")
    parser.add_argument("--work-dir", default=None, help="the search's work folder (default: recipe-v3's)")
    parser.add_argument("--results", default=None, help="the search's teacher records (default: recipe-v3's)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--output", default=str(HERE / "results" / "v3-term-scale.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.output)
    report = json.loads(out.read_text()) if out.is_file() else {"rule": __doc__.split("\n\n")[2], "tasks": {}}
    recipe = load_recipe(HERE / "recipe-v3.yaml")
    work_dir, results = (
        args.work_dir or recipe_output(recipe, "work_dir"),
        args.results or recipe_output(recipe, "results"),
    )
    for task in args.tasks.split(","):
        # the search's own teacher and memory (built here as the search builds them, if it has not yet)
        suite = Suite.for_task(task, recipe, glue_dir=args.glue_dir, work_dir=work_dir, results=results)
        teacher, memory = suite.ensure_teacher(task), suite.ensure_memory(task)
        rows = {}
        for method, options, labels in RUNS:
            values = measure(task, method, options, labels, args.glue_dir, str(teacher), args.steps, memory)
            for weight, label in labels.items():
                balance = values["vkd"] / values[label]
                rows[f"{method}.{weight}"] = {
                    "term": values[label],
                    "vkd": values["vkd"],
                    "balance": balance,
                    "range": search_range(balance),
                }
                print(
                    json.dumps({"task": task, "method": method, "weight": weight, **rows[f"{method}.{weight}"]}),
                    flush=True,
                )
        report["tasks"][task] = rows
        out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
