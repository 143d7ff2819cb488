"""Shared fixtures: the GLUE-layout sample shipped under tests/fixtures/glue, the packaged MiniLM, quickly fine-tuned
teachers. Data locations (and the optional full GLUE folder) are in data_paths.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_paths import GLUE_SAMPLE, TICKETS, TICKETS_DEV

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The GLUE-layout sample shipped with the tests (the first rows of MRPC, STS-B and SICK): the core end-to-end
    tests read it on every machine, whether or not the full GLUE folder is present."""
    return GLUE_SAMPLE


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from fsdkit.models import resolve_model_path

    return resolve_model_path("minilm")


@pytest.fixture(scope="session")
def mrpc_teacher(glue_dir, tmp_path_factory) -> Path:
    """The packaged MiniLM fine-tuned for a few real steps on the shipped MRPC rows (a real teacher folder, quickly)."""
    from fsdkit import finetune

    out = tmp_path_factory.mktemp("teacher")
    finetune(
        task="mrpc",
        data_dir=str(glue_dir),
        output_dir=str(out),
        max_steps=6,
        batch_size=16,
        max_train_samples=96,
        max_eval_samples=32,
        logging_steps=2,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tickets_teacher(tmp_path_factory) -> Path:
    """The packaged MiniLM fine-tuned for two steps on the shipped tickets data: a real teacher folder without
    ../shared (a contributor's clone runs every test that uses it)."""
    from fsdkit import finetune

    out = tmp_path_factory.mktemp("tickets-teacher")
    finetune(
        train_file=str(TICKETS),
        validation_file=str(TICKETS_DEV),
        output_dir=str(out),
        max_steps=2,
        batch_size=8,
        max_length=32,
        logging_steps=1,
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for modules of small tensor problems: a second thread only adds synchronisation
    (and, on a shared machine, contention that can make them many times slower)."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(previous)


@pytest.fixture
def attention_batch():
    """Attention-level terms' tests (MiniLM, internal KD): two heads, widths 6 (student) and 4 (teacher), one padded
    sample, float64."""
    from types import SimpleNamespace

    import torch

    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    scores_s = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    scores_t = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    values_s = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    values_t = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    hidden_s = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    hidden_t = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    return SimpleNamespace(
        mask=mask,
        scores_s=scores_s,
        scores_t=scores_t,
        values_s=values_s,
        values_t=values_t,
        hidden_s=hidden_s,
        hidden_t=hidden_t,
    )
