"""The speed suite's measurement design (benchmarks/speed/run_speed.py), on fake training loops: configurations
sharing one process take turns pass by pass, in rotated order, each pass timed on its own."""

from __future__ import annotations

import importlib.util
import mmap
import sys
import time
from pathlib import Path

import torch

SPEED = Path(__file__).resolve().parents[2] / "benchmarks" / "speed" / "run_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("run_speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_speed"] = module
    spec.loader.exec_module(module)
    return module


def _part(name: str):
    """A part of the speed suite (``benchmarks/speed/speed_suite/NAME.py``), as the entry point imports it."""
    _load()
    return importlib.import_module(f"speed_suite.{name}")


def test_configurations_take_turns_pass_by_pass_and_a_failing_one_drops_out(monkeypatch):
    rs = _part("training")
    batches = [{"input_ids": torch.tensor([i]), "idx": torch.tensor([i])} for i in range(3)]
    monkeypatch.setattr(rs, "mrpc_rows", lambda glue_dir, n: (None, None))
    monkeypatch.setattr(rs, "fixed_batches", lambda encoded, collator, n: batches)
    ran: list[tuple[str, int]] = []
    slow = {"fast": 0.002, "slow": 0.008}

    def fake_loop(config, timed, encoded, collator, tmp):  # a library's own loop over the batches it is given
        if config == "broken":
            raise RuntimeError("cannot import it")
        for batch in timed:
            ran.append((config, int(batch["input_ids"])))
            time.sleep(slow[config])  # the step

    monkeypatch.setattr(rs, "train_config", fake_loop)
    out = rs.run_paired(["fast", "broken", "slow"], "glue", n_batches=3, warmup=2, reps=4)
    assert (
        out["configs"]["broken"]["status"] == "unavailable" and "cannot import it" in out["configs"]["broken"]["error"]
    )
    # the warm-up of each in turn (2 steps), then rounds of one whole pass each (3 batches), the order rotated each
    # round over the three configurations (the broken one's turns skipped): fast slow | slow fast | slow fast | fast slow
    assert ran[:4] == [("fast", 0), ("fast", 1), ("slow", 0), ("slow", 1)]
    passes = [ran[4 + 3 * i : 7 + 3 * i] for i in range(8)]
    assert len(ran) == 4 + 3 * 8
    assert all([b for _, b in chunk] == [0, 1, 2] and len({c for c, _ in chunk}) == 1 for chunk in passes)
    assert [chunk[0][0] for chunk in passes] == ["fast", "slow", "slow", "fast", "slow", "fast", "fast", "slow"]
    for config in ("fast", "slow"):
        passes = out["configs"][config]["pass_seconds"]
        assert len(passes) == 4 and all(3 * slow[config] <= p < 3 * slow[config] + 0.1 for p in passes)
    assert out["configs"]["fast"]["examples_per_second"] > out["configs"]["slow"]["examples_per_second"]
    ratio = rs.paired_ratio(out, "fast", "slow")
    assert 1.5 < ratio < 4.5  # about 4 (0.008 / 0.002 s per step), less the loop's own overhead


def test_counted_batches_count_the_reads_of_each_step():
    """The syncs part counts the reads of tensor values between a loop's requests for batches: one step's reads."""
    rs = _part("syncs")
    original = torch.Tensor.item
    batches = [{"input_ids": torch.tensor([i])} for i in range(2)]
    counted = rs.CountedBatches(batches, warmup=1, reps=2)
    for step, batch in enumerate(counted):
        for _ in range(step % 3):  # steps 0-5: 0, 1, 2, 0, 1, 2 item() reads, and one bool() read each
            batch["input_ids"].sum().item()
        bool(batch["input_ids"].sum() >= 0)
    assert counted.step_reads == [0, 1, 2, 3, 1, 2]  # at each request: the reads of the step before it
    assert torch.Tensor.item is original  # the tensor methods are restored


def test_the_floor_part_times_fsds_terms_against_their_products_and_bounds_fsd_over_vkd(glue_dir):
    """Each floor measure runs as a configuration's step on a real MRPC batch (``train_config``: ``floor-<work>``);
    the section takes the bound on FSD / VKD, VKD's step over VKD's step plus the products (less the teacher's
    per-example ones with a cache) plus the memory's update, within each round of the same run."""
    rs, common, training = _part("floor"), _part("common"), _part("training")
    encoded, collator = common.mrpc_rows(str(glue_dir), common.BATCH_SIZE)
    batches = common.fixed_batches(encoded, collator, 1)
    floor = rs.FloorWork()
    for work in rs.FLOOR_WORK:
        timed = common.TimedBatches(batches, warmup=1, reps=2, strip=training.strip_for(rs.floor_config(work)))
        before = floor.student_memory.detach().clone()
        assert "rss_before_mb" in training.train_config(rs.floor_config(work), timed, encoded, collator, Path("unused"))
        assert len(timed.pass_seconds()) == 2 and min(timed.pass_seconds()) > 0
    floor.step("terms", batches[0]["attention_mask"])  # the terms' backward reaches the student memory, as in training
    assert floor.student_memory.grad is None and torch.equal(floor.student_memory.detach(), before)
    ok = lambda passes: {"status": "ok", "pass_seconds": passes}  # noqa: E731
    # two rounds, one batch per pass (seconds): VKD 1.0 then 2.0 (the machine slowed down), FSD 1.1 then 2.2, ...
    configs = {
        "fsdkit-vkd": ok([1.0, 2.0]),
        "fsdkit-fsd": ok([1.1, 2.2]),
        "fsdkit-vkd-cache": ok([0.8, 1.6]),
        "fsdkit-fsd-cache": ok([0.9, 1.8]),
        "floor-terms": ok([0.05, 0.10]),
        "floor-products": ok([0.03, 0.06]),
        "floor-teacher-products": ok([0.005, 0.01]),
        "floor-centroid-products": ok([0.02, 0.04]),
        "floor-optimizer": ok([0.004, 0.008]),
    }
    result = {"n_batches": 1, "reps": 2, "padded_lengths": [77], "paired": {"configs": configs}}
    rounds = rs.floor_rounds(result)
    # the same ratios in both rounds: the drift cancels; live at most 1 / (1 + 0.03 + 0.004), cache 0.8 / (0.8 + 0.029)
    assert abs(rounds["teachers"]["live"]["bound"] - 1 / 1.034) < 1e-9
    assert abs(rounds["teachers"]["cache"]["bound"] - 0.8 / 0.829) < 1e-9
    assert abs(rounds["teachers"]["live"]["as_run"] - 1 / 1.054) < 1e-9
    assert abs(rounds["teachers"]["cache"]["measured"] - 0.8 / 0.9) < 1e-9
    assert rounds["ms_per_step"]["fsdkit-vkd"] == 1500.0  # the median pass
    text = "\n".join(rs.floor_section(result))
    assert f"| live teacher | {1 / 1.034:.3f} | {1 / 1.054:.3f} | {1 / 1.1:.3f} (0.91–0.91) | ≥ 0.95 |" in text
    assert f"| teacher-output cache | {0.8 / 0.829:.3f} |" in text
    # cached: 0.97 leaves 1200 × (1/0.97 − 1) = 37.1 ms; products 45 − 7.5 + optimizer 6 = 43.5: beyond it
    assert (
        "- teacher-output cache: FSD / VKD ≥ 0.97 leaves FSD 37.1 ms per step beyond VKD's 1200; the products "
        "and the update alone take 43.5, the centroid structure's two products 30.0: beyond it" in text
    )
    configs["floor-optimizer"] = {"status": "unavailable", "error": "RuntimeError: out of memory"}
    assert "floor-optimizer: RuntimeError: out of memory" in rs.floor_section(result)[0]


def test_the_host_memory_part_compares_processes_with_and_without_freed_memory_kept(monkeypatch):
    """Four processes per configuration (kept, glibc, glibc, kept), each told its mode; the section compares the
    means and reports the page faults per step."""
    import argparse

    rs = _part("host_memory")
    calls = []

    def fake_worker(args, config, *extra):
        calls.append((config, args.host_memory))
        fast = args.host_memory == "reuse"
        speed = (30.0 if "vkd" in config else 27.0) * (1.2 if fast else 1.0)
        return {"status": "ok", "examples_per_second": speed, "minor_faults_per_step": 3000 if fast else 12000}

    monkeypatch.setattr(rs, "worker_process", fake_worker)
    result = rs.host_memory_bench(argparse.Namespace(n_batches=6, reps=3, host_memory="reuse", glue_dir="g", warmup=3))
    assert calls == [(c, m) for c in rs.HOST_MEMORY_CONFIGS for m in ("reuse", "system", "system", "reuse")]
    text = "\n".join(rs.host_memory_section(result))
    assert "| fsdkit-vkd-cache | 36.0 | 30.0 | 1.20 | 3000 | 12000 |" in text
    assert "memory kept 0.90, glibc 0.90" in text


def test_timed_batches_count_the_page_faults_of_the_timed_passes():
    rs = _part("common")
    timed = rs.TimedBatches([{"x": torch.zeros(1)}], warmup=1, reps=2)
    pages = 40 * 2**20 // 4096
    ones = b"\1" * (40 * 2**20)  # made before the steps: only the mappings' pages are faulted in during them
    for step, _ in enumerate(timed):
        if step in (1, 2):  # the timed steps: each writes a fresh anonymous 40 MiB mapping, every page faulted in
            with mmap.mmap(-1, 40 * 2**20) as fresh:
                fresh.write(ones)
    assert 0.9 * pages < timed.faults_per_step() < 2 * pages
