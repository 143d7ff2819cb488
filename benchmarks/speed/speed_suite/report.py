"""SPEED.md from results.json, and the machine a part was measured on."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from speed_suite.cka import cka_findings, fsdkit_counterpart
from speed_suite.common import THREADS, fmt_ratio
from speed_suite.floor import floor_section
from speed_suite.host_memory import host_memory_section
from speed_suite.parts import PARTS
from speed_suite.syncs import syncs_section
from speed_suite.training import training_section


def machine() -> dict[str, Any]:
    from suite import cpu_model  # the quality suite's: one reading of the CPU model for both suites

    model = cpu_model()
    versions = {}
    for name in (
        "fsdkit",
        "textbrewer",
        "torchdistill",
        "torch-cka",
        "cka-pytorch",
        "ckatorch",
        "scikit-learn",
        "transformers",
    ):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 — not installed
            versions[name] = None
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": THREADS,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def render(results: dict[str, Any]) -> str:
    """SPEED.md from the results."""
    m = results["machine"]
    fmt_load = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    runs = results.get("part_runs", {})
    measured = []
    for part in PARTS:
        if part in runs:
            r = runs[part]
            where = r.get("machine")
            where = (
                f"{where['cpu_model']}, {where['cpu_count']} CPUs, torch {where['torch_version']}"
                if where
                else "machine not recorded (measured before parts recorded theirs)"
            )
            if r.get("host_memory"):
                where += f", host memory {r['host_memory']}"
            measured.append(
                f"- {part}: `{results['commands'][part]}` — {r['finished_at']}, {where}, fsdkit commit "
                f"{str(r['git_commit'])[:10]}, load average (1/5/15 min) {fmt_load(r['load_start'])} at "
                f"start, {fmt_load(r['load_end'])} at end" + (f"; {r['conditions']}" if r.get("conditions") else "")
            )
        elif part in results:  # a results file written before per-part runs were recorded
            measured.append(
                f"- {part}: `{results['command']}` — load average {fmt_load(results['load_start'])} at "
                f"start of the whole run, {fmt_load(results['load_end'])} at its end"
            )
    lines = [
        "# fsdkit speed suite",
        "",
        f"Machine of the latest part run: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch_version']}, "
        f"{m['torch_threads']} threads, Python {m['python']} (each part below names its own). A load average above "
        "the 2 cores means other jobs competed for them: absolute numbers are then pessimistic; the ratios inside "
        "one table come from one run.",
        "",
        "Measured (each part by its own command; `--parts` re-runs some and keeps the others):",
        "",
        *measured,
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        "",
        "Installation (setup.sh):",
        "",
        *(f"- {line}" for line in results.get("install_status", [])),
        "",
        "## Training throughput (vanilla KD, MiniLM → 3-layer student, MRPC, batch 32, max length 128)",
        "",
    ]
    lines += training_section(results.get("training"))
    lines += ["", "## What FSD must compute beyond VKD (the bound on FSD / VKD)", ""]
    lines += floor_section(results.get("floor"))
    lines += ["", "## Freed host memory kept for the next step, against glibc's allocator as it comes", ""]
    lines += host_memory_section(results.get("host_memory"))
    lines += ["", "## Host synchronisations per training step (fsdkit VKD and FSD)", ""] + syncs_section(
        results.get("syncs")
    )
    lines += ["", "## CKA of FSDI and FSDL (forward + backward; forward only where marked)", ""]
    reps = next((b.get("reps") for b in results.get("cka", {}).values() if b.get("order") == "interleaved"), None)
    if reps:
        lines += [
            f"Each time is the median of {reps} rounds; every round calls every implementation once, the order "
            "rotated each round, so a drift of the machine's speed reaches them alike.",
            "",
        ]
    for view, block in results.get("cka", {}).items():
        desc = (
            "FSDI: one CKA per sample over its tokens"
            if view == "intra"
            else "FSDL: one CKA over the batch's flattened rows"
        )
        lines += [
            f"### {view} — {desc}; x {block['shape_x']}, y {block['shape_y']}",
            "",
            "| Implementation | time (ms) | relative to fsdkit | max abs diff to fsdkit | agrees to 1e-5 | "
            "max abs diff to float64 |",
            "|---|---|---|---|---|---|",
        ]
        res = block["results"]
        for name, r in res.items():
            if r["status"] != "ok":
                lines.append(f"| {name} | unavailable: {r['error'][:100]} | – | – | – | – |")
                continue
            ref = res[fsdkit_counterpart(name, r, res)].get("seconds")
            diff = (
                f"{r['max_abs_diff']:.2e}"
                if "max_abs_diff" in r
                else "(reference)"
                if name.startswith("fsdkit")
                else "–"
            )
            agree = ("yes" if r["agrees_1e-5"] else "**no**") if "agrees_1e-5" in r else "–"
            exact = f"{r['max_abs_diff_float64']:.2e}" if "max_abs_diff_float64" in r else "–"
            label = name + ("" if r["backward"] else f" — forward only{': ' + r['note'] if r.get('note') else ''}")
            lines.append(
                f"| {label} | {1000 * r['seconds']:.2f} | {fmt_ratio(r['seconds'], ref)} | {diff} | {agree} | {exact} |"
            )
        lines += [""] + cka_findings(res) + [""]
    km = results.get("kmeans")
    if km is None:
        return "\n".join(lines + ["## k-means of the teacher memory", "", "Not measured (see `--parts`).", ""]) + "\n"
    lines += [
        f"## k-means of the teacher memory ({km['rows'][0]} MRPC rows × {km['rows'][1]} dims — flattened penultimate "
        f"layer — K = {km['k']})",
        "",
        "| Procedure | time (s) | final inertia | relative to fsdkit | iterations |",
        "|---|---|---|---|---|",
    ]
    ref = km["fsdkit kmeans"]["inertia"]
    for name in ("fsdkit kmeans", "scikit-learn KMeans", "reference procedure (3 epochs)"):
        r = km[name]
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['inertia']:.4g} | {r['inertia'] / ref:.3f} | {r['iterations']} |"
        )
    sk = km["scikit-learn KMeans"]
    lines += [
        "",
        f"- fsdkit / scikit-learn time: **{km['fsdkit kmeans']['seconds'] / sk['seconds']:.2f}** (≤ 0.15) at "
        f"inertia {ref / sk['inertia']:.4f} × scikit-learn's (within 1 %: {abs(ref / sk['inertia'] - 1) <= 0.01})",
    ]
    if "encoding_seconds" in km:
        lines.append(
            f"- the memory build's encoding pass (the teacher's forward over the {km['rows'][0]} rows, batch 64), "
            f"not part of the k-means times above: {km['encoding_seconds']:.1f} s"
        )
    lines += ["", "Raw numbers: [results.json](results.json)."]
    return "\n".join(lines) + "\n"
