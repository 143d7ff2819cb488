"""A measurement in a fresh process: ``run_speed.py --worker CONFIG``, read back from its ``RESULT`` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: the suite's entry point, which runs a worker with ``--worker``
RUN_SPEED = Path(__file__).resolve().parents[1] / "run_speed.py"


def worker_process(args, config: str, *extra: str) -> dict[str, Any]:
    """Run ``--worker config`` in a fresh process; its RESULT line, or the failure."""
    cmd = [
        sys.executable,
        str(RUN_SPEED),
        "--worker",
        config,
        "--glue-dir",
        args.glue_dir,
        "--n-batches",
        str(args.n_batches),
        "--warmup",
        str(args.warmup),
        "--host-memory",
        args.host_memory,
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    return (
        json.loads(line[7:])
        if line
        else {
            "config": config,
            "status": "unavailable",
            "error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}",
        }
    )
