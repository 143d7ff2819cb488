"""``fsdkit compress``: a real 3-trial study of students of the tickets teacher — the front's table, plot and JSON,
the chosen student exported — and a study killed mid-trial that resumes when the command is run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from data_paths import TICKETS, TICKETS_DEV
from fsdkit.errors import ConfigError

FILES = ["--train-file", str(TICKETS), "--validation-file", str(TICKETS_DEV)]
SMALL = ["--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--speed-batches", "2"]
#: the same tiny study through the Python API: the tickets, two steps a student, three holdout rows
TINY = dict(
    train_file=str(TICKETS), validation_file=str(TICKETS_DEV), max_steps=2, batch_size=8, max_length=32, speed_batches=2
)


def test_compress_writes_its_front_and_exports_the_fastest_student_meeting_the_target(tickets_teacher, tmp_path):
    from fsdkit.compress import compress, student_layers

    assert student_layers("spread", 3, 6) == [1, 3, 5] and student_layers("first", 2, 6) == [0, 1]
    out = tmp_path / "compress"
    result = compress(
        teacher=str(tickets_teacher),
        output_dir=str(out),
        trials=3,
        **TINY,
        target_retention=None,
    )  # two steps on 21 rows: a quality target would be luck on 3 holdout rows
    assert result["trials"] == 3 and result["front"] and result["metric"] == "holdout.accuracy"
    latencies = [row["latency_ms"] for row in result["front"]]
    assert latencies == sorted(latencies) and all(1 <= len(row["layers"]) <= 5 for row in result["front"])
    chosen = result["chosen"]
    assert chosen == result["front"][0]  # every student meets no target: the fastest on the front
    assert (out / "student" / "model.onnx").is_file() and (out / "front.png").stat().st_size > 0
    table = (out / "front.md").read_text()
    assert "| teacher | all |" in table and f"trial {chosen['trial']} (chosen)" in table
    assert "| accuracy | retention | macro_f1 | latency (ms) |" in table  # the other holdout metric shown too
    assert {"accuracy", "macro_f1"} <= set(chosen) and {"accuracy", "macro_f1"} <= set(result["teacher"])
    assert json.loads((out / "compress.json").read_text()) == json.loads(json.dumps(result))
    # the tickets teacher was fine-tuned on every training row, the holdout's too: said in the result and the table
    assert len(result["warnings"]) == 1 and "fine-tuned on the holdout rows" in result["warnings"][0]
    assert "**Warning**: the teacher was fine-tuned on the holdout rows" in table
    # an unreachable target: nothing exported, the closest named
    strict = compress(
        teacher=str(tickets_teacher),
        output_dir=str(out),
        trials=3,
        **TINY,
        target_retention=1.0,
        max_latency_ms=1e-6,
    )
    assert strict["chosen"] is None and strict["closest"] is not None
    assert "No student meets the target; the closest is trial" in (out / "front.md").read_text()
    assert not (out / "student").exists()  # the earlier run's choice, which meets no longer, is not left exported
    # the study optimised accuracy: resuming it on another metric would mix incomparable values
    with pytest.raises(
        ConfigError, match=r"was run with metric 'holdout\.accuracy', not 'holdout\.macro_f1': give the same"
    ):
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=3, **TINY, metric="macro_f1")
    with pytest.raises(ConfigError, match=r"--metric 'f1' is not a metric of .*\(accuracy, macro_f1\)"):
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=3, **TINY, metric="f1")


def test_the_front_ranks_students_by_the_median_latency_of_their_architecture():
    from fsdkit.compress import pareto_front, pool_latency

    rows = [
        {"trial": 0, "layers": [0], "parameters": 10, "accuracy": 0.9, "timed_ms": 4.0},
        {"trial": 1, "layers": [5], "parameters": 10, "accuracy": 0.5, "timed_ms": 2.0},  # timed in a quiet moment
        {"trial": 2, "layers": [0], "parameters": 10, "accuracy": 0.7, "timed_ms": 3.0},
        {"trial": 3, "layers": [0, 1], "parameters": 20, "accuracy": 0.95, "timed_ms": 6.0},
        {"trial": 4, "layers": [1, 3], "parameters": 20, "accuracy": 0.8, "timed_ms": 9.0},
    ]
    pooled = pool_latency(rows)
    assert [r["latency_ms"] for r in pooled] == [3.0, 3.0, 3.0, 7.5, 7.5]
    assert [r["trial"] for r in pareto_front(pooled, "accuracy")] == [0, 3]
    # ranked by their own timings, the worse students of the same computation would have made the front
    own = [{**r, "latency_ms": r["timed_ms"]} for r in rows]
    assert [r["trial"] for r in pareto_front(own, "accuracy")] == [1, 2, 0, 3]
    assert len(pareto_front([pooled[0], dict(pooled[0], trial=5)], "accuracy")) == 2  # equal rows: neither dominates


def test_the_teacher_and_the_students_are_timed_together_round_robin(monkeypatch):
    import fsdkit.evaluation
    import fsdkit.models
    from fsdkit.compress import retime

    timings = iter([9.0, 4.0, 10.0, 3.0, 30.0, 5.0])  # the third round ran beside something else
    order = []
    monkeypatch.setattr(fsdkit.models, "load_classifier", lambda folder, _: (folder, None))
    monkeypatch.setattr(fsdkit.evaluation, "latency_ms", lambda model, *a, **k: order.append(model) or next(timings))
    result = retime({"teacher": "T", 0: "S"}, None, None, max_length=32, batches=2, rounds=3)
    assert order == ["T", "S"] * 3  # one model at a time, in turns, so that both see the same conditions
    assert result == {"teacher": 10.0, 0: 4.0}  # each one's median


def test_a_repeated_student_is_not_trained_again(tickets_teacher, tmp_path):
    from fsdkit.compress import LAYER_CHOICES, compress, students

    assert len(students(6, LAYER_CHOICES, ["teacher"])) == 30  # 5 depths x (first, spread) x 3 recipes
    assert len(students(2, ("first",), ["teacher", "pretrained"])) == 6
    out = tmp_path / "compress"
    out.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'compress.db'}", study_name="fsdkit-compress", directions=["maximize", "minimize"]
    )
    same = {"depth": 1, "layers": "first", "start": "teacher", "recipe": "vkd"}
    study.enqueue_trial(same)
    study.enqueue_trial(same, skip_if_exists=False)  # the sampler drawing the same student again
    result = compress(teacher=str(tickets_teacher), output_dir=str(out), trials=2, **TINY, target_retention=None)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert trials[1].params == same and trials[2].params != same  # the repeat pruned, an untried student in its place
    assert not (out / "trial-1").exists() and (out / "trial-2").is_dir()  # the repeat trained nothing
    assert result["trials"] == 2


def test_a_killed_compress_resumes(tickets_teacher, tmp_path):
    out = tmp_path / "compress"
    command = [
        sys.executable,
        "-m",
        "fsdkit.cli",
        "compress",
        "--teacher",
        str(tickets_teacher),
        *FILES,
        *SMALL,
        "--output-dir",
        str(out),
        "--trials",
        "3",
        "--heartbeat",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    storage = f"sqlite:///{(out / 'compress.db').resolve()}"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it in its second trial
        time.sleep(0.5)
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        try:
            study = optuna.load_study(study_name="fsdkit-compress", storage=storage)
        except Exception:  # noqa: BLE001 - not created yet
            continue
        if len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 1:
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(3.5)  # the killed trial has no heartbeat for 3 intervals
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="fsdkit-compress", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") >= 3 and "RUNNING" not in states, states  # the killed trial failed and replaced
    assert json.loads((out / "compress.json").read_text())["front"]
    # the command prints the front's table and where everything went
    assert "| teacher | all |" in done.stdout and f"everything: {out / 'compress.json'}" in done.stdout, done.stdout


def test_every_student_of_compress_trains_on_its_transfer_text(tickets_teacher, tmp_path):
    """`fsdkit compress --transfer-file`: each trial's distillation reads the unlabelled texts too (its run record
    names the file and counts the labelled rows less the holdout plus the transfer rows); the holdout stays labelled."""
    from fsdkit.compress import compress
    from fsdkit.run_record import RunRecord

    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(f"unlabelled ticket number {i} about an invoice or a crash" for i in range(16)))
    result = compress(
        teacher=str(tickets_teacher),
        transfer_file=str(transfer),
        output_dir=str(tmp_path / "compress"),
        trials=1,
        **TINY,
        target_retention=None,
    )
    record = RunRecord.read(result["front"][0]["output_dir"])
    assert record.config["transfer_file"] == str(transfer)
    assert record.train_examples == 21 + 16  # 24 labelled rows less a 10 % holdout (3), and the 16 transfer rows


def test_compress_names_a_teacher_it_cannot_load(tmp_path):
    """A teacher that is neither a local folder nor reachable on the hub: fsdkit's error, not transformers' trace."""
    from fsdkit.compress import compress
    from fsdkit.errors import ModelError

    with pytest.raises(ModelError, match="could not load model 'someone/some-model': it is not a local folder"):
        compress(teacher="someone/some-model", train_file=str(TICKETS), output_dir=str(tmp_path / "c"), trials=1)


def test_a_teacher_is_said_to_have_seen_the_holdout_only_when_its_record_shows_it():
    """teacher_saw_holdout: the teacher's run record read the run's training rows without its --holdout-fraction."""
    from types import SimpleNamespace

    from fsdkit.training.run_data import teacher_saw_holdout

    mine = {"task": "mrpc", "data_dir": "glue", "train_file": None}
    record = SimpleNamespace(config={**mine, "data_dir": "./glue", "holdout_fraction": None})
    assert teacher_saw_holdout(record, mine, 0.1)  # the same rows, however the folder is spelt
    assert not teacher_saw_holdout(SimpleNamespace(config={**record.config, "holdout_fraction": 0.1}), mine, 0.1)
    assert not teacher_saw_holdout(SimpleNamespace(config={**record.config, "task": "sst2"}), mine, 0.1)  # other data
    assert not teacher_saw_holdout(None, mine, 0.1)  # a teacher without a record (a hub model): unknown, not claimed


def _row(trial: int, accuracy: float, latency: float, size: float) -> dict:
    return {"trial": trial, "accuracy": accuracy, "retention": accuracy / 0.8, "latency_ms": latency, "size_mb": size}


def test_the_chosen_student_is_the_fastest_of_all_that_meet_the_target_and_else_the_closest_is_named():
    from types import SimpleNamespace

    from fsdkit.compress import choose_student, pareto_front, shortfall

    small = _row(0, 0.70, 6.0, 20.0)  # off the front: the deeper student below is as fast (noise) and better
    deep = _row(1, 0.78, 5.9, 40.0)
    slow = _row(2, 0.80, 12.0, 60.0)
    rows = [small, deep, slow]
    assert pareto_front(rows, "accuracy") == [deep, slow]
    target = SimpleNamespace(target_retention=None, max_latency_ms=None, max_size_mb=25.0)
    assert choose_student(rows, target, "accuracy") == (small, None)  # the front ignores size: every row is looked at
    quality = SimpleNamespace(target_retention=0.97, max_latency_ms=None, max_size_mb=None)
    assert choose_student(rows, quality, "accuracy") == (
        deep,
        None,
    )  # 0.78 / 0.8 = 97.5 %, faster than the teacher-like
    fast = SimpleNamespace(target_retention=None, max_latency_ms=5.0, max_size_mb=None)
    # nothing under 5 ms: the closest is the least over it, not the most accurate (the slowest)
    assert choose_student(rows, fast, "accuracy") == (None, deep)
    assert shortfall(deep, fast) == pytest.approx(0.18) and shortfall(slow, fast) == pytest.approx(1.4)
    both = SimpleNamespace(target_retention=0.99, max_latency_ms=6.0, max_size_mb=None)
    assert choose_student(rows, both, "accuracy") == (None, deep)  # misses retention by 1.5 %, the others by more
    assert choose_student([], both, "accuracy") == (None, None)


def test_compress_refuses_a_study_or_folder_of_another_experiment_before_training(
    tickets_teacher, tmp_path, monkeypatch
):
    """Resuming a study with another teacher, or in a folder that holds another study's trial folders, is refused
    before any student trains (trial numbers restart in every study; a changed teacher changes every score)."""
    from fsdkit.artifacts import folder_weights_sha256
    from fsdkit.compress import compress

    out = tmp_path / "compress"
    (out / "trial-0").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"holds trial-0, trial folders of another study than 'fsdkit-compress'"):
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=1, **TINY, target_retention=None)
    (out / "trial-0").rmdir()
    study = optuna.load_study(storage=f"sqlite:///{out / 'compress.db'}", study_name="fsdkit-compress")
    assert study.user_attrs["data.train_file"] == str(TICKETS.resolve())  # paths recorded absolute
    finished = optuna.trial.create_trial(
        params={"depth": 1},
        distributions={"depth": optuna.distributions.IntDistribution(1, 5)},
        values=[0.5, 1.0],
        user_attrs={"output_dir": str(out / "trial-0")},
    )
    study.add_trial(finished)  # a finished trial of a teacher since fine-tuned again in the same folder
    study.set_user_attr("teacher_sha256", "0" * 64)
    with pytest.raises(ConfigError, match=r"was run with teacher_sha256 '0000.*', not '[0-9a-f]{64}': give the same"):
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=1, **TINY, target_retention=None)
    assert not list(out.glob("trial-*")) and len(study.trials) == 1
    # the same data spelt otherwise (a relative path, from another folder) is the same study
    moved = {**TINY, "train_file": os.path.relpath(TICKETS, tmp_path)}
    monkeypatch.chdir(tmp_path)
    study.set_user_attr("teacher_sha256", folder_weights_sha256(tickets_teacher))
    study.set_user_attr("data.validation_file", "elsewhere.csv")  # ... but other data is not
    with pytest.raises(ConfigError, match=r"was run with data.validation_file 'elsewhere.csv', not '/.*tickets"):
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=1, **moved, target_retention=None)


def test_a_stopped_student_continues_from_its_checkpoint(tickets_teacher, tmp_path, monkeypatch):
    """A compress worker stopped mid-trial keeps that student's checkpoints; the rerun's retry of the trial continues
    from the last complete one (step 1 of 2 here) and exports the student a run never stopped exports. Finished trial
    folders keep no checkpoints."""
    import torch
    from safetensors.torch import load_file

    import fsdkit.training.run
    from fsdkit.compress import compress
    from fsdkit.training.trainer import DistillationTrainer

    distill, compute_loss, steps = fsdkit.training.run.distill, DistillationTrainer.compute_loss, []
    monkeypatch.setattr(fsdkit.training.run, "distill", lambda settings: distill({**settings, "save_steps": 1}))

    def stopped_after_checkpoint_1(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if self.state.global_step == 1 and stop:
            raise KeyboardInterrupt  # what Ctrl-C or `kill` raises in the worker
        return compute_loss(self, *args, **kwargs)

    def study_of(name):
        out = tmp_path / name
        out.mkdir(exist_ok=True)
        study = optuna.create_study(
            storage=f"sqlite:///{out / 'compress.db'}",
            study_name="fsdkit-compress",
            directions=["maximize", "minimize"],
            load_if_exists=True,
        )
        if not study.trials:
            study.enqueue_trial({"depth": 2, "layers": "spread", "start": "teacher", "recipe": "fsdi"})
        compress(teacher=str(tickets_teacher), output_dir=str(out), trials=1, **TINY, target_retention=None)
        return out, study

    stop = False
    whole, _ = study_of("whole")
    monkeypatch.setattr(DistillationTrainer, "compute_loss", stopped_after_checkpoint_1)
    stop = True
    with pytest.raises(KeyboardInterrupt):
        study_of("stopped")
    assert (tmp_path / "stopped" / "trial-0" / "checkpoints" / "checkpoint-1").is_dir()
    stop, steps[:] = False, []
    out, study = study_of("stopped")
    assert steps == [1]  # only step 2 trained again
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "COMPLETE"]
    weights = [load_file(folder / "model.safetensors") for folder in (whole / "trial-0", out / "trial-1")]
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=0, atol=1e-6, msg=key)
    assert not list(tmp_path.glob("*/trial-*/checkpoints"))


def test_compress_says_why_every_student_failed(tickets_teacher, tmp_path, monkeypatch):
    import fsdkit.training.run
    from fsdkit.compress import compress

    def failing(settings):
        raise ConfigError("--student-layers: this student cannot be made")

    monkeypatch.setattr(fsdkit.training.run, "distill", failing)
    with pytest.raises(ConfigError, match=r"every student of study 'fsdkit-compress' .* failed \(3\); the first: "):
        compress(teacher=str(tickets_teacher), output_dir=str(tmp_path / "c"), trials=1, **TINY, target_retention=None)


def test_a_retention_target_needs_a_teacher_that_scores_above_zero(tickets_teacher, tmp_path, monkeypatch):
    import fsdkit.compress

    measured = {"metrics": {"accuracy": 0.0, "macro_f1": 0.0}, "latency_ms": None, "parameters": 1, "size_mb": 1.0}
    monkeypatch.setattr(fsdkit.compress, "_measure", lambda *args: measured)
    with pytest.raises(ConfigError, match=r"--target-retention: the teacher .* scores 0.0000 holdout accuracy"):
        fsdkit.compress.compress(teacher=str(tickets_teacher), output_dir=str(tmp_path / "c"), trials=1, **TINY)
