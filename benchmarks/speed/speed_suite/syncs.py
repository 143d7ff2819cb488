"""Part 5, host synchronisations: the reads of tensor values per training step, and their SPEED.md section."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from speed_suite.common import BATCH_SIZE, THREADS, TimedBatches, fixed_batches, mrpc_rows
from speed_suite.training import fsdkit_worker


class CountedBatches(TimedBatches):
    """Yields the batches of :class:`TimedBatches`, counting the reads of tensor values into Python (``.item()``,
    ``.tolist()``, ``bool``/``int``/``float`` of a tensor) between consecutive requests: the reads of each step."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__")

    def __iter__(self):
        reads = [0]
        real = {name: getattr(torch.Tensor, name) for name in self.NAMES}

        def counted(name):
            def read(tensor, *args, **kwargs):
                reads[0] += 1
                return real[name](tensor, *args, **kwargs)

            return read

        self.step_reads: list[int] = []
        try:
            for name in self.NAMES:
                setattr(torch.Tensor, name, counted(name))
            for batch in super().__iter__():
                self.step_reads.append(reads[0])
                reads[0] = 0
                yield batch
        finally:
            for name, method in real.items():
                setattr(torch.Tensor, name, method)


def sync_bench(args) -> dict[str, Any]:
    """Reads of tensor values per training step (each one a host–device synchronisation on an accelerator) of fsdkit
    VKD and FSD with the live teacher, on the CPU and with the similarities on their accelerator path (the CPU taken
    for an accelerator: ``fsdkit.losses.similarities._on_accelerator`` answering yes). Counts, not times: the load
    of the machine does not change them."""
    from fsdkit.losses import similarities

    torch.set_num_threads(THREADS)
    encoded, collator = mrpc_rows(args.glue_dir, 2 * BATCH_SIZE)
    batches = fixed_batches(encoded, collator, 2)
    out: dict[str, Any] = {}
    real = similarities._on_accelerator
    for path in ("cpu", "accelerator"):
        similarities._on_accelerator = (lambda z: True) if path == "accelerator" else real
        try:
            for method in ("vkd", "fsd"):
                counted = CountedBatches(batches, 2, 1)
                with tempfile.TemporaryDirectory() as tmp:
                    fsdkit_worker(method, False, counted, encoded, collator, Path(tmp))
                # the reads of a step are counted at the next request: skip the first request and the warm-up steps
                out[f"fsdkit-{method} ({path})"] = {"reads_per_step": counted.step_reads[3:]}
        finally:
            similarities._on_accelerator = real
    return out


def syncs_section(syncs: dict[str, Any] | None) -> list[str]:
    if not syncs:
        return ["Not measured (see `--parts`)."]
    lines = [
        "Reads of tensor values into Python per training step (`.item()`, `.tolist()`, `bool(t)`, ...: on an "
        "accelerator each one makes the host wait for the device), counted over the steps of one pass (live "
        'teacher); "accelerator": the similarities on their accelerator path (the CPU taken for one).',
        "",
        "| Configuration | reads per step |",
        "|---|---|",
    ]
    lines += [f"| {name} | {', '.join(map(str, r['reads_per_step']))} |" for name, r in syncs.items()]
    vkd, fsd = (syncs.get(f"fsdkit-{m} (accelerator)", {}).get("reads_per_step") for m in ("vkd", "fsd"))
    if vkd and fsd:
        lines += [
            "",
            f"- FSD's structure terms add **{max(fsd) - max(vkd)}** reads per step on the accelerator path "
            "(target 6: none); VKD's are transformers' two attention-mask checks (one per model) and the trainer's "
            "one finiteness check of the loss.",
        ]
    return lines
