"""Where the tests find their data: the files shipped under ``tests/fixtures`` (always there) and, optionally, the
full GLUE folder (``$FSDKIT_GLUE_DIR``, else ``../shared/glue`` beside the repository).

The core end-to-end tests read only the shipped files, so they run, and give the same results, on every clone.
A test that needs the full GLUE tasks says why with ``@needs_full_glue("...")`` and is skipped, with that reason,
where the folder is absent. ``FSDKIT_GLUE_DIR=`` (set and empty) runs the suite as if it were absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"

#: the tickets data (24 training, 6 validation, 3 unlabelled test texts; 3 classes)
TICKETS = FIXTURES / "tickets.csv"
TICKETS_DEV = FIXTURES / "tickets_dev.csv"
TICKETS_TEST = FIXTURES / "tickets_test.csv"

#: a GLUE-layout folder with the first rows of MRPC, STS-B and SICK (fixtures/README.md gives the counts)
GLUE_SAMPLE = FIXTURES / "glue"


def _full_glue_dir() -> tuple[Path | None, str]:
    """(the full GLUE folder or None, where it was looked for)."""
    raw = os.environ.get("FSDKIT_GLUE_DIR")
    if raw == "":
        return None, "FSDKIT_GLUE_DIR is set and empty"
    path = Path(raw) if raw is not None else TESTS.parent.parent / "shared" / "glue"
    if not (path / "MRPC" / "train.tsv").is_file():
        return None, f"{path} is absent"
    return path, str(path)


FULL_GLUE_DIR, FULL_GLUE_WHERE = _full_glue_dir()


def needs_full_glue(why: str):
    """Mark a test that needs the full GLUE tasks; ``why``: what it checks that the shipped sample cannot show.

    Where the folder is absent the test is skipped with ``why`` and where the folder was looked for."""
    skip = pytest.mark.skipif(
        FULL_GLUE_DIR is None,
        reason=f"needs the full GLUE tasks ({why}): {FULL_GLUE_WHERE}; point FSDKIT_GLUE_DIR at a GLUE folder to run it",
    )

    def mark(test):
        return pytest.mark.full_glue(skip(test))

    return mark


def mrpc_run(glue_dir, **options) -> dict:
    """Options of a small real MRPC run (batch 8, 64 tokens, no progress bar); ``options`` add to or replace them."""
    base = dict(task="mrpc", data_dir=str(glue_dir), batch_size=8, logging_steps=2, progress=False, max_length=64)
    return {**base, **options}
