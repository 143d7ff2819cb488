"""The speed suite: fsdkit against TextBrewer, torchdistill and the CKA libraries, side by side in one run.

::

    bash benchmarks/speed/setup.sh                       # once: benchmarks/speed/.venv with the other libraries
    benchmarks/speed/.venv/bin/python benchmarks/speed/run_speed.py --glue-dir ../shared/glue

Writes ``benchmarks/speed/results.json`` and ``benchmarks/speed/SPEED.md``. Every measurement uses identical
inputs across libraries, excludes warm-up iterations, reports the median of several repetitions, and pins
``torch.set_num_threads(2)``.

1. **Training throughput and peak memory** of the same distillation — MiniLM teacher (the packaged
   all-MiniLM-L6-v2, 6 layers) → 3-layer student (its first 3 layers), vanilla KD (α = 0.5, T = 5, AdamW
   lr 1e-4) on the same fixed, dynamically padded MRPC batches (batch 32, max length 128) — in fsdkit
   (``DistillationTrainer.compute_loss``, backward, optimizer step), TextBrewer 0.2.1 (``BasicDistiller.train``) and
   torchdistill 1.1.5 (``DistillationBox.forward_process`` / ``post_forward_process``). Each library runs in its
   own process (peak RSS = ``VmHWM`` of that process; the increase over the RSS after loading the models is
   the training's own memory). Step times come from the moments the library's own loop asks for the next batch.
   Throughput and its ratios come from one process in which the configurations take turns pass by pass (each
   library's own loop in its own thread, one running at a time): the machine's speed drifts (up to 2× over minutes
   here), and a ratio taken within a round of turns cancels that drift.
   Also fsdkit FSD (intra + local + memory structure, K = 100) against fsdkit VKD, with the live teacher and with
   the teacher-output cache (:mod:`fsdkit.training.teacher_cache`).
2. **CKA** as FSDI (per-sample token CKA, B × L × D) and FSDL (batch CKA of flattened rows) use it, forward +
   backward, fsdkit's batched ``linear_cka`` / ``debiased_cka`` against ckatorch (``cka_base``, biased),
   cka-pytorch (``hsic1``, unbiased) and torch-cka (``CKA._HSIC``, unbiased; returns Python floats, so no
   backward) on the same inputs: agreement (max |Δ|) and time, and the time of the bare Gram products (the lower
   bound of any implementation).
3. **k-means of the FSDG teacher memory**: fsdkit's streaming k-means (k-means++, Lloyd to tolerance) against
   scikit-learn's ``KMeans`` (k-means++, n_init = 1, same tolerance) and the reference code's procedure (docs/math.md:
   a running average whose counters are reset every mini-batch step, 3 epochs ≈ one Lloyd step): time and final
   inertia on the same teacher rows.
4. **FSD's floor** (``--parts floor``): fsdkit's VKD and FSD steps (live and cached) take turns in one process
   with what FSD's terms compute on the same batches' shapes (:class:`FloorWork`: the terms as they run, only the
   matrix products they need, the student memory's update), so the bound on FSD / VKD comes from one run.
5. **Host synchronisations** (``--parts syncs``): reads of tensor values per training step.
6. **Host memory** (``--parts host_memory``): fsdkit's cached steps with freed host memory kept for the next step
   (as its runs train) against glibc's allocator as it comes, each alone in its own process.

A library that cannot be imported is recorded as unavailable (with the error) instead of failing the suite.

This file is the entry point (its options, the parts run, results.json and SPEED.md written); the parts live in
``speed_suite/``: ``common`` (settings, inputs, timed batches), ``training``, ``cka``, ``kmeans``, ``floor``,
``syncs``, ``host_memory``, ``processes`` (a worker in a fresh process), ``parts`` (the measurements by name) and
``report`` (SPEED.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the quality suite's helpers (suite.cpu_model)
sys.path.insert(0, str(HERE))  # the suite's parts: speed_suite

from speed_suite.common import BATCH_SIZE, MAX_LENGTH, THREADS, TRAIN_CONFIGS  # noqa: E402
from speed_suite.parts import MEASURE, PARTS  # noqa: E402
from speed_suite.report import machine, render  # noqa: E402
from speed_suite.training import run_paired, run_worker  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", default=str(ROOT.parent / "shared" / "glue"))
    parser.add_argument("--output-dir", default=str(HERE))
    parser.add_argument("--n-batches", type=int, default=6, help="batches per timed pass")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps before the timed passes")
    parser.add_argument("--reps", type=int, default=3, help="timed passes of a configuration alone in its process")
    parser.add_argument(
        "--cka-reps",
        type=int,
        default=50,
        help="rounds of the CKA timings (each round calls every implementation once, rotated)",
    )
    parser.add_argument(
        "--paired-reps",
        type=int,
        default=8,
        help="rounds of the configurations taking turns in one process (one pass each per round)",
    )
    parser.add_argument(
        "--floor-reps",
        type=int,
        default=8,
        help="rounds of the floor part (VKD's and FSD's steps and FSD's floor taking turns)",
    )
    parser.add_argument("--kmeans-rows", type=int, default=1024)
    parser.add_argument("--kmeans-k", type=int, default=100)
    parser.add_argument("--configs", default=",".join(TRAIN_CONFIGS))
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="which measurements to (re)run; the others are kept from OUTPUT_DIR/results.json",
    )
    parser.add_argument("--render-only", action="store_true", help="rewrite SPEED.md from OUTPUT_DIR/results.json")
    parser.add_argument(
        "--conditions",
        default=None,
        help="what the load average cannot tell (e.g. other jobs paused), recorded with each part run",
    )
    parser.add_argument(
        "--host-memory",
        choices=("reuse", "system"),
        default="reuse",
        help="reuse: the training processes keep freed host memory for the next step, as fsdkit's "
        "runs do (fsdkit.training.host_memory; process-wide, so the other libraries get it too); "
        "system: glibc's defaults",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(THREADS)
    if args.worker:
        from fsdkit.training.host_memory import reused_host_memory

        try:
            # fsdkit trains inside reused_host_memory; the setting is process-wide, so in a paired process the other
            # libraries' loops get it too (which can only favour them)
            with reused_host_memory(args.host_memory == "reuse"):
                result = run_worker_command(args)
        except Exception as exc:  # noqa: BLE001 — recorded by the parent
            import traceback

            result = {
                "config": args.worker,
                "status": "unavailable",
                "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            }
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    command = "python benchmarks/speed/run_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.output_dir)
    if args.render_only:
        results = json.loads((out / "results.json").read_text())
        (out / "SPEED.md").write_text(render(results))
        print(f"wrote {out / 'SPEED.md'}")
        return 0
    from fsdkit.training.run import git_commit

    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    status_file = Path(sys.prefix) / "install-status.txt"  # written by setup.sh
    previous = out / "results.json"
    results: dict[str, Any] = (
        json.loads(previous.read_text()) if set(parts) != set(PARTS) and previous.is_file() else {}
    )
    results.update(
        {
            "machine": machine(),
            "install_status": status_file.read_text().splitlines() if status_file.is_file() else [],
            "settings": {"batch_size": BATCH_SIZE, "max_length": MAX_LENGTH},
        }
    )
    results.setdefault("commands", {})
    results.setdefault("part_runs", {})
    for part in parts:
        started = os.getloadavg()
        results[part] = MEASURE[part](args)
        results["commands"][part] = command.strip()
        here = results["machine"]  # each part keeps the machine it ran on: parts of one file may come from several
        results["part_runs"][part] = {
            "load_start": started,
            "load_end": os.getloadavg(),
            "git_commit": git_commit(),
            "finished_at": time.strftime("%Y-%m-%d %H:%M"),
            "conditions": args.conditions,
            "host_memory": args.host_memory,
            "machine": {k: here[k] for k in ("cpu_model", "cpu_count", "torch_version")},
        }
        print(json.dumps({part: results[part]})[:2000], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "SPEED.md").write_text(render(results))
    print(f"wrote {out / 'results.json'} and {out / 'SPEED.md'}")
    return 0


def run_worker_command(args) -> dict[str, Any]:
    """``--worker paired:A,B,...`` (the configurations taking turns in this process) or ``--worker CONFIG`` (alone)."""
    if args.worker.startswith("paired:"):
        return run_paired(
            args.worker.removeprefix("paired:").split(","), args.glue_dir, args.n_batches, args.warmup, args.reps
        )
    return run_worker(args.worker, args.glue_dir, args.n_batches, args.warmup, args.reps)


if __name__ == "__main__":
    sys.exit(main())
