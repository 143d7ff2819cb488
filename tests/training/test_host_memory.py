"""fsdkit.training.host_memory: freed host memory kept for the next step while a run is active (glibc)."""

from __future__ import annotations

import resource

import pytest
import torch

from fsdkit.training import host_memory

glibc = pytest.mark.skipif(
    host_memory.glibc_malloc() is None,
    reason="mallopt and malloc_trim are glibc's: elsewhere reused_host_memory does nothing (tested below without glibc)",
)

#: 40 MB: above glibc's largest dynamic mmap threshold (32 MiB)
N_FLOATS = 10_000_000
PAGES = N_FLOATS * 4 // 4096


def faults_of_steps(n: int = 10) -> int:
    """Minor page faults of ``n`` "steps", each allocating, writing and freeing a 40 MB tensor (what a training step
    does with its gradients and activations)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.empty(N_FLOATS).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@glibc
def test_a_freed_tensor_is_reused_inside_and_returned_outside():
    with host_memory.reused_host_memory() as active:
        assert active
        faults_of_steps(20)  # the first steps: the heap grows until a step's tensor fits in what the last one freed
        with host_memory.reused_host_memory():  # nested: the outer block's setting holds
            assert faults_of_steps() < PAGES  # then each step reuses the same pages, nothing faulted in again
        assert faults_of_steps() < PAGES  # still in effect after the inner block
        kept = rss_bytes()
    # on exit the freed memory goes back to the system (malloc_trim): the process shrinks by about a step's tensor
    assert rss_bytes() < kept - N_FLOATS * 4 // 2


def test_turned_off_or_without_glibc_it_does_nothing(monkeypatch):
    with host_memory.reused_host_memory(enabled=False) as active:
        assert not active
    monkeypatch.setattr(host_memory, "glibc_malloc", lambda: None)
    with host_memory.reused_host_memory() as active:
        assert not active


@glibc
def test_a_run_keeps_freed_memory_unless_told_not_to(monkeypatch, tmp_path):
    """finetune and distill train inside the block (``reuse_host_memory``, on by default); the flag turns it off."""
    from fsdkit.config import FinetuneConfig
    from fsdkit.training import run

    seen = []

    def fake_train_and_export(setup):
        seen.append(host_memory._depth)
        return {}

    monkeypatch.setattr(run, "_train_and_export", fake_train_and_export)
    monkeypatch.setattr(run, "load_run_data", lambda config: (None, None))
    model = torch.nn.Linear(1, 1)
    model.config = None
    monkeypatch.setattr("fsdkit.models.load_classifier", lambda model_name, task: (model, None))
    monkeypatch.setattr("fsdkit.models.check_model_folder", lambda *a, **k: None)
    monkeypatch.setattr(run, "TermContext", lambda *a, **k: None)
    assert FinetuneConfig().reuse_host_memory
    run.finetune(output_dir=str(tmp_path / "a"))
    run.finetune(output_dir=str(tmp_path / "b"), reuse_host_memory=False)
    assert seen == [1, 0] and host_memory._depth == 0
