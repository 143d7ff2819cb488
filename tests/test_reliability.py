"""Nothing lost, nothing silently wrong: shared artifacts under races, resume after a cut-short save, bad input.

Each case is the one a reliability campaign found (the issue's numbering in brackets); real MRPC runs with
the packaged MiniLM, a few steps each.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from data_paths import mrpc_run
from fsdkit import distill
from fsdkit.cli import main as cli_main
from fsdkit.errors import ConfigError
from fsdkit.memory import TeacherMemory

pytestmark = pytest.mark.glue


def small(glue_dir, **overrides):
    return mrpc_run(glue_dir, **{"max_train_samples": 32, "max_eval_samples": 16, "relation_every": 0, **overrides})


def assert_same_weights(a: Path, b: Path, atol: float = 0.0):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=atol, msg=key)


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI in-process; it must fail with exit status 2 and one error line, no traceback."""
    assert cli_main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err, err
    return err


# ----------------------------------------------------------------------------------------- [1] races on artifacts
def test_two_runs_racing_on_one_cache_and_one_memory_equal_a_solo_run(glue_dir, mrpc_teacher, tmp_path):
    """Two `distill` processes started together on one --teacher-cache, and two `memory build` processes on one
    output folder: all exit 0, the students equal a solo run's (bit for bit), one cache and one memory remain."""
    cache, memory = tmp_path / "cache", tmp_path / "memory"
    common = [
        "--task",
        "mrpc",
        "--data-dir",
        str(glue_dir),
        "--teacher",
        str(mrpc_teacher),
        "--no-progress",
        "--max-train-samples",
        "32",
        "--max-length",
        "64",
    ]
    run = [
        *common,
        "--method",
        "fsdil",
        "--batch-size",
        "8",
        "--max-steps",
        "3",
        "--max-eval-samples",
        "8",
        "--relation-every",
        "0",
        "--teacher-cache",
        str(cache),
    ]
    build = [*common, "--output-dir", str(memory), "--n-clusters", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fsdkit = [sys.executable, "-m", "fsdkit.cli"]
    procs = [
        subprocess.Popen(
            [*fsdkit, "distill", *run, "--output-dir", str(tmp_path / f"race{i}")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    procs += [
        subprocess.Popen([*fsdkit, "memory", "build", *build], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    keys = [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert len(keys) == 1 and keys[0].is_dir(), sorted(p.name for p in cache.iterdir())  # no temporary left over
    assert sorted(p.name for p in memory.iterdir()) == ["memory.json", "memory.safetensors"]

    solo = [*fsdkit, "distill", *run[:-1], str(tmp_path / "solo-cache"), "--output-dir", str(tmp_path / "solo")]
    subprocess.run(solo, env=env, check=True, capture_output=True)  # alone, with its own cache
    for i in range(2):
        assert_same_weights(tmp_path / "solo", tmp_path / f"race{i}")
    from fsdkit import build_memory

    solo = build_memory(
        teacher=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(glue_dir),
        output_dir=str(tmp_path / "m"),
        n_clusters=4,
        max_train_samples=32,
        max_length=64,
        progress=False,
    )
    assert torch.equal(TeacherMemory.load(memory).centroids, solo.centroids)


def test_a_damaged_cache_is_rebuilt_not_read(glue_dir, mrpc_teacher, tmp_path):
    options = small(glue_dir, teacher=str(mrpc_teacher), method="vkd", max_steps=2, teacher_cache=str(tmp_path / "c"))
    distill(**options, output_dir=str(tmp_path / "a"))
    (folder,) = [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
    logits = folder / "logits.npy"
    logits.write_bytes(logits.read_bytes()[:100])  # cut short, as a copy interrupted
    distill(**options, output_dir=str(tmp_path / "b"))
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert np.load(logits).shape[0] == 32


# ------------------------------------------------------------------------------------------ [2] stale memories
def test_a_stale_automatic_memory_is_rebuilt(glue_dir, mrpc_teacher, tmp_path, caplog):
    """A K = 3 memory left in OUTPUT_DIR/memory (a killed run) is rebuilt for --memory-clusters 4."""
    from fsdkit import build_memory

    out = tmp_path / "fsdg"
    build_memory(
        teacher=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(glue_dir),
        output_dir=str(out / "memory"),
        n_clusters=3,
        max_train_samples=32,
        max_length=64,
        progress=False,
    )
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        distill(
            **small(glue_dir, teacher=str(mrpc_teacher), method="fsdg", max_steps=1, memory_clusters=4),
            output_dir=str(out),
        )
    assert "n_clusters: memory 3, this run 4" in caplog.text
    assert TeacherMemory.load(out / "memory").n_clusters == 4


def test_a_memory_of_another_teacher_is_refused(glue_dir, mrpc_teacher, tmp_path):
    from fsdkit import build_memory

    other = tmp_path / "other-teacher"
    shutil.copytree(mrpc_teacher, other)
    weights = load_file(other / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    build_memory(
        teacher=str(other),
        task="mrpc",
        data_dir=str(glue_dir),
        output_dir=str(tmp_path / "mem"),
        n_clusters=3,
        max_train_samples=32,
        max_length=64,
        progress=False,
    )
    with pytest.raises(ConfigError, match="was not built for this run: teacher_sha256"):
        distill(
            **small(glue_dir, teacher=str(mrpc_teacher), method="fsdg", max_steps=1, memory=str(tmp_path / "mem")),
            output_dir=str(tmp_path / "x"),
        )
    with pytest.raises(ConfigError, match="max_length: memory 64, this run 32"):
        distill(
            **small(
                glue_dir, teacher=str(other), method="fsdg", max_steps=1, memory=str(tmp_path / "mem"), max_length=32
            ),
            output_dir=str(tmp_path / "y"),
        )


# ----------------------------------------------------------------------------- [3] [4] steps and tiny data sets
def test_max_steps_zero_trains_for_the_epochs(glue_dir, mrpc_teacher, tmp_path):
    record = distill(
        **small(glue_dir, teacher=str(mrpc_teacher), method="vkd", max_steps=0, epochs=1),
        output_dir=str(tmp_path / "e"),
    )
    assert record["global_steps"] == 4  # 32 examples / batch 8, one epoch (not one step at learning rate 0)


def test_fewer_examples_than_a_batch_with_a_batch_level_loss_is_refused(glue_dir, mrpc_teacher, tmp_path):
    with pytest.raises(ConfigError, match="5 examples, fewer than one batch"):
        distill(
            **small(glue_dir, teacher=str(mrpc_teacher), method="fsdl", max_steps=2, max_train_samples=5),
            output_dir=str(tmp_path / "f"),
        )


def test_vkd_with_a_last_batch_of_one_sample_trains_and_logs(glue_dir, mrpc_teacher, tmp_path):
    """17 examples, batch 8: the third batch holds one sample; relation logging skips it, training goes on."""
    out = tmp_path / "v"
    record = distill(
        **small(glue_dir, teacher=str(mrpc_teacher), method="vkd", epochs=1, max_train_samples=17, relation_every=1),
        output_dir=str(out),
    )
    assert record["global_steps"] == 3
    steps = [r["step"] for r in json.loads((out / "relation_history.json").read_text())["records"]]
    assert steps == [0, 1]


# ------------------------------------------------------------------------------------ [5] resume after a cut save
@pytest.mark.parametrize("damage", ["empty folder", "no trainer_state.json", "truncated model.safetensors"])
def test_resume_skips_a_checkpoint_cut_short_and_matches_the_uninterrupted_run(
    glue_dir, mrpc_teacher, tmp_path, damage, caplog
):
    options = small(glue_dir, teacher=str(mrpc_teacher), method="vkd", max_steps=4, save_steps=2, save_total_limit=3)
    full = tmp_path / "full"
    distill(**options, output_dir=str(full))
    cut = tmp_path / "cut"
    shutil.copytree(full / "checkpoints", cut / "checkpoints")  # a run killed while saving its last checkpoint
    last = cut / "checkpoints" / "checkpoint-4"
    if damage == "empty folder":
        shutil.rmtree(last)
        last.mkdir()
    elif damage == "no trainer_state.json":
        (last / "trainer_state.json").unlink()
    else:
        weights = last / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        distill(**options, output_dir=str(cut), resume=True)
    assert "skips and removes checkpoint-4" in caplog.text
    assert_same_weights(full, cut, atol=1e-6)


# ------------------------------------------------------------------------------ [6] long pairs in bounded memory
@pytest.mark.skipif(
    not Path("/proc/self/status").exists(),
    reason="the child's own peak RSS (VmHWM) is read from /proc/self/status, which only Linux has; "
    "ru_maxrss, the portable figure, would report pytest's own peak",
)
def test_long_pairs_are_truncated_in_bounded_memory(glue_dir, tmp_path):
    """64 MRPC pairs of ~3,000 words each, encoded at --max-length 128 in a fresh process: peak RSS < 1 GB, imports
    included (it was killed at 24 GB before), and each pair is truncated exactly as the tokenizer truncates it.

    The peak is the new process's own high-water mark (``VmHWM``), not ``ru_maxrss``: Linux carries the parent's
    peak into a child's ``ru_maxrss`` across fork and exec, so that figure is pytest's peak once pytest has grown."""
    script = f"""
import random
from datasets import Dataset
from transformers import AutoTokenizer
from fsdkit.data import encode_dataset
from fsdkit.models import resolve_model_path
words = open({str(glue_dir / "MRPC" / "train.tsv")!r}, encoding='utf-8').read().split()
rng = random.Random(0)
text = lambda n: ' '.join(rng.choice(words) for _ in range(n))
rows = {{'sentence1': [text(3000) for _ in range(64)], 'sentence2': [text(2900 + i) for i in range(64)],
        'label': [i % 2 for i in range(64)]}}
tok = AutoTokenizer.from_pretrained(resolve_model_path('minilm'))
enc = encode_dataset(Dataset.from_dict(rows), tok, 'mrpc', max_length=128)
assert all(len(ids) == 128 for ids in enc['input_ids'])
assert enc['input_ids'][5] == tok(rows['sentence1'][5], rows['sentence2'][5], truncation=True, max_length=128)['input_ids']
print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_kb = int(done.stdout.split()[-1])
    assert peak_kb < 2**20, f"peak RSS {peak_kb / 2**20:.2f} GB"


# --------------------------------------------------------------------------- [7] [8] errors instead of tracebacks
def test_bad_inputs_get_one_line_errors(glue_dir, mrpc_teacher, tmp_path, capsys):
    base = [
        "distill",
        "--task",
        "mrpc",
        "--data-dir",
        str(glue_dir),
        "--teacher",
        str(mrpc_teacher),
        "--max-steps",
        "1",
        "--no-progress",
        "--max-train-samples",
        "16",
    ]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in cli_error(capsys, *base, "--output-dir", str(a_file))
    assert "cannot be written" in cli_error(capsys, *base, "--output-dir", "/proc/fsdkit-cannot-write")
    out = ["--output-dir", str(tmp_path / "o")]
    assert "--max-train-samples must be ≥ 1" in cli_error(capsys, *base, *out, "--max-train-samples", "0")
    assert "--max-eval-samples must be ≥ 1" in cli_error(capsys, *base, *out, "--max-eval-samples", "0")
    assert "--max-length 513 exceeds the 512 positions" in cli_error(capsys, *base, *out, "--max-length", "513")
    assert "--fp16 needs a CUDA GPU" in cli_error(capsys, *base, *out, "--fp16")
    broken = tmp_path / "broken"
    shutil.copytree(mrpc_teacher, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    assert "model.safetensors is damaged or incomplete" in cli_error(capsys, *base, "--teacher", str(broken), *out)
    shutil.copy(mrpc_teacher / "model.safetensors", weights)
    (broken / "tokenizer.json").write_text("")
    assert "tokenizer.json is empty or not valid JSON" in cli_error(capsys, *base, "--teacher", str(broken), *out)
    assert not (tmp_path / "o" / "checkpoints").exists()  # nothing was trained


def test_a_tsv_ending_in_blank_lines_is_read(glue_dir, tmp_path):
    from fsdkit.data import load_task_data

    folder = tmp_path / "MRPC"
    folder.mkdir()
    for split in ("train.tsv", "dev.tsv"):
        lines = (glue_dir / "MRPC" / split).read_text(encoding="utf-8").splitlines()[:61]
        (folder / split).write_text("\n".join(lines) + "\n\n\n  \n", encoding="utf-8")
    assert len(load_task_data("mrpc", tmp_path)["train"]) == 60


# ---------------------------------------------------------------------------------------------- [9] [10] [11]
def test_memory_build_leaves_no_row_store_and_files_follow_the_umask(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    import tempfile

    from fsdkit import build_memory
    from fsdkit.artifacts import current_umask

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    options = dict(
        teacher=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(glue_dir),
        n_clusters=3,
        max_train_samples=16,
        max_length=64,
        progress=False,
    )
    import fsdkit.memory.build as build_module

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # a kill (SIGTERM is turned into this by the CLI) during k-means

    monkeypatch.setattr(build_module, "kmeans", dies)
    with pytest.raises(KeyboardInterrupt):
        build_memory(**options, output_dir=str(tmp_path / "killed"))
    monkeypatch.undo()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not any(p.name.startswith("teacher-rows") for p in (tmp_path / "killed").iterdir())

    build_memory(**options, output_dir=str(tmp_path / "mem"))
    mode = 0o666 & ~current_umask()
    for file in (tmp_path / "mem").iterdir():
        assert file.stat().st_mode & 0o777 == mode, file


def test_a_full_disk_is_a_clear_error_not_a_bus_error(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """The row store is reserved on disk before it is mapped: ENOSPC is a ConfigError naming the folder and the
    size, with nothing left behind (a write into a sparse map on a full disk is SIGBUS, which kills Python)."""
    import errno
    import tempfile

    from fsdkit import build_memory
    from fsdkit.errors import ConfigError

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(
        ConfigError, match=r"not enough disk space in .*tmp for teacher-rows-.*\.npy: it needs 0\.00 GiB"
    ):
        build_memory(
            teacher=str(mrpc_teacher),
            task="mrpc",
            data_dir=str(glue_dir),
            n_clusters=3,
            max_train_samples=16,
            max_length=64,
            progress=False,
            output_dir=str(tmp_path / "mem"),
        )
    assert list((tmp_path / "tmp").iterdir()) == []


def test_exported_model_files_follow_the_umask(glue_dir, mrpc_teacher):
    from fsdkit.artifacts import current_umask

    mode = 0o666 & ~current_umask()
    assert (mrpc_teacher / "model.safetensors").stat().st_mode & 0o777 == mode


def test_kmeans_on_fewer_distinct_rows_than_k_stops_at_once(caplog):
    from fsdkit.memory import kmeans

    rows = np.repeat(np.eye(3, 8, dtype=np.float32) * 5, 10, axis=0)  # 30 rows, 3 distinct values
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        result = kmeans(rows, 5, seed=0, max_iter=50)
    assert result.converged and result.n_iter <= 1
    assert int((result.counts > 0).sum()) == 3
    assert "only 3 distinct values, fewer than n_clusters = 5" in caplog.text


def test_a_model_folder_is_identified_by_its_weights_whole_or_sharded(tmp_path):
    """folder_weights_sha256: model.safetensors' sha256; of shards, each one's name and sha256 in order (a changed
    shard changes it); None for a folder without weights (compress then records the teacher's name)."""
    from fsdkit.artifacts import folder_weights_sha256, sha256_file

    assert folder_weights_sha256(tmp_path) is None
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    sharded = folder_weights_sha256(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"three")  # another size: not the cached sha
    changed = folder_weights_sha256(tmp_path)
    assert changed not in (None, sharded)
    (tmp_path / "memory.safetensors").write_bytes(b"not weights")  # another file beside the shards is not hashed
    assert folder_weights_sha256(tmp_path) == changed
    (tmp_path / "model.safetensors").write_bytes(b"whole")
    assert folder_weights_sha256(tmp_path) == sha256_file(tmp_path / "model.safetensors")
