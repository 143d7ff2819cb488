"""The run record: ``fsdkit_run.json`` in every training output folder (its config, terms, timings, metrics, curve,
versions), written by :func:`fsdkit.training.run.distill` / ``finetune`` and read by the analyses, the model card,
the demo, ``fsdkit predict`` (a model's text columns) and the benchmarks — one file name, one reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsdkit.artifacts import read_json_object

#: the run record's file name in a training output folder
RUN_RECORD = "fsdkit_run.json"


def read_run_record(folder: str | Path) -> dict[str, Any] | None:
    """The run record of a training output folder, or None when the folder has none."""
    path = Path(folder) / RUN_RECORD
    return read_json_object(path) if path.is_file() else None
