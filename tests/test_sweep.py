"""``fsdkit sweep``: real Optuna studies of tiny MRPC distillations — summary and plots, per-epoch pruning
reports, and a study shared by two parallel workers, one of them killed, resumed by rerunning the command."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from fsdkit.errors import ConfigError
from fsdkit.sweep import check_space, sweep

pytestmark = pytest.mark.glue


def space_file(tmp_path, glue_dir, teacher, trials: int) -> dict:
    spec = {
        "command": "distill",
        "base": {
            "task": "mrpc",
            "data-dir": str(glue_dir),
            "teacher": str(teacher),
            "method": "vkd",
            "max-train-samples": 40,
            "epochs": 2,
            "batch-size": 8,
            "max-eval-samples": 8,
            "max-length": 48,
            "holdout-fraction": 0.2,
            "relation-every": 0,
            "eval-batch-size": 32,
        },
        "space": {
            "learning-rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
            "alpha": {"type": "float", "low": 0.1, "high": 0.9},
            "temperature": {"type": "categorical", "choices": [1, 5]},
        },
        "trials": trials,
    }
    return spec


def test_a_study_runs_real_trials_and_writes_its_summary(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    spec = space_file(tmp_path, glue_dir, mrpc_teacher, 3)
    samplers, tpe = [], optuna.samplers.TPESampler

    def spy(*args, **kwargs):  # --startup-trials reaches TPE: trials 2 and 3 are TPE's, not random
        samplers.append(kwargs.get("n_startup_trials"))
        return tpe(*args, **kwargs)

    monkeypatch.setattr(optuna.samplers, "TPESampler", spy)
    summary = sweep(
        spec,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        output_dir=str(tmp_path / "sweep"),
        study_name="tiny",
        startup_trials=1,
    )
    assert samplers[-1] == 1  # the study's sampler (optuna's create_study makes a default one first)
    assert summary["trials"]["complete"] == 3  # 2 epochs: the first evaluation and the last are never pruned
    best = summary["best"]
    assert best["command"].startswith("fsdkit distill ") and "--learning-rate" in best["command"]
    record = json.loads((tmp_path / "sweep" / f"trial-{best['number']}" / "fsdkit_run.json").read_text())
    assert record["metrics"]["holdout"]["f1"] == best["value"]  # MRPC's main metric
    assert [p["epoch"] for p in record["curve"]] == [1.0, 2.0] and record["curve"][0]["eval_split"] == "holdout"
    assert "validation" in record["metrics"]  # dev is reported, not selected on
    trials = sorted((tmp_path / "sweep").glob("trial-*"))
    assert len(trials) == 3 and not any((t / "checkpoints").exists() for t in trials)  # finished: not kept
    assert (tmp_path / "sweep" / f"trial-{best['number']}" / "model.safetensors").is_file()  # the model is
    assert set(summary["plots"]) == {"optimization_history.png", "param_importances.png"}
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert all(t.intermediate_values for t in study.trials)  # the per-epoch curve reached the pruner
    # rerunning the finished study adds nothing
    again = sweep(
        spec, storage=f"sqlite:///{tmp_path / 'study.db'}", output_dir=str(tmp_path / "sweep"), study_name="tiny"
    )
    assert again["trials"] == summary["trials"]


def test_parallel_workers_share_a_study_and_a_killed_one_is_resumed(glue_dir, mrpc_teacher, tmp_path):
    config = tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump(space_file(tmp_path, glue_dir, mrpc_teacher, 4)))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [
        sys.executable,
        "-m",
        "fsdkit.cli",
        "sweep",
        "--config",
        str(config),
        "--storage",
        storage,
        "--study-name",
        "shared",
        "--output-dir",
        str(tmp_path / "sweep"),
        "--heartbeat",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    deadline = time.time() + 300
    while time.time() < deadline:  # kill worker 0 in the middle of its second trial
        time.sleep(0.5)
        assert all(w.poll() is None for w in workers), workers[0].stderr.read().decode()[-3000:]
        try:  # the workers may still be creating the database or the study
            study = optuna.load_study(study_name="shared", storage=storage)
        except Exception:  # noqa: BLE001
            continue
        if len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 1:
            break
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    _, err = workers[1].communicate(timeout=600)
    assert workers[1].returncode == 0, err.decode()[-3000:]
    time.sleep(3.5)  # the killed worker's trial has no heartbeat for 3 intervals: stale
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)  # rerun = resume
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    study = optuna.load_study(study_name="shared", storage=storage)
    states = [t.state for t in study.trials]
    finished = sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
    assert 4 <= finished <= 5  # two workers may both start the last trial
    assert optuna.trial.TrialState.RUNNING not in states
    if optuna.trial.TrialState.FAIL in states:  # the killed trial was caught mid-run: retried with its parameters
        failed = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
        assert any(t.system_attrs.get("failed_trial") == failed.number for t in study.trials)
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == finished


@pytest.mark.parametrize(
    ("save_steps", "stopped_at", "last_checkpoint"),
    [(5, 7, 5), (3, 8, 6)],
    ids=["checkpoint-on-an-epoch-end", "checkpoint-mid-epoch"],
)
def test_a_stopped_trial_continues_from_its_checkpoint_and_scores_as_if_never_stopped(
    glue_dir, mrpc_teacher, tmp_path, monkeypatch, save_steps, stopped_at, last_checkpoint
):
    """A worker stopped mid-trial keeps the trial's checkpoints; the rerun's retry of the trial moves them into its
    own folder and continues from the last complete one instead of training from the start (steps from the
    checkpoint's on), and the trial's score, per-epoch reports and curve are those of a sweep never stopped. A
    checkpoint due on epoch 1's last step waits for that epoch's evaluation, so it holds that evaluation as one saved
    in epoch 2 does: reported to the retry from the checkpoint."""
    from fsdkit.training.trainer import DistillationTrainer

    spec = space_file(tmp_path, glue_dir, mrpc_teacher, 1)
    spec["base"].update({"epochs": 3, "save-steps": save_steps})  # 40 training rows, batch 8: 5 steps an epoch

    def study_of(name):
        storage = f"sqlite:///{tmp_path / (name + '.db')}"
        summary = sweep(spec, storage=storage, output_dir=str(tmp_path / name), study_name=name, startup_trials=1)
        return summary, optuna.load_study(study_name=name, storage=storage)

    whole, whole_study = study_of("whole")
    original, steps = DistillationTrainer.compute_loss, []

    def stopped_after_a_checkpoint(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if self.state.global_step == stopped_at and stop:
            raise KeyboardInterrupt  # what Ctrl-C or `kill` raises in the worker
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", stopped_after_a_checkpoint)
    stop = True
    with pytest.raises(KeyboardInterrupt):
        study_of("stopped")
    assert (tmp_path / "stopped" / "trial-0" / "checkpoints" / f"checkpoint-{last_checkpoint}").is_dir()  # kept
    stop, steps[:] = False, []
    summary, study = study_of("stopped")
    assert sorted(set(steps)) == list(range(last_checkpoint, 15))  # continued from the checkpoint, not from step 0
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert summary["best"]["number"] == 1 and summary["best"]["value"] == whole["best"]["value"]
    assert study.trials[1].intermediate_values == whole_study.trials[0].intermediate_values
    assert sorted(study.trials[1].intermediate_values) == [1, 2, 3]
    records = [
        json.loads((tmp_path / name / f"trial-{n}" / "fsdkit_run.json").read_text())
        for name, n in (("whole", 0), ("stopped", 1))
    ]
    assert [p["epoch"] for p in records[1]["curve"]] == [1.0, 2.0, 3.0]
    assert records[1]["curve"] == records[0]["curve"]
    assert "--resume" not in summary["best"]["command"]  # the command reproduces the trial on its own
    assert not (tmp_path / "stopped" / "trial-0" / "checkpoints").exists()  # moved, then removed once finished
    assert not (tmp_path / "stopped" / "trial-1" / "checkpoints").exists()


def test_a_finished_study_discards_the_checkpoints_no_retry_will_continue(tmp_path):
    """Checkpoints kept by a stopped trial go once no retry of it waits or runs (retries used up, or the retry ran as
    a repeat); those a waiting retry will continue stay, as do a running trial's."""
    from fsdkit.sweep import discard_stopped_runs

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="s")
    dists = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def trial(n, state, retries=()):
        folder = tmp_path / f"trial-{n}"
        (folder / "checkpoints" / "checkpoint-5").mkdir(parents=True)
        attrs = {"retry_history": list(retries)} if retries else {}
        study.add_trial(
            optuna.create_trial(
                state=state,
                params={"x": 0.5},
                distributions=dists,
                user_attrs={"output_dir": str(folder)},
                system_attrs=attrs,
                **({"value": 0.1} if state == optuna.trial.TrialState.COMPLETE else {}),
            )
        )
        return folder / "checkpoints"

    fail = optuna.trial.TrialState.FAIL
    used_up = trial(0, fail)
    continued = trial(1, fail)
    trial(2, optuna.trial.TrialState.COMPLETE, retries=[0])  # its retry finished (moved or ran as a repeat)
    waiting = trial(3, fail)
    trial(4, optuna.trial.TrialState.WAITING, retries=[1, 3])  # a retry of a retry, not yet run
    discard_stopped_runs(study)
    assert not used_up.exists() and continued.exists() and waiting.exists()
    assert (tmp_path / "trial-2" / "checkpoints").exists() and (tmp_path / "trial-4" / "checkpoints").exists()


def test_the_pruner_never_decides_on_the_first_epoch():
    """Median pruning from the second epoch on, once the start-up trials have completed and as many curves reached
    the epoch (a repeat completes without one): a trial far below the others after epoch 1 goes on (many good trials
    still predict one class then); the same value at epoch 2 stops it."""
    from fsdkit.sweep import _pruner

    study = optuna.create_study(direction="maximize", pruner=_pruner("median", 2))
    for _ in range(2):
        done = study.ask()
        done.report(0.8, 1), done.report(0.85, 2)
        study.tell(done, 0.85)
    early = optuna.create_study(direction="maximize", pruner=_pruner("median", 2))
    done = early.ask()
    done.report(0.8, 1), done.report(0.85, 2)
    early.tell(done, 0.85)
    late = early.ask()
    late.report(0.6, 1), late.report(0.6, 2)
    assert not late.should_prune()  # one completed trial of the 2 start-up ones: no yardstick yet
    early.tell(early.ask(), 0.85)  # a repeat (repeat_of): complete, but trained no curve
    late = early.ask()
    late.report(0.6, 1), late.report(0.6, 2)
    assert not late.should_prune()  # still one curve at epoch 2
    trial = study.ask()
    trial.report(0.6, 1)
    assert not trial.should_prune()
    trial.report(0.6, 2)
    assert trial.should_prune()
    assert isinstance(_pruner("none", 3), optuna.pruners.NopPruner)


def test_a_study_is_judged_on_its_first_trials_to_finish():
    """The budget is the first ``trials`` finished trials in the order they finished: a trial finished beyond it
    (two workers each finishing a last one) does not count, even when it is better; ties go to the first."""
    from fsdkit.sweep import best_trial, budget_trials

    x = {"x": optuna.distributions.FloatDistribution(0, 1)}  # a different draw each (the same one: a repeat)
    study = optuna.create_study(direction="maximize")
    first, second = study.ask(x), study.ask(x)
    study.tell(second, 0.7)  # finishes first
    pruned = study.ask(x)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.tell(first, 0.8)
    tie = study.ask(x)
    study.tell(tie, 0.8)
    extra = study.ask(x)
    study.tell(extra, 0.99)  # the fifth to finish: beyond a budget of 4
    assert [t.number for t in budget_trials(study, 4)] == [1, 2, 0, 3]
    assert best_trial(study, 4).number == 0 and best_trial(study, 5).number == 4
    assert best_trial(study, 1).number == 1 and best_trial(optuna.create_study(), 3) is None
    low = optuna.create_study(direction="minimize")
    for value in (0.3, 0.1, 0.2):
        low.tell(low.ask(x), value)
    assert best_trial(low, 2).value == 0.1


def test_a_repeat_draw_is_not_trained_nor_counted_and_an_untried_draw_runs_instead():
    """TPE redraws "off" once off scores best (and a categorical choice, often): such a trial has the options of a
    trial scored already, the same deterministic run. ``repeat_of`` gives it that trial's score without training,
    queues an untried draw for the next trial, and the budget (``finished_trials``) does not count it, so a study
    of N trials trains N different runs — in a discrete space too, whose untried draws come from its grid (a sweep
    refuses one of fewer runs than its trials). A repeat two workers trained side by side is left out of the budget
    too, but a trial that repeats a *pruned* one counts (it may finish now)."""
    from fsdkit.config import DistillConfig
    from fsdkit.sweep import (
        _check_distribution,
        _stop_at_budget,
        _suggest,
        budget_trials,
        distinct_runs,
        optimize,
        repeat_of,
    )

    space = {
        "lambda_intra": _check_distribution(
            DistillConfig, "lambda_intra", {"type": "float", "low": 1e-3, "high": 10.0, "log": True, "off": True}
        ),
        "temperature": _check_distribution(DistillConfig, "temperature", {"type": "categorical", "choices": [1, 2]}),
    }
    trained: list[tuple] = []

    def objective(trial):  # as the sweep's objective, training replaced by a score where off is best
        options = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        trial.set_user_attr("options", options)
        earlier = repeat_of(trial.study, trial, space, options)
        if earlier is not None:
            return earlier.value
        trained.append(tuple(sorted(options.items())))
        return 1.0 if options.get("lambda_intra") == 0 else 0.5 + options["temperature"] / 10

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(n_startup_trials=2, seed=0))
    optimize(study, objective, callbacks=[_stop_at_budget(12)])
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert repeats, "TPE drew no repeat: the test would not test anything"
    assert len(trained) == len(set(trained)) == 12  # 12 different runs trained, the repeats besides them
    assert len(study.trials) == 12 + len(repeats) and [t.number for t in budget_trials(study, 99)] == [
        t.number for t in study.trials if t not in repeats
    ]
    for trial in repeats:
        earlier = study.trials[trial.user_attrs["repeat_of"]]
        assert earlier.user_attrs["options"] == trial.user_attrs["options"] and earlier.value == trial.value
        queued = study.trials[trial.number + 1]  # the untried draw queued in its place is the next trial run
        assert queued.system_attrs.get("fixed_params") and "repeat_of" not in queued.user_attrs
        assert all(t.user_attrs["options"] != queued.user_attrs["options"] for t in study.trials[: queued.number])

    # a discrete space: the untried draws come from its grid, so a budget of every run it holds trains them all
    space = {
        "temperature": space["temperature"],
        "beta_pkd": _check_distribution(
            DistillConfig, "beta_pkd", {"type": "float", "low": 1.0, "high": 3.0, "step": 1.0, "off": True}
        ),
    }
    assert distinct_runs(space) == 8 and distinct_runs({**space, "lambda_intra": {"type": "float"}}) is None
    huge = {"type": "int", "low": 1, "high": 10**9}
    assert distinct_runs({"a": huge, "b": huge}) == 10**18  # counted, not listed
    trained.clear()
    grid = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(n_startup_trials=2, seed=1))
    optimize(grid, objective, callbacks=[_stop_at_budget(8)])
    assert len(set(trained)) == len(trained) == 8 and len(budget_trials(grid, 99)) == 8
    assert sorted({dict(r)["beta_pkd"] for r in trained}) == [0.0, 1.0, 2.0, 3.0]
    assert any("repeat_of" in t.user_attrs for t in grid.trials)  # TPE redrew runs: the grid's untried ones ran
    with pytest.raises(ConfigError, match="holds 8 different runs .* fewer than --trials 9: .* give --trials 8"):
        sweep(
            {"command": "distill", "base": {"task": "mrpc", "method": "pkd"}, "space": space, "trials": 9},
            output_dir="unused",
        )

    side_by_side = optuna.create_study(direction="maximize")
    states = optuna.trial.TrialState
    for options, value, state in (({"w": 0.0}, None, states.PRUNED), ({"w": 0.0}, 0.7, states.COMPLETE)) * 2:
        trial = side_by_side.ask()
        trial.set_user_attr("options", options)
        side_by_side.tell(trial, value, state=state)
    assert [t.number for t in budget_trials(side_by_side, 4)] == [0, 1]  # #2 and #3 repeat #1 (complete)


def test_a_stopped_worker_queues_its_trial_again_with_the_same_parameters(tmp_path):
    """Ctrl-C or ``kill`` (a KeyboardInterrupt) during a trial: optuna marks it failed, and ``optimize`` queues its
    parameters again, as for a worker that died (at most ``MAX_RETRY`` times), so the next run draws that trial, not a
    new one; a trial that finished before the stop is not queued."""
    from fsdkit.sweep import MAX_RETRY, optimize

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    stops, runs = [0], []

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        runs.append((trial.number, x))
        if stops[0]:
            stops[0] -= 1
            raise KeyboardInterrupt
        return x

    stops[0] = 1 + MAX_RETRY + 1  # the first draw, its retries, and one more stop
    for _ in range(stops[0]):
        with pytest.raises(KeyboardInterrupt):
            optimize(study, objective, n_trials=1)
    first = runs[0][1]
    assert [x for _, x in runs] == [first] * (1 + MAX_RETRY) + [runs[-1][1]]  # retried, then a new draw
    assert study.trials[0].user_attrs["error"].startswith("KeyboardInterrupt")  # why it failed, kept
    assert runs[-1][1] != first
    states = optuna.trial.TrialState
    waiting = study.get_trials(states=(states.WAITING,))
    assert [t.params["x"] for t in waiting] == [runs[-1][1]]  # the last stopped trial is queued in its turn
    optimize(study, objective, n_trials=1)
    assert runs[-1] == (waiting[0].number, waiting[0].params["x"])  # the queued trial is the next one run
    optimize(study, objective, n_trials=1)  # a finished trial is not queued again
    assert not study.get_trials(states=(states.WAITING,))

    def diverges(trial):
        trial.suggest_float("x", 0.0, 1.0)
        raise FloatingPointError("loss is nan")

    optimize(study, diverges, n_trials=1, catch=(FloatingPointError,))
    assert study.trials[-1].user_attrs["error"] == "FloatingPointError: loss is nan"
    assert not study.get_trials(states=(states.WAITING,))  # a trial that fails by itself is not queued again

    def stop(study, trial):  # a stop between trials, after one that failed by itself
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(study, diverges, n_trials=1, catch=(FloatingPointError,), callbacks=[stop])
    assert not study.get_trials(states=(states.WAITING,))


def test_bad_space_is_refused(glue_dir, mrpc_teacher, tmp_path):
    spec = space_file(tmp_path, glue_dir, mrpc_teacher, 1)
    with pytest.raises(ConfigError, match="unknown option 'learning-rat'"):
        sweep({**spec, "space": {"learning-rat": {"type": "float", "low": 1, "high": 2}}}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="needs low < high"):
        sweep({**spec, "space": {"alpha": {"type": "float", "low": 1, "high": 0.5}}}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="space 'beta_pkd' low: --beta-pkd must be ≥ 0, got -1.0"):  # a declared range
        sweep({**spec, "space": {"beta_pkd": {"type": "float", "low": -1, "high": 10}}}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="both fixed in 'base' and searched"):
        sweep({**spec, "space": {"epochs": {"type": "int", "low": 1, "high": 3}}}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="--startup-trials must be ≥ 1, got 0"):
        sweep({**spec, "startup_trials": 0}, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="expected an RDB URL"):
        sweep(spec, output_dir=str(tmp_path), storage="study.db")
    (tmp_path / "old" / "trial-0").mkdir(parents=True)  # a trial folder of a study whose storage was deleted
    with pytest.raises(ConfigError, match=r"holds trial-0, trial folders of another study than"):
        sweep(spec, output_dir=str(tmp_path / "old"), storage=f"sqlite:///{tmp_path / 'new.db'}")


def test_a_study_goes_on_with_a_teacher_fine_tuned_again_only_when_told(glue_dir, mrpc_teacher, tmp_path, caplog):
    """The teacher fine-tuned again (the same folder, other weights: another machine's rounding) is another teacher:
    a resume is refused, naming its weights, unless ``accept_teacher_change`` is given; the study then lists both.
    Even then, a teacher whose run record shows other fine-tuning options is refused, naming them."""
    from safetensors.torch import load_file, save_file

    from fsdkit.artifacts import folder_weights_sha256

    teacher = tmp_path / "teacher"
    shutil.copytree(mrpc_teacher, teacher)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = space_file(tmp_path, glue_dir, teacher, 1)
    finished_study(storage, "refit", 1, [({"learning_rate": 1e-4}, 0.5)])

    def run(**changes):
        return sweep({**spec, **changes}, storage=storage, output_dir=str(tmp_path / "sweep"), study_name="refit")

    run()  # the budget is met: nothing runs, the study records its teacher
    first = folder_weights_sha256(teacher)
    weights = load_file(teacher / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-6
    save_file(weights, teacher / "model.safetensors", metadata={"format": "pt"})
    second = folder_weights_sha256(teacher)
    with pytest.raises(ConfigError, match=f"was run with teacher_sha256 '{first}', not '{second}'"):
        run()
    run(accept_teacher_change=True)
    attrs = optuna.load_study(study_name="refit", storage=storage).user_attrs
    assert attrs["teachers"] == [first, second] and attrs["teacher_sha256"] == second
    run(accept_teacher_change=True)  # the same teacher again: nothing to add
    assert optuna.load_study(study_name="refit", storage=storage).user_attrs["teachers"] == [first, second]
    assert attrs["teacher_recipe"]["learning_rate"] == 5e-5 and attrs["teacher_recipe"]["data_dir"] == glue_dir.name

    # fine-tuned again with another learning rate: not the same recipe, refused even when told to accept a change
    record = json.loads((teacher / "fsdkit_run.json").read_text())
    (teacher / "fsdkit_run.json").write_text(
        json.dumps({**record, "config": {**record["config"], "learning_rate": 3e-4}})
    )
    weights[name] = weights[name] + 1e-6
    save_file(weights, teacher / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"fine-tuned again with other options \(learning_rate 5e-05, not 0.0003;"):
        run(accept_teacher_change=True)
    # the same recipe read from another folder (another machine's path to the data) is the same recipe
    moved = {**record["config"], "data_dir": f"/elsewhere/{glue_dir.name}", "output_dir": "/elsewhere/teacher"}
    (teacher / "fsdkit_run.json").write_text(json.dumps({**record, "config": moved}))
    run(accept_teacher_change=True)
    third = optuna.load_study(study_name="refit", storage=storage).user_attrs["teachers"][-1]
    assert third not in (first, second)
    # a teacher without a run record cannot be checked: it goes on, saying so
    (teacher / "fsdkit_run.json").unlink()
    weights[name] = weights[name] + 1e-6
    save_file(weights, teacher / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        run(accept_teacher_change=True)
    assert "not checked that it was fine-tuned as before: the new teacher has no fsdkit_run.json" in caplog.text
    assert optuna.load_study(study_name="refit", storage=storage).user_attrs["teacher_recipe"]["learning_rate"] == 5e-5


def finished_study(storage: str, name: str, budget: int, results: list[tuple[dict, float]]):
    """A study as ``fsdkit sweep`` leaves it: its budget recorded, each trial's options and value."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("budget", budget)
    for options, value in results:
        trial = study.ask()
        for key, val in options.items():
            trial.suggest_float(key, 0.0, 1.0) if isinstance(val, float) else trial.suggest_categorical(key, [val])
        trial.set_user_attr("options", options)
        study.tell(trial, value)
    return study


def test_a_study_refuses_a_resume_that_would_score_its_trials_otherwise(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """A study records its command, metric, teacher weights, fixed options and space; once a trial has finished, a
    resume that changes any of them is refused, naming it (its scores could not be compared with the new ones). A
    study begun by an older fsdkit records them at its next run; an option that scores nothing may change."""
    from fsdkit.artifacts import folder_weights_sha256

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = space_file(tmp_path, glue_dir, mrpc_teacher, 1)
    finished_study(storage, "resumed", 1, [({"learning_rate": 1e-4}, 0.5)])  # one trial finished, nothing recorded
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vkd").mkdir()

    def run(**changes):
        changed = {**spec, "base": {**spec["base"], **changes.pop("base", {})}, **changes}
        return sweep(changed, storage=storage, output_dir=str(tmp_path / "sweep"), study_name="resumed")

    run()  # the budget is met: nothing runs, the study's values are recorded
    attrs = optuna.load_study(study_name="resumed", storage=storage).user_attrs
    assert attrs["command"] == "distill" and attrs["metric"] == "holdout.f1"
    assert attrs["option.epochs"] == 2 and attrs["option.data_dir"] == str(glue_dir.resolve())
    assert attrs["space.alpha"] == {"type": "float", "low": 0.1, "high": 0.9}
    assert attrs["teacher_sha256"] == folder_weights_sha256(mrpc_teacher) and "option.eval_batch_size" not in attrs
    run(base={"eval-batch-size": 16, "data-dir": os.path.relpath(glue_dir)})  # scores the same: resumed
    assert attrs["option.method"] == "vkd"  # not a path, even beside a folder of that name
    with pytest.raises(ConfigError, match=r"was run with option\.weight_decay left out, not 0\.1"):
        run(base={"weight-decay": 0.1})  # an option added
    left_out = {k: v for k, v in spec["base"].items() if k != "relation-every"}
    with pytest.raises(ConfigError, match=r"was run with option\.relation_every 0, not left out"):
        sweep({**spec, "base": left_out}, storage=storage, output_dir=str(tmp_path / "sweep"), study_name="resumed")
    with pytest.raises(ConfigError, match=r"'resumed' .* was run with option\.epochs 2\.0, not 3\.0: give the same"):
        run(base={"epochs": 3})
    with pytest.raises(ConfigError, match=r"was run with space\.alpha \{.*'high': 0\.9\}, not \{.*'high': 0\.5\}"):
        run(space={**spec["space"], "alpha": {"type": "float", "low": 0.1, "high": 0.5}})


def test_fixed_from_takes_the_best_trial_of_a_finished_study(tmp_path):
    from fsdkit.sweep import fixed_from

    storage = f"sqlite:///{tmp_path / 'stage1.db'}"
    finished_study(
        storage,
        "stage1",
        3,
        [
            ({"learning_rate": 0.1, "alpha": 0.2}, 0.5),
            ({"learning_rate": 0.3, "alpha": 0.9}, 0.8),
            ({"learning_rate": 0.5, "alpha": 0.4}, 0.6),
        ],
    )
    values, source = fixed_from({"study": "stage1", "storage": storage}, "sqlite:///elsewhere.db")
    assert values == {"learning_rate": 0.3, "alpha": 0.9} and source["trial"] == 1 and source["value"] == 0.8
    only, _ = fixed_from({"study": "stage1", "options": ["learning-rate"]}, storage)  # default storage: the sweep's
    assert only == {"learning_rate": 0.3}
    with pytest.raises(ConfigError, match=r"did not search \['temperature'\]"):
        fixed_from({"study": "stage1", "storage": storage, "options": ["temperature"]}, storage)
    with pytest.raises(ConfigError, match="no study 'stage0'"):
        fixed_from({"study": "stage0", "storage": storage}, storage)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stduy'\]"):
        fixed_from({"study": "stage1", "stduy": "x"}, storage)
    finished_study(storage, "running", 4, [({"learning_rate": 0.1}, 0.5)])
    with pytest.raises(ConfigError, match="has 1 of its 4 trials finished; its best is not final"):
        fixed_from({"study": "running", "storage": storage}, storage)


def test_a_weight_searched_with_off_runs_its_term_at_zero_and_stage_two_inherits_stage_one(
    glue_dir, mrpc_teacher, tmp_path
):
    """Stage 1 (the shared knobs on VKD) → stage 2 (FSDI's weight with ``off``, stage 1's best fixed): the trial that
    drew "off" trains without the intra term (weight 0 in its record), the other with its drawn weight, and both run
    at stage 1's learning rate, alpha and temperature."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    stage1 = space_file(tmp_path, glue_dir, mrpc_teacher, 2)
    one = sweep(stage1, storage=storage, output_dir=str(tmp_path / "stage1"), study_name="stage1", startup_trials=1)
    spec = space_file(tmp_path, glue_dir, mrpc_teacher, 2)
    spec["base"].update(method="fsdi", logging_steps=2)
    spec["space"] = {"lambda-intra": {"type": "float", "low": 1e-3, "high": 10, "log": True, "off": True}}
    spec["fixed_from"] = {"study": "stage1"}
    assert yaml.safe_load("{type: float, off: true}") == {"type": "float", False: True}  # YAML 1.1's `off`
    spec["space"]["lambda-intra"] = {
        **{k: v for k, v in spec["space"]["lambda-intra"].items() if k != "off"},
        **yaml.safe_load("{off: true}"),
    }  # as a space file gives it
    spec["trials"] = 3
    study = optuna.create_study(study_name="stage2", storage=storage, direction="maximize")
    study.enqueue_trial({"lambda_intra": 5e-4})  # the decade below the range: off
    study.enqueue_trial({"lambda_intra": 2.5})
    study.enqueue_trial({"lambda_intra": 2e-4})  # off again: the same run as trial 0
    two = sweep(spec, storage=storage, output_dir=str(tmp_path / "stage2"), study_name="stage2", startup_trials=1)
    assert two["fixed_from"]["study"] == "stage1" and two["fixed_from"]["options"] == one["best"]["options"]
    # the repeat is not trained nor counted: it takes trial 0's score, and an untried draw runs in its place
    stored = optuna.load_study(study_name="stage2", storage=storage)
    repeat = stored.trials[2]
    assert repeat.user_attrs["repeat_of"] == 0 and repeat.value == stored.trials[0].value
    assert not (tmp_path / "stage2" / "trial-2").exists() and (tmp_path / "stage2" / "trial-3").is_dir()
    assert two["trials"]["complete"] + two["trials"]["pruned"] == 4 and two["trials"]["repeats"] == 1
    assert stored.trials[3].user_attrs["options"]["lambda_intra"] not in (0.0, 2.5)
    weights = []
    for trial in (0, 1):
        record = json.loads((tmp_path / "stage2" / f"trial-{trial}" / "fsdkit_run.json").read_text())
        weights.append({t["label"]: t["weight"] for t in record["terms"]}["intra"])
        for key in ("learning_rate", "alpha", "temperature"):
            assert record["config"][key] == pytest.approx(one["best"]["options"][key])
        logged = {key for entry in record["losses_by_epoch"] for key in entry}
        assert "loss_kd" in logged and ("loss_intra" in logged) == (trial == 1)
    assert weights == [0.0, 2.5]
    assert [t.user_attrs["options"]["lambda_intra"] for t in stored.trials][:3] == [0.0, 2.5, 0.0]
    # a space that also sets a fixed option, or a typo in a space entry, is refused before any trial
    with pytest.raises(ConfigError, match=r"come from study 'stage1'; do not also set them"):
        sweep(
            {**spec, "base": {**spec["base"], "alpha": 0.5}},
            storage=storage,
            output_dir=str(tmp_path / "x"),
            study_name="stage2b",
        )
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lgo'\]"):
        sweep(
            {**spec, "space": {"lambda-intra": {"type": "float", "low": 1, "high": 2, "lgo": True}}},
            storage=storage,
            output_dir=str(tmp_path / "x"),
            study_name="stage2c",
        )
    # no space: one run at stage 1's best (a rerun, say on a teacher fine-tuned again), which scores what it scored
    again = {**space_file(tmp_path, glue_dir, mrpc_teacher, 1), "space": {}, "fixed_from": {"study": "stage1"}}
    with pytest.raises(ConfigError, match="with no space the sweep is one run, at fixed_from's best: give --trials 1"):
        sweep({**again, "trials": 2}, storage=storage, output_dir=str(tmp_path / "rerun"), study_name="rerun")
    with pytest.raises(ConfigError, match=r"needs a search 'space'.*\(or fixed_from with no space"):
        sweep({**again, "fixed_from": None}, storage=storage, output_dir=str(tmp_path / "rerun"), study_name="rerun")
    rerun = sweep(again, storage=storage, output_dir=str(tmp_path / "rerun"), study_name="rerun")
    assert rerun["trials"]["complete"] == 1 and rerun["best"]["value"] == one["best"]["value"]
    assert rerun["best"]["options"] == {} and rerun["fixed_from"]["options"] == one["best"]["options"]


def test_off_is_one_more_choice_as_likely_as_one_unit_of_the_range():
    """``off: true`` extends the draw by one unit below ``low`` — a decade on a log scale, one integer on an int one,
    a tenth of a linear float range — and a draw there is 0: off is as likely as one decade (one integer) of the
    range, and no value between 0 and ``low`` is ever run. A range that already reaches 0, or an int log scale, is
    refused with ``off``."""
    from fsdkit.config import DistillConfig
    from fsdkit.sweep import _check_distribution, _suggest

    spaces = {
        "lambda_intra": {"type": "float", "low": 1e-3, "high": 10.0, "log": True, "off": True},  # 4 decades + off
        "relation_every": {"type": "int", "low": 1, "high": 4, "off": True},  # 4 integers + off
        "beta_pkd": {"type": "float", "low": 1.0, "high": 11.0, "off": True},  # off: a tenth of the range
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws: dict[str, list] = {key: [] for key in spaces}
    for _ in range(2000):
        trial = study.ask()
        for key, spec in spaces.items():
            draws[key].append(_suggest(trial, key, _check_distribution(DistillConfig, key, spec)))
        study.tell(trial, 0.0)
    for key, share in (("lambda_intra", 1 / 5), ("relation_every", 1 / 5), ("beta_pkd", 1 / 11)):
        values = draws[key]
        off = sum(v == 0 for v in values) / len(values)
        assert off == pytest.approx(share, abs=0.03), key
        assert all(v == 0 or spaces[key]["low"] <= v <= spaces[key]["high"] for v in values), key
    assert {type(v) for v in draws["relation_every"]} == {int}
    with pytest.raises(ConfigError, match="'off' adds 0 below the range, but low is 0"):
        _check_distribution(DistillConfig, "beta_pkd", {"type": "float", "low": 0.0, "high": 1.0, "off": True})
    with pytest.raises(ConfigError, match="'off' needs a linear int scale"):
        _check_distribution(
            DistillConfig, "relation_every", {"type": "int", "low": 1, "high": 8, "log": True, "off": True}
        )


def test_every_range_of_a_space_is_checked_before_its_first_trial():
    """Run settings and method settings alike: a bound outside a setting's declared range, or a setting the trials'
    method does not have, is refused by the space check (before any study or trial exists)."""
    weight = {"type": "float", "low": 1e-3, "high": 10.0, "log": True}
    with pytest.raises(ConfigError, match="space 'batch_size' low: --batch-size must be ≥ 1, got 0"):
        check_space("distill", {"method": "vkd"}, {"batch_size": {"type": "int", "low": 0, "high": 8}})
    with pytest.raises(ConfigError, match="space 'warmup_ratio' high: --warmup-ratio must be ≥ 0 and ≤ 1, got 1.5"):
        check_space("finetune", {}, {"warmup_ratio": {"type": "float", "low": 0.0, "high": 1.5}})
    with pytest.raises(ConfigError, match="choice: --eval-strategy must be one of no, epoch, got 'steps'"):
        check_space("distill", {}, {"eval_strategy": {"type": "categorical", "choices": ["epoch", "steps"]}})
    with pytest.raises(ConfigError, match="sweep: --lambda-intra is not a setting of --method vkd; it is one of fsdi"):
        check_space("distill", {"method": "vkd"}, {"lambda_intra": weight})
    with pytest.raises(ConfigError, match="sweep: --alpha is not a setting of --method nds"):
        check_space("distill", {"method": "nds", "alpha": 0.5}, {})
    methods = {"type": "categorical", "choices": ["fsdi", "fsd"]}
    assert check_space("distill", {}, {"method": methods, "lambda_intra": weight})[1]["lambda_intra"] == weight
    with pytest.raises(ConfigError, match="sweep: --lambda-intra is not a setting of --method vkd; it is one of fsdi"):
        check_space("distill", {}, {"method": {**methods, "choices": ["fsdi", "vkd"]}, "lambda_intra": weight})
