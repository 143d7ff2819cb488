"""Checkpoint recovery: which ``checkpoint-N`` of a run is complete, and where a ``--resume`` run continues.

A save cut short by a kill leaves a checkpoint with a file missing, empty or truncated; it is named, skipped and
removed, and the run resumes from the last complete one (bit-for-bit the weights of an uninterrupted run: tested).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fsdkit.artifacts import read_json_object

logger = logging.getLogger("fsdkit")

CHECKPOINT_FILES = ("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a file missing, empty or unreadable), or None if complete."""
    from safetensors import SafetensorError, safe_open

    for name in CHECKPOINT_FILES:
        path = checkpoint / name
        if not path.is_file() or path.stat().st_size == 0:
            return f"{name} is missing or empty"
    try:
        state = read_json_object(checkpoint / "trainer_state.json")
    except ValueError:
        return "trainer_state.json is not valid JSON"
    if "global_step" not in state:
        return "trainer_state.json has no global_step"
    try:
        with safe_open(str(checkpoint / "model.safetensors"), "pt"):
            pass
    except (SafetensorError, OSError) as exc:
        return f"model.safetensors is incomplete ({exc})"
    return None


def last_complete_checkpoint(folder: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete ``checkpoint-N`` in ``folder``, and each newer one skipped with the reason."""
    found = (
        sorted(
            (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
            reverse=True,
        )
        if folder.is_dir()
        else []
    )
    skipped: list[tuple[Path, str]] = []
    for checkpoint in found:
        reason = incomplete_reason(checkpoint)
        if reason is None:
            return checkpoint, skipped
        skipped.append((checkpoint, reason))
    return None, skipped


def resume_checkpoint(config, out: Path) -> str | None:
    """The checkpoint a ``--resume`` run continues from: the last complete one (those cut short by a kill are
    removed), or None — no ``--resume``, or a run killed before its first checkpoint, which starts afresh."""
    if not config.resume:
        return None
    last, skipped = last_complete_checkpoint(out / "checkpoints")
    for checkpoint, reason in skipped:  # a save cut short by a kill: unusable, and in the way of the next save
        logger.warning("--resume skips and removes %s: %s (a save interrupted by a kill?)", checkpoint.name, reason)
        shutil.rmtree(checkpoint, ignore_errors=True)  # every process of a multi-process run does this
    if last is None:  # killed before its first checkpoint: nothing to resume, so the run starts from the beginning
        logger.warning(
            "--resume: no complete checkpoint in %s (the run stopped before its first one): starting from "
            "the beginning",
            out / "checkpoints",
        )
        return None
    logger.info("resuming from %s", last)
    return str(last)
