"""Part 6, host memory: fsdkit's cached steps with freed host memory kept for the next step against glibc's
allocator as it comes, each alone in its own process; and its SPEED.md section.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from speed_suite.processes import worker_process

#: the steps the host-memory part compares (cached: the teacher's forward, which allocates alike in both, left out)
HOST_MEMORY_CONFIGS = ("fsdkit-vkd-cache", "fsdkit-fsd-cache")
#: each configuration's processes in this order (a drift of the machine's speed over the minutes reaches both alike)
HOST_MEMORY_ORDER = ("reuse", "system", "system", "reuse")


def host_memory_bench(args) -> dict[str, Any]:
    """fsdkit's cached VKD and FSD steps, each alone in its own process (:func:`run_worker`), with freed host memory
    kept for the next step as fsdkit's runs train (``reuse``) and with glibc's allocator as it comes (``system``: a
    process that never calls mallopt, its thresholds dynamic), in the order of :data:`HOST_MEMORY_ORDER`."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for config in HOST_MEMORY_CONFIGS:
        for mode in HOST_MEMORY_ORDER:
            result = worker_process(
                argparse.Namespace(**{**vars(args), "host_memory": mode}), config, "--reps", str(args.reps)
            )
            runs.setdefault(config, {}).setdefault(mode, []).append(result)
            print(
                json.dumps(
                    {"host_memory": config, "mode": mode, "result": {k: v for k, v in result.items() if k != "error"}}
                ),
                flush=True,
            )
    return {"n_batches": args.n_batches, "reps": args.reps, "order": list(HOST_MEMORY_ORDER), "runs": runs}


def host_memory_section(result: dict[str, Any] | None) -> list[str]:
    if not result or "runs" not in result:
        return ["Not measured in this form (re-run `--parts host_memory`)."]
    lines = [
        f"Each configuration alone in its own process, {result['reps']} timed passes over {result['n_batches']} "
        f"batches after the warm-up, four processes per configuration in the order {', '.join(result['order'])}. "
        "'kept': freed host memory kept for the next step, as fsdkit's runs do (`fsdkit.training.host_memory`, on "
        "by default; `--no-reuse-host-memory` turns it off); 'glibc': the allocator as it comes (large tensors "
        "mapped afresh and unmapped at every step, the heap trimmed). examples/s: the mean of the processes' medians; "
        "page faults: the process's minor faults per step over the timed passes.",
        "",
        "| Configuration | kept: examples/s | glibc: examples/s | kept / glibc | kept: page faults per step | "
        "glibc: page faults per step |",
        "|---|---|---|---|---|---|",
    ]
    speed = {}
    for config, modes in result["runs"].items():
        ok = {mode: [r for r in runs if r.get("status") == "ok"] for mode, runs in modes.items()}
        if not all(ok.get(mode) for mode in ("reuse", "system")):
            error = next((r.get("error", "?") for runs in modes.values() for r in runs if r.get("status") != "ok"), "?")
            lines.append(f"| {config} | unavailable: {error.splitlines()[0][:120]} | – | – | – | – |")
            continue
        mean = lambda key, mode: statistics.mean(r[key] for r in ok[mode])  # noqa: E731
        speed[config] = {mode: mean("examples_per_second", mode) for mode in ("reuse", "system")}
        lines.append(
            f"| {config} | {speed[config]['reuse']:.1f} | {speed[config]['system']:.1f} | "
            f"{speed[config]['reuse'] / speed[config]['system']:.2f} | "
            f"{mean('minor_faults_per_step', 'reuse'):.0f} | {mean('minor_faults_per_step', 'system'):.0f} |"
        )
    if len(speed) == 2:
        vkd, fsd = speed["fsdkit-vkd-cache"], speed["fsdkit-fsd-cache"]
        lines += [
            "",
            f"- FSD / VKD with the teacher-output cache (separate processes, so less exact than the floor "
            f"part's): memory kept {fsd['reuse'] / vkd['reuse']:.2f}, glibc {fsd['system'] / vkd['system']:.2f}",
        ]
    return lines
