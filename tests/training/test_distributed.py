"""Data parallel on the CPU: `accelerate launch --multi_gpu --num_processes 2` (torchrun processes, gloo).

- VKD: 2 processes × batch 4 give the loss curve, the gradient norms, every logged term and the final weights
  of 1 process × batch 8 (same seed, no dropout): each process takes every other batch of the one shuffled order,
  DDP averages the gradients, and the loss of a process is scaled by its share of the global batch.
- Batch-level structure (FSDL here; likewise FSDI's −log of the mean, RKD, Relation-CKA, the memory term) is
  computed per *device* batch: the logged ``loss_local`` of the 2-process step is the mean of the FSDL term over
  the two device batches of 4, not the term of the global batch of 8 (tested exactly).
- The CLI under `accelerate launch`: a 2-process FSD run with a teacher cache exports one model, one run record
  and one cache; a 2-process fine-tune likewise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(processes: int, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def run_worker(out: Path, method: str, processes: int, batch: int) -> dict:
    if processes > 1:
        accelerate_launch(processes, str(WORKER), str(out), method, str(batch))
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        subprocess.run(
            [sys.executable, str(WORKER), str(out), method, str(batch)], env=env, check=True, capture_output=True
        )
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(processes)]
    assert all(r["world_size"] == processes and r["steps"] == 3 for r in ranks)
    logs = [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    return {"ranks": ranks, "logs": logs, "weights": load_file(out / "student.safetensors")}


@pytest.fixture(scope="module")
def vkd_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    return run_worker(root / "one", "vkd", 1, 8), run_worker(root / "two", "vkd", 2, 4)


def test_two_processes_equal_one_process_with_the_global_batch(vkd_runs):
    one, two = vkd_runs
    for step in range(3):  # process i takes batch 2·step + i of the one order: together the global batch
        global_batch = one["ranks"][0]["seen"][8 * step : 8 * step + 8]
        assert (
            two["ranks"][0]["seen"][4 * step : 4 * step + 4] + two["ranks"][1]["seen"][4 * step : 4 * step + 4]
            == global_batch
        )
    assert len(one["logs"]) == len(two["logs"]) == 3
    for a, b in zip(one["logs"], two["logs"]):
        for key in ("loss", "grad_norm", "loss_task", "loss_kd"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    for key, value in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_batch_structure_is_computed_per_device_batch(tmp_path, minilm_path):
    """FSDL under 2 processes: step 1's logged loss_local is the mean of the term over the two device batches."""
    from test_trainer import make_trainer, tiny_parts

    from fsdkit.features import FeatureRequest

    two = run_worker(tmp_path / "two", "fsdl", 2, 4)
    parts = tiny_parts(minilm_path)
    trainer = make_trainer(parts, tmp_path / "ref", method="fsdl", batch_size=8, accumulation=1, max_steps=3)
    request = FeatureRequest(hidden_states=True)

    def local_term(rows: list[int]) -> float:
        batch = parts["collator"]([parts["data"][i] for i in rows])
        with torch.no_grad():
            terms, _ = trainer.model(batch, request, trainer.teacher.features(batch, request), ["local"])
        return terms["local"].item()

    per_device = [local_term(rank["seen"][:4]) for rank in two["ranks"]]
    logged = two["logs"][0]["loss_local"]  # logs are rounded to 6 decimals
    assert logged == pytest.approx(sum(per_device) / 2, abs=1e-6)
    assert abs(logged - local_term(two["ranks"][0]["seen"][:4] + two["ranks"][1]["seen"][:4])) > 1e-4


@pytest.mark.glue
def test_cli_distill_and_finetune_under_accelerate_launch_write_once(glue_dir, mrpc_teacher, tmp_path):
    out, cache = tmp_path / "fsd", tmp_path / "cache"
    accelerate_launch(
        2,
        "-m",
        "fsdkit.cli",
        "distill",
        "--task",
        "mrpc",
        "--data-dir",
        str(glue_dir),
        "--teacher",
        str(mrpc_teacher),
        "--method",
        "fsd",
        "--memory-clusters",
        "4",
        "--max-train-samples",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--max-eval-samples",
        "8",
        "--max-length",
        "64",
        "--teacher-cache",
        str(cache),
        "--output-dir",
        str(out),
        "--no-progress",
    )
    record = json.loads((out / "fsdkit_run.json").read_text())
    assert record["global_steps"] == 2 and record["method"] == "fsd"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert (out / "model.safetensors").is_file() and (out / "memory" / "memory.json").is_file()
    assert not [p for p in out.rglob(".*tmp-*")]
    teacher = tmp_path / "teacher"  # fine-tuning goes through the same trainer: 2 processes, one export
    accelerate_launch(
        2,
        "-m",
        "fsdkit.cli",
        "finetune",
        "--task",
        "mrpc",
        "--data-dir",
        str(glue_dir),
        "--max-train-samples",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--max-eval-samples",
        "8",
        "--max-length",
        "64",
        "--output-dir",
        str(teacher),
        "--no-progress",
    )
    assert json.loads((teacher / "fsdkit_run.json").read_text())["global_steps"] == 2


@pytest.mark.glue
def test_memory_build_under_accelerate_launch_equals_one_process(glue_dir, mrpc_teacher, tmp_path):
    """Two processes encode a shard each into one row store and run distributed Lloyd passes (all-reduced sums and
    counts, gathered farthest rows, one seeding): same iterations, centroids to 1e-5, inertia to 1e-7 relative."""
    from fsdkit import build_memory
    from fsdkit.memory import TeacherMemory

    options = [
        "--teacher",
        str(mrpc_teacher),
        "--task",
        "mrpc",
        "--data-dir",
        str(glue_dir),
        "--n-clusters",
        "5",
        "--max-train-samples",
        "60",
        "--max-length",
        "64",
        "--no-progress",
    ]
    accelerate_launch(2, "-m", "fsdkit.cli", "memory", "build", *options, "--output-dir", str(tmp_path / "two"))
    two = TeacherMemory.load(tmp_path / "two")
    one = build_memory(
        teacher=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(glue_dir),
        n_clusters=5,
        max_train_samples=60,
        max_length=64,
        progress=False,
        output_dir=str(tmp_path / "one"),
    )
    assert two.metadata["n_iter"] == one.metadata["n_iter"] and two.metadata["n_rows"] == 60
    torch.testing.assert_close(two.centroids, one.centroids, rtol=0, atol=1e-5)
    assert two.metadata["inertia_history"] == pytest.approx(one.metadata["inertia_history"], rel=1e-7)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["memory.json", "memory.safetensors"]
