"""The speed suite's measurement design (benchmarks/speed/run_speed.py), on fake training loops: configurations
sharing one process take turns pass by pass, in rotated order, each pass timed on its own."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / "run_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("run_speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_speed"] = module
    spec.loader.exec_module(module)
    return module


def test_configurations_take_turns_pass_by_pass_and_a_failing_one_drops_out(monkeypatch):
    rs = _load()
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
    assert out["configs"]["broken"]["status"] == "unavailable" and "cannot import it" in out["configs"]["broken"]["error"]
    # the warm-up of each in turn (2 steps), then rounds of one whole pass each (3 batches), the order rotated each
    # round over the three configurations (the broken one's turns skipped): fast slow | slow fast | slow fast | fast slow
    assert ran[:4] == [("fast", 0), ("fast", 1), ("slow", 0), ("slow", 1)]
    passes = [ran[4 + 3 * i: 7 + 3 * i] for i in range(8)]
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
    rs = _load()
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
    """The floor part runs on a real MRPC batch; its section bounds FSD / VKD by VKD's step over VKD's step plus the
    products (less the teacher's per-example ones with a cache) plus the memory's update."""
    import argparse

    rs = _load()
    floor = rs.floor_bench(argparse.Namespace(glue_dir=str(glue_dir), n_batches=1, floor_reps=1))
    ms = floor["ms_per_step"]
    assert set(ms) == {"terms", "products", "teacher_products", "optimizer"} and min(ms.values()) > 0
    assert floor["n_batches"] == 1 and 0 < floor["padded_lengths"][0] <= rs.MAX_LENGTH
    floor["ms_per_step"] = {"terms": 50.0, "products": 30.0, "teacher_products": 5.0, "optimizer": 4.0}
    ok = lambda eps, passes: {"status": "ok", "examples_per_second": eps, "pass_seconds": passes}  # noqa: E731
    train = {"paired": {"configs": {"fsdkit-vkd": ok(32.0, [1.0, 1.0]), "fsdkit-fsd": ok(30.0, [1.1, 1.1]),
                                    "fsdkit-vkd-cache": ok(40.0, [0.8, 0.8]), "fsdkit-fsd-cache": ok(38.0, [0.9, 0.9])}}}
    text = "\n".join(rs.floor_section(floor, train))
    # live: step 1000 ms, at most 1000 / (1000 + 30 + 4); cache: step 800 ms, at most 800 / (800 + 30 - 5 + 4)
    assert f"| live teacher | 1000 | {1000 / 1034:.3f} | {1000 / 1054:.3f} | 0.91 |" in text
    assert f"| teacher-output cache | 800 | {800 / 829:.3f} | {800 / 854:.3f} | 0.89 |" in text
