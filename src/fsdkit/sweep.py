"""``fsdkit sweep``: an Optuna study over any option of ``distill`` or ``finetune``.

Each trial is one real run (``OUTPUT_DIR/trial-<n>``) with the options ``base`` plus the trial's suggestions
from ``space``; it is scored on the per-epoch curve (:mod:`fsdkit.training.epoch_eval`: the ``holdout`` split
when ``base`` sets ``holdout-fraction``, else the task's dev split), which also feeds the pruner. The study
lives in an Optuna storage (SQLite file or any RDB URL), so:

- a killed sweep is resumed by running the same command: the study is loaded, finished trials are kept, and a
  trial whose worker died (no heartbeat for 3 intervals) or was stopped is marked failed and retried with its
  parameters, its run continuing from its last complete checkpoint (:func:`continue_stopped_run`);
- several workers — processes on one machine sharing a SQLite file, or machines sharing a PostgreSQL/MySQL
  database — run the same command and share the study; a worker starts no trial once the study has ``trials``
  trials finished (complete or pruned; repeats not counted, see below) or under way, and stops when it has
  ``trials`` finished.

The study's budget is its first ``trials`` finished trials, in the order they finished (:func:`budget_trials`):
its best trial is the best of those. Should workers finish more between them (a worker that died mid-trial and
was replaced), the extra trials are not considered, so studies compared at one budget are judged on as many
trials each. A trial that draws the options of a trial already scored (a weight "off" again, a categorical
choice) is the same deterministic run: it is not trained, takes that trial's score (marked ``repeat_of``), is
not counted, and an untried draw is queued in its place (:func:`repeat_of`).

Every worker writes ``summary.json`` (best trial, its parameters and command line, counts) and, with matplotlib,
``optimization_history.png`` and ``param_importances.png`` into ``OUTPUT_DIR`` when it stops.

Search space (YAML)::

    command: distill
    base: {task: mrpc, data-dir: glue, teacher: runs/teacher, method: fsd, epochs: 3, holdout-fraction: 0.1}
    space:
      learning-rate: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}
      alpha: {type: float, low: 0.1, high: 0.9}
      temperature: {type: categorical, choices: [1, 2, 5, 10]}
      lambda-intra: {type: float, low: 1, high: 300, log: true, off: true}   # 0 is one more choice

Staged tuning: ``fixed_from: {study: NAME, storage: URL, options: [learning-rate, alpha, temperature]}`` fixes
those options (default: every option the other study searched) at that study's best trial, read when the sweep
starts; the other study must have finished its budget (its best is then final), so stage 2 inherits stage 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

from fsdkit.artifacts import atomic_write_text, check_output_file, folder_weights_sha256, read_json_object
from fsdkit.config import (
    DistillConfig,
    FinetuneConfig,
    RunConfig,
    SweepConfig,
    as_config,
    coerce_field,
    command_line,
    config_to_dict,
    declared_options,
    make_config,
    option_names,
)
from fsdkit.errors import ConfigError, short_repr
from fsdkit.methods import get_method, not_a_setting
from fsdkit.settings import settings_of

COMMANDS: dict[str, type[RunConfig]] = {"distill": DistillConfig, "finetune": FinetuneConfig}
logger = logging.getLogger("fsdkit")
SPACE_TYPES = ("float", "int", "categorical")
#: the keys a space entry of each type may hold (any other is a typo: refused, not ignored)
SPACE_KEYS = {
    "float": {"type", "low", "high", "log", "step", "off"},
    "int": {"type", "low", "high", "log", "step", "off"},
    "categorical": {"type", "choices"},
}
#: the keys of ``fixed_from``
FIXED_FROM_KEYS = {"study", "storage", "options"}


def _key(name: str) -> str:
    return str(name).replace("-", "_")


def check_space(command: str, base: dict[str, Any], space: dict[str, Any]) -> tuple[dict, dict]:
    """Validate ``base`` and ``space`` against the command's options; return them with ``snake_case`` keys."""
    cls = COMMANDS[command]
    names = set(option_names(cls))  # the fields and the methods' settings (alpha, beta_pkd, ...)
    out_base: dict[str, Any] = {}
    out_space: dict[str, Any] = {}
    for where, mapping, target in (("base", base, out_base), ("space", space, out_space)):
        for raw, value in mapping.items():
            key = _key(raw)
            if key not in names:
                raise ConfigError(f"sweep {where}: unknown option {short_repr(raw)} for fsdkit {command}")
            if key == "output_dir":
                raise ConfigError(f"sweep {where}: 'output-dir' is set per trial (OUTPUT_DIR/trial-N)")
            target[key] = value
    for key, value in out_base.items():
        out_base[key] = coerce_field(cls, key, value, "sweep base")
    for key, spec in out_space.items():
        out_space[key] = _check_distribution(cls, key, spec)
    overlap = sorted(set(out_base) & set(out_space))
    if overlap:
        raise ConfigError(f"sweep: options {overlap} are both fixed in 'base' and searched in 'space'")
    _check_method_settings(cls, out_base, out_space)
    return out_base, out_space


def _check_method_settings(cls, base: dict[str, Any], space: dict[str, Any]) -> None:
    """Every method setting of the sweep is one the trials' method has (each method searched, if several)."""
    declared = declared_options(cls)
    if not declared:
        return
    methods = (
        space["method"]["choices"] if "method" in space else [base.get("method", settings_of(cls)["method"].default)]
    )
    for method in methods:
        settings = get_method(method).settings()
        for key in (*base, *space):
            if key in declared and key not in settings:
                raise not_a_setting(method, key, "sweep")


def _bound(key: str, spec: dict[str, Any], name: str) -> float:
    value = spec[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"sweep space '{key}': '{name}' must be a number, got {short_repr(value)}")
    return float(value)


def _check_distribution(cls, key: str, spec: Any) -> dict[str, Any]:
    """One space entry checked: its type and keys, ``low < high``, a log scale above 0 and without ``step``, every
    bound (or choice) inside the option's own range; ``off: true`` needs the option to accept 0."""
    if isinstance(spec, dict) and False in spec and "off" not in spec:
        # YAML 1.1 (PyYAML) reads the key `off` as the boolean false: `off: true` arrives as {False: True}
        spec = {("off" if key is False else key): value for key, value in spec.items()}
    if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
        raise ConfigError(
            f"sweep space '{key}': expected a mapping with type one of {', '.join(SPACE_TYPES)}, got {short_repr(spec)}"
        )
    unknown = sorted(set(spec) - SPACE_KEYS[spec["type"]])
    if unknown:
        raise ConfigError(
            f"sweep space '{key}': unknown key(s) {unknown} for type {spec['type']}; "
            f"known: {', '.join(sorted(SPACE_KEYS[spec['type']]))}"
        )
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise ConfigError(f"sweep space '{key}': a categorical needs a non-empty list 'choices'")
        for choice in spec["choices"]:
            coerce_field(cls, key, choice, f"sweep space '{key}' choice")
        return spec
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"sweep space '{key}': needs low and high, got {short_repr(spec)}")
    low, high = _bound(key, spec, "low"), _bound(key, spec, "high")
    if not low < high:
        raise ConfigError(f"sweep space '{key}': needs low < high, got low {low:g}, high {high:g}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"sweep space '{key}': a log scale needs low > 0")
    if spec.get("log") and spec.get("step") is not None:
        raise ConfigError(f"sweep space '{key}': 'step' and 'log' do not go together (Optuna samples one or the other)")
    if spec.get("step") is not None and not _bound(key, spec, "step") > 0:
        raise ConfigError(f"sweep space '{key}': 'step' must be > 0")
    for flag in ("log", "off"):
        if not isinstance(spec.get(flag, False), bool):
            raise ConfigError(f"sweep space '{key}': '{flag}' must be true or false, got {short_repr(spec[flag])}")
    for bound in ("low", "high"):  # a setting's declared range holds for the whole interval
        coerce_field(cls, key, spec[bound], f"sweep space '{key}' {bound}")
    if spec.get("off"):
        coerce_field(cls, key, 0, f"sweep space '{key}' off (0)")
        if low <= 0:
            raise ConfigError(f"sweep space '{key}': 'off' adds 0 below the range, but low is {low:g}: give low > 0")
        if spec["type"] == "int" and spec.get("log"):
            raise ConfigError(
                f"sweep space '{key}': 'off' needs a linear int scale (off is one more integer below low)"
            )
    return spec


def _off_below(spec: dict[str, Any]) -> float:
    """Where the draws of a range searched with ``off: true`` begin: "off" is one more choice of the same weight as
    one unit of the range — a decade below ``low`` on a log scale, a step on an int or stepped scale, a tenth of the
    range on a linear float one — and a draw below ``low`` is 0 (the term switched off)."""
    low, high = float(spec["low"]), float(spec["high"])
    if spec.get("log"):
        return low / 10
    if spec["type"] == "int" or spec.get("step") is not None:
        return low - float(spec.get("step") or 1)
    return low - (high - low) / 10


def _suggest(trial, key: str, spec: dict[str, Any]):
    """The trial's value of ``key``. With ``off: true`` the draw begins one unit below the range (:func:`_off_below`)
    and a draw there is 0, the term switched off: one Optuna parameter, so TPE learns whether a term helps as it
    learns how much, off lying next to the weights too small to move training."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    low = _off_below(spec) if spec.get("off") else float(spec["low"])
    if spec["type"] == "int":
        value = trial.suggest_int(
            key, int(low), int(spec["high"]), step=int(spec.get("step", 1)), log=bool(spec.get("log", False))
        )
    else:
        value = trial.suggest_float(
            key, low, float(spec["high"]), log=bool(spec.get("log", False)), step=spec.get("step")
        )
    return _option_value(spec, value)


def _option_value(spec: dict[str, Any], value: Any) -> Any:
    """The option a drawn parameter ``value`` runs with: 0 for a draw below the range of a weight searched with
    ``off``, else the value."""
    if spec.get("off") and value < float(spec["low"]):
        return 0 if spec["type"] == "int" else 0.0
    return value


def trial_options(trial) -> dict[str, Any]:
    """The options a trial ran with: its searched values (a weight switched off is 0), by option name. Studies from
    before ``off`` existed kept only Optuna's parameters, which are then the options."""
    options = trial.user_attrs.get("options")
    return dict(options) if options is not None else dict(trial.params)


def _same_run(options: dict[str, Any]) -> tuple:
    return tuple(sorted(options.items()))


def finished_trials(study) -> list:
    """The study's finished (complete or pruned) trials in the order they finished, without the repeats: a trial
    whose options (:func:`trial_options`) are those of a complete trial that finished before it is the same run (a
    run is deterministic: same options, same seed), scored already — e.g. a weight drawn "off" again after "off"
    scored best. :func:`repeat_of` does not train such a trial; one two workers trained side by side is left out
    here all the same."""
    import optuna

    states = optuna.trial.TrialState
    finished = sorted(
        study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)),
        key=lambda t: (t.datetime_complete, t.number),
    )
    scored: set[tuple] = set()
    out = []
    for trial in finished:
        run = _same_run(trial_options(trial))
        if run in scored:
            continue
        out.append(trial)
        if trial.state == states.COMPLETE:
            scored.add(run)
    return out


#: the largest discrete space whose untried draws are listed (a larger one draws at random, as a continuous one)
MAX_GRID = 100_000


def _draw_count(spec: dict[str, Any]) -> int | None:
    """How many different values one space entry draws (off, when searched, is one more), or None when it is
    continuous."""
    if spec["type"] == "categorical":
        return len(set(spec["choices"]))
    if spec["type"] == "float" and spec.get("step") is None:
        return None
    low = _off_below(spec) if spec.get("off") else float(spec["low"])
    return int((float(spec["high"]) - low) / float(spec.get("step") or 1) + 1e-9) + 1


def _draws(spec: dict[str, Any]) -> list:
    """The Optuna parameter values of a discrete space entry (:func:`_draw_count` of them)."""
    if spec["type"] == "categorical":
        return list(dict.fromkeys(spec["choices"]))
    low, step = (_off_below(spec) if spec.get("off") else float(spec["low"])), float(spec.get("step") or 1)
    draws = [low + k * step for k in range(cast(int, _draw_count(spec)))]
    return [int(d) for d in draws] if spec["type"] == "int" else draws


def distinct_runs(space: dict[str, Any]) -> int | None:
    """How many different runs a space of discrete entries only holds, or None when one is continuous (each value
    of an entry is a different option: off runs at 0, below every value of its range)."""
    counts = [_draw_count(spec) for spec in space.values()]
    return None if None in counts else math.prod(cast(list[int], counts))


def repeat_count(study) -> int:
    """How many of the study's finished trials are repeats (:func:`finished_trials` leaves them out)."""
    import optuna

    states = optuna.trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))) - len(finished_trials(study))


def repeat_of(study, trial, space: dict[str, Any], options: dict[str, Any]):
    """The complete trial of ``study`` that ran ``options`` already, or None. Then ``trial`` is a repeat: the caller
    returns that trial's value instead of training (it records ``repeat_of``, and :func:`finished_trials` leaves it
    out of the budget), and a draw of ``space`` that no trial has run, runs or waits for is queued for the next trial
    — a random one (seeded by the trial's number; of the grid's untried draws when the space is discrete and holds
    at most :data:`MAX_GRID` runs), because the sampler, having just seen the repeat score as well again, would
    likely draw it once more. A sweep refuses a discrete space of fewer runs than its trials
    (:func:`distinct_runs`), so an untried draw is left while the budget is not."""
    import itertools
    import random

    import optuna

    states = optuna.trial.TrialState
    scored = {_same_run(trial_options(t)): t for t in finished_trials(study) if t.state == states.COMPLETE}
    earlier = scored.get(_same_run(options))
    if earlier is None:
        return None
    trial.set_user_attr("repeat_of", earlier.number)

    def run_of(params: dict[str, Any]) -> tuple:
        return _same_run({key: _option_value(spec, params[key]) for key, spec in space.items() if key in params})

    pending = study.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING))
    taken = set(scored) | {run_of(t.system_attrs.get("fixed_params") or t.params) for t in pending}
    runs = distinct_runs(space)
    if runs is not None and runs <= MAX_GRID:
        grid = (dict(zip(space, draw, strict=True)) for draw in itertools.product(*map(_draws, space.values())))
        untried = [draw for draw in grid if run_of(draw) not in taken]
        draws = iter([random.Random(trial.number).choice(untried)] if untried else [])
    else:
        sampler = optuna.samplers.RandomSampler(seed=trial.number)
        draws = (
            {name: sampler.sample_independent(study, trial, name, dist) for name, dist in trial.distributions.items()}
            for _ in range(100)
        )
    for params in draws:
        if run_of(params) not in taken:
            study.enqueue_trial(params)
            break
    else:
        logger.warning("fsdkit sweep: study %r found no untried draw of its space to queue", study.study_name)
    return earlier


def _stop_at_budget(trials: int):
    """A callback that stops the study once ``trials`` trials have finished (:func:`finished_trials`: repeats not
    counted) or are under way — two workers do not both start the study's last trial. A waiting trial (enqueued by
    the user, a dead worker's trial queued for retry, an untried draw queued after a repeat) does not count: the next
    trial a worker asks for is it."""
    import optuna

    def stop(study, _trial) -> None:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if len(finished_trials(study)) + len(running) >= trials:
            study.stop()

    return stop


def fixed_from(spec: Any, default_storage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options to fix from another study's best trial, and where they came from (for the summary).

    ``spec``: ``{study: NAME, storage: URL (default: this sweep's), options: [names] (default: every option that
    study searched)}``. The study must have finished its budget (the ``budget`` it recorded; its best is then
    final), else the stage it feeds would start from a best that may still change.
    """
    import optuna

    if not isinstance(spec, dict) or not isinstance(spec.get("study"), str):
        raise ConfigError(
            f"fixed_from: expected a mapping {{study: NAME, storage: URL, options: [...]}}, got {short_repr(spec)}"
        )
    unknown = sorted(set(spec) - FIXED_FROM_KEYS)
    if unknown:
        raise ConfigError(f"fixed_from: unknown key(s) {unknown}; known: {', '.join(sorted(FIXED_FROM_KEYS))}")
    url = str(spec.get("storage") or default_storage)
    wanted = spec.get("options")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted)):
        raise ConfigError(f"fixed_from options: expected a list of option names, got {short_repr(wanted)}")
    try:
        source = optuna.load_study(study_name=spec["study"], storage=_storage(url, 60))
    except KeyError:
        raise ConfigError(f"fixed_from: no study {spec['study']!r} in {url}") from None
    budget = source.user_attrs.get("budget")
    if budget is None:
        raise ConfigError(f"fixed_from: study {spec['study']!r} records no budget (it was not made by fsdkit sweep)")
    finished = len(budget_trials(source, int(budget)))
    best = best_trial(source, int(budget))
    if finished < int(budget) or best is None:
        raise ConfigError(
            f"fixed_from: study {spec['study']!r} has {finished} of its {budget} trials finished; its best "
            f"is not final yet — finish it first (rerun its sweep)"
        )
    options = trial_options(best)
    names = [_key(w) for w in wanted] if wanted is not None else list(options)
    missing = [n for n in names if n not in options]
    if missing:
        raise ConfigError(
            f"fixed_from: study {spec['study']!r} did not search {missing}; it searched {sorted(options)}"
        )
    values = {n: options[n] for n in names}
    return values, {
        "study": spec["study"],
        "storage": url,
        "trial": best.number,
        "value": best.value,
        "options": values,
    }


#: how often a trial whose worker died or was stopped is run again with the same parameters
MAX_RETRY = 2


def _retry_callback():
    """Optuna's callback that queues a failed trial's parameters again (at most :data:`MAX_RETRY` times): optuna ≥ 4.9
    names it RetryHeartbeatStaleTrialCallback (its former name deprecated there), older ones RetryFailedTrialCallback."""
    import optuna
    from optuna import storages

    with warnings.catch_warnings():  # "experimental" in optuna: a warning per worker, not news
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
        return retry(max_retry=MAX_RETRY)


def _storage(url: str, heartbeat: int):
    import optuna
    from optuna import storages

    _check_storage(url)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna: a warning per worker, not news
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # a trial whose worker died (no heartbeat for 3 intervals) is retried
            name = (
                "heartbeat_stale_trial_callback"
                if hasattr(storages, "RetryHeartbeatStaleTrialCallback")
                else "failed_trial_callback"
            )
            return storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **{name: _retry_callback()}
            )
    except (optuna.exceptions.OptunaError, ImportError, ValueError) as exc:
        raise ConfigError(f"--storage {url!r}: {exc}") from None


def optimize(study, objective: Callable[..., Any], **kwargs) -> None:
    """``study.optimize(objective, **kwargs)``, and when this worker is stopped (Ctrl-C, ``kill``: a
    ``KeyboardInterrupt``) its running trial, which optuna marks failed, is queued again with the same parameters, as
    a trial whose worker died is (:func:`_retry_callback`, up to :data:`MAX_RETRY` times): stopping a study does not
    change which trials it draws. A failed trial keeps why in its user attribute ``error`` (``KeyboardInterrupt: …``
    when stopped); one that failed by itself is not queued again."""
    import optuna

    running: list[int] = []

    def tracked(trial):
        running[:] = [trial.number]
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            running.clear()
            raise
        except KeyboardInterrupt as error:  # the trial stays the running one: queued again below
            trial.set_user_attr("error", f"KeyboardInterrupt: {error}"[:500])
            raise
        except Exception as error:
            running.clear()  # a trial that failed by itself is not queued again, whenever the stop comes
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            raise
        running.clear()
        return value

    try:
        study.optimize(tracked, **kwargs)
    except KeyboardInterrupt:
        stopped = [t for t in study.get_trials(deepcopy=False) if t.number in running]
        if stopped and stopped[0].state == optuna.trial.TrialState.FAIL:
            _retry_callback()(study, stopped[0])
        raise


def _pruner(name: str, startup_trials: int):
    """The study's pruner: the median rule once ``startup_trials`` trials have completed (and as many reported the
    epoch judged: a repeat, :func:`repeat_of`, completes without a curve), or none.

    The median of fewer completed trials is a poor yardstick: with one, every trial below it at some epoch is stopped
    (a 6-trial MRPC study pruned 6 of 7 that way, on a 367-example holdout where a point is 4 examples). Steps are
    epochs counted from 1, and the first evaluation never decides (``n_warmup_steps=2``): after one epoch of a
    warmed-up schedule many good trials still predict one class (MRPC's holdout had lr 1e-4 at the constant
    predictor's 63.8 after epoch 1 and at 76.8 after epoch 2). The last evaluation is not pruned either (``sweep``).
    """
    import optuna

    if name != "median":
        return optuna.pruners.NopPruner()
    # n_min_trials: the median of an epoch needs as many curves that reached it (a repeat, not trained, has none)
    return optuna.pruners.MedianPruner(
        n_startup_trials=startup_trials, n_warmup_steps=2, n_min_trials=max(1, startup_trials)
    )


def _creation_lock(url: str):
    """An inter-process lock beside a SQLite file (workers on one machine). With a database server, create the
    study once (`optuna create-study`) or start one worker before the others (docs/sweeps.md)."""
    import contextlib

    from fsdkit.artifacts import build_lock

    path = _sqlite_file(url)
    return build_lock(path) if path is not None else contextlib.nullcontext()


#: options that cannot change a trial's score (where it writes, how it logs, how fast it runs), not recorded
_NOT_SCORED = frozenset(
    {
        "test_file",
        "eval_batch_size",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "resume",
        "report_to",
        "reuse_host_memory",
        "progress",
        "cache_dir",
        "teacher_cache",
    }
)


#: the user attribute listing the keys of the values :func:`claim_study` recorded
CLAIMED = "claimed"
#: the value :func:`sweep_values` records of a local teacher: the SHA-256 of its weights
TEACHER_KEY = "teacher_sha256"
#: the user attribute holding how the study's teacher was fine-tuned (:func:`teacher_recipe`), when it is known
TEACHER_RECIPE = "teacher_recipe"

#: options that name a local file or folder, or else a hub name (``*_file`` and ``*_dir`` options too)
_PATH_OPTIONS = frozenset(
    {"teacher", "student", "student_config", "student_tokenizer", "model", "pretrained", "memory", "dataset"}
)


def _names_path(option: str) -> bool:
    """Whether ``option`` names a file or folder (:data:`_PATH_OPTIONS`, ``*_file``, ``*_dir``)."""
    return option in _PATH_OPTIONS or option.endswith(("_file", "_dir"))


def recorded_value(option: str, value: Any) -> Any:
    """``option``'s ``value`` as a study records it: an option naming a file or folder (:func:`_names_path`) that
    exists as its absolute path, so that a resume spelling the path otherwise is the same study; any other value as
    it is."""
    if _names_path(option) and isinstance(value, str) and value and Path(value).exists():
        return str(Path(value).resolve())
    return value


def teacher_recipe(record) -> dict[str, Any] | None:
    """How a teacher was fine-tuned, from its run record (``fsdkit_run.json``; None for a teacher without one, or
    one fsdkit distilled): the task and every option its weights depend on — not the output folder nor those that
    score nothing (:data:`_NOT_SCORED`), and a file or folder by its last name only (``glue`` for
    ``../shared/glue``), since a teacher fine-tuned again on another machine reads its data from another path."""
    if record is None or record.command != "finetune":
        return None
    recipe: dict[str, Any] = {"task": record.task}
    for option, value in record.config.items():
        if option in _NOT_SCORED or option == "output_dir":
            continue
        is_path = _names_path(option) and isinstance(value, str) and value
        recipe[option] = Path(value).name if is_path else value
    return recipe


def sweep_values(command: str, metric: str, base: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """What makes a sweep's trials comparable, as :func:`claim_study` records it: the command and metric, every
    option fixed for all trials (``option.<name>``: ``base`` and the ``fixed_from`` values, but those that cannot
    change a score), each searched option's distribution (``space.<name>``) and, for ``distill`` from a local
    teacher folder, the teacher's weights (``teacher_sha256``)."""
    values: dict[str, Any] = {
        "command": command,
        "metric": metric,
        **{f"option.{k}": recorded_value(k, v) for k, v in base.items() if k not in _NOT_SCORED},
        **{f"space.{k}": spec for k, spec in space.items()},
    }
    teacher = base.get("teacher")
    if command == "distill" and isinstance(teacher, str) and Path(teacher).is_dir():
        values[TEACHER_KEY] = folder_weights_sha256(teacher)
    return values


def claim_study(
    study,
    values: dict[str, Any],
    storage: str,
    accept_teacher_change: bool = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Record what makes ``study``'s trials comparable (its metric ``split.name``, its teacher's weights and the
    options a score depends on, one attribute each: :func:`sweep_values`, ``fsdkit compress``'s own) in its user
    attributes, and their keys in ``claimed``; refuse to resume a study that finished a trial with other values, or
    with a value left out or added, whose scores could not be compared with the new ones. A study begun by an older
    fsdkit (no ``claimed``) records its values now, and so does a study with no finished trial (a first run killed
    early may be started again with corrected options). With ``accept_teacher_change``, other teacher weights (the
    teacher fine-tuned again) are no refusal when the teacher was fine-tuned as before: the study then lists every
    teacher its trials used, in order, in ``teachers``. How it was fine-tuned (``recipe``, :func:`teacher_recipe`)
    is kept in ``teacher_recipe``; a new teacher fine-tuned otherwise (an option both recipes hold, with other
    values) is refused, naming the options, and one whose recipe or whose predecessor's is unknown goes on with a
    warning that it could not be checked."""
    import optuna

    # as the storage returns them: lists for tuples, str keys
    values, recipe = json.loads(json.dumps([values, recipe], default=str))
    recorded = study.user_attrs
    claimed = recorded.get(CLAIMED)  # the keys of the recorded values (none: a study begun by an older fsdkit)
    states = optuna.trial.TrialState
    finished = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))  # pruned: values reported
    changed = []
    teacher, earlier = values.get(TEACHER_KEY), recorded.get(TEACHER_KEY)
    new_teacher = bool(finished) and teacher is not None and earlier is not None and earlier != teacher
    if finished:
        changed = [
            f"{key} {recorded[key]!r}, not {value!r}"
            for key, value in values.items()
            if (claimed is None or key in claimed)
            and recorded.get(key, value) != value
            and not (key == TEACHER_KEY and accept_teacher_change)
        ]
        if claimed is not None:
            changed += [f"{key} {recorded[key]!r}, not left out" for key in claimed if key not in values]
            changed += [f"{key} left out, not {values[key]!r}" for key in values if key not in claimed]
    if changed:
        raise ConfigError(
            f"study {study.study_name!r} in {storage} was run with " + "; ".join(changed) + ": give the same "
            "options to resume it, or start another study (a new --study-name or --storage, and a new --output-dir)"
        )
    earlier_recipe = recorded.get(TEACHER_RECIPE)
    if new_teacher and accept_teacher_change:
        if recipe is not None and earlier_recipe is not None:
            otherwise = [
                f"{key} {earlier_recipe.get(key)!r}, not {recipe.get(key)!r}"
                for key in sorted(set(earlier_recipe) & set(recipe))  # an option one fsdkit version lacks: unknown
                if earlier_recipe[key] != recipe[key]
            ]
            if otherwise:
                raise ConfigError(
                    f"study {study.study_name!r} in {storage}: its teacher was fine-tuned again with other options "
                    f"({'; '.join(otherwise)}; from the teacher's fsdkit_run.json): --accept-teacher-change resumes "
                    "a study only with a teacher fine-tuned as before; fine-tune it so, or start another study"
                )
        unchecked = (
            ""
            if recipe is not None and earlier_recipe is not None
            else " (not checked that it was fine-tuned as before: "
            + ("the new teacher has no fsdkit_run.json)" if recipe is None else "the study has no teacher_recipe)")
        )
        study.set_user_attr("teachers", [*recorded.get("teachers", [earlier]), teacher])
        logger.warning(
            "study %r goes on with another teacher (%s; before: %s)%s", study.study_name, teacher, earlier, unchecked
        )
    if recipe is not None and earlier_recipe is None:
        study.set_user_attr(TEACHER_RECIPE, recipe)
    for key, value in values.items():
        if recorded.get(key) != value:
            study.set_user_attr(key, value)
    if claimed != sorted(values):
        study.set_user_attr(CLAIMED, sorted(values))


def refuse_stray_trials(out: Path, study, storage: str) -> None:
    """Refuse an output folder whose ``trial-N`` folders are not trials of ``study`` (another study's, say of a
    deleted storage): trial numbers restart in every study, and a trial would find its folder taken."""
    folders = [p.name for p in out.glob("trial-*") if p.is_dir()]  # listed before the trials: a new trial's folder
    known = {f"trial-{t.number}" for t in study.get_trials(deepcopy=False)}  # is made after its trial
    strays = sorted(set(folders) - known)
    if strays:
        raise ConfigError(
            f"--output-dir {out} holds {', '.join(strays[:3])}{' …' if len(strays) > 3 else ''}, trial folders of "
            f"another study than {study.study_name!r} in {storage}: give a new --output-dir, or remove them"
        )


def _check_storage(url: str) -> None:
    """An RDB URL; for SQLite a file (``sqlite:///FILE``, not in memory) that can be written."""
    if not url.startswith(("sqlite:", "postgresql", "mysql", "oracle", "mssql")):
        raise ConfigError(
            f"--storage {url!r}: expected an RDB URL such as sqlite:///study.db or postgresql://user@host/db"
        )
    path = _sqlite_file(url)
    if url.startswith("sqlite:") and (path is None or not str(path).strip("/") or str(path) == ":memory:"):
        raise ConfigError(
            f"--storage {url!r}: expected sqlite:///FILE (three slashes, then the file; an in-memory "
            f"database would not outlive the worker, so the study could not be resumed or shared)"
        )
    if path is not None:
        _check_sqlite_file(url, path)


def _check_sqlite_file(url: str, path: Path) -> None:
    """The study's SQLite file must be a file this process can write, in a folder it can write (SQLite's journal)."""
    check_output_file(path, name=f"--storage {url!r} ({path})")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///FILE`` storage URL, else None."""
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]).expanduser() if url.startswith(prefix) else None


def sweep(config: SweepConfig | dict | None = None, **overrides) -> dict[str, Any]:
    """Run (or resume, or join) the study described by ``config``; returns the summary (also ``summary.json``)."""
    import optuna

    from fsdkit.data import resolve_task_data
    from fsdkit.run_record import RunRecord
    from fsdkit.training.run import distill, finetune
    from fsdkit.training.run_data import HOLDOUT, teacher_holdout_warning

    config = as_config(SweepConfig, config, overrides)
    if not config.output_dir:
        raise ConfigError("--output-dir is required (the trial folders and the summary)")
    if not config.space and config.fixed_from is None:
        raise ConfigError(
            "the sweep needs a search 'space' (option name -> distribution), e.g. in --config SPACE.yaml (or "
            "fixed_from with no space: one run at another study's best)"
        )
    base_given = dict(config.base or {})
    source = None
    if config.fixed_from is not None:
        fixed, source = fixed_from(config.fixed_from, config.storage)
        given = {_key(k) for k in base_given} | {_key(k) for k in config.space or {}}
        clash = sorted(set(fixed) & given)
        if clash:
            raise ConfigError(
                f"fixed_from: {clash} come from study {source['study']!r}; do not also set them in 'base' or 'space'"
            )
        base_given.update(fixed)
    base, space = check_space(config.command, base_given, config.space or {})
    runs = distinct_runs(space)
    if not space and config.trials > 1:
        raise ConfigError(
            f"with no space the sweep is one run, at fixed_from's best: give --trials 1, not {config.trials}"
        )
    if runs is not None and runs < config.trials:
        raise ConfigError(
            f"the sweep space holds {runs} different runs (every option discrete), fewer than --trials "
            f"{config.trials}: the other trials would repeat them; give --trials {runs} or a larger space"
        )
    run_options = make_config(COMMANDS[config.command], base)  # every trial's options but the searched ones
    task, _ = resolve_task_data(run_options)  # a registry task or your own data
    metric = task.metric(config.metric)
    split = HOLDOUT if base.get("holdout_fraction") else task.eval_splits[0]
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    teacher = base.get("teacher") if config.command == "distill" else None
    record = RunRecord.read(teacher) if teacher and Path(teacher).is_dir() else None
    holdout = base.get("holdout_fraction") if split == HOLDOUT else None
    warning = teacher_holdout_warning(record, config_to_dict(run_options), holdout) if holdout else None
    if warning:
        logger.warning("fsdkit sweep (--teacher %s): %s", teacher, warning)
    run: Callable[..., dict[str, Any]] = distill if config.command == "distill" else finetune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = _pruner(config.pruner, config.startup_trials)
    _check_storage(config.storage)  # before its lock file is made beside it
    with _creation_lock(config.storage):  # workers starting together would race to create the schema and study
        study = optuna.create_study(
            storage=_storage(config.storage, config.heartbeat),
            study_name=config.study_name,
            direction=cast(Literal["maximize", "minimize"], config.direction),  # one of the setting's choices
            pruner=pruner,
            load_if_exists=True,
        )
    # the first worker of a study draws from --seed; a worker that joins or resumes it from --seed + its pid, so
    # that parallel workers do not repeat each other's random start-up trials
    joining = bool(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        n_startup_trials=config.startup_trials, seed=config.seed + (os.getpid() if joining else 0)
    )
    values = sweep_values(config.command, f"{split}.{metric}", base, space)
    claim_study(
        study,
        values,
        storage=config.storage,
        accept_teacher_change=config.accept_teacher_change,
        recipe=teacher_recipe(record),
    )
    refuse_stray_trials(out, study, config.storage)
    study.set_user_attr("budget", config.trials)
    if source is not None:
        study.set_user_attr("fixed_from", source)

    def objective(trial) -> float:
        params = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        trial.set_user_attr("options", params)
        earlier = repeat_of(study, trial, space, params)
        if earlier is not None:  # the same run, scored already: not trained, not counted (finished_trials)
            return earlier.value
        folder = out / f"trial-{trial.number}"
        options = {**base, **params, "output_dir": str(folder), "progress": False}
        trial.set_user_attr("command", command_line(config.command, options))
        trial.set_user_attr("output_dir", str(folder.resolve()))  # before training: where a retry finds its run
        with trial_checkpoints(folder):
            resume = continue_stopped_run(trial, folder, metric)
            run_config = make_config(COMMANDS[config.command], {**options, "resume": resume})
            # the last evaluation is never pruned: stopping there saves nothing, and the trial is a finished one
            last_epoch = None if run_config.max_steps > 0 else float(run_config.epochs)

            def report(point: dict[str, Any]) -> None:
                trial.report(*_reported(point, metric))
                if (last_epoch is None or point["epoch"] < last_epoch - 1e-6) and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {point['epoch']}")

            record = run(run_config, on_evaluate=report)
        return record["metrics"][split][metric]

    if len(finished_trials(study)) < config.trials:
        optimize(study, objective, callbacks=[_stop_at_budget(config.trials)], catch=(FloatingPointError,))
    discard_stopped_runs(study)
    return write_summary(study, config, out)


def _reported(point: dict[str, Any], metric: str) -> tuple[float, int]:
    """The value and step a per-epoch evaluation point reports to its trial (step: the epoch, from 1)."""
    return point[f"eval_{metric}"], max(1, round(point["epoch"]))


@contextmanager
def trial_checkpoints(folder: Path):
    """Around a trial's run in ``folder``: its ``checkpoints`` are removed once it has finished (its model and run
    record stay), was pruned or failed by itself, and kept when it is stopped (``KeyboardInterrupt``: Ctrl-C,
    ``kill``), for its retry to continue from (:func:`continue_stopped_run`)."""
    try:
        yield
    except BaseException as error:
        if not isinstance(error, KeyboardInterrupt):
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        raise
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)


def continue_stopped_run(trial, folder: Path, metric: str | None) -> bool:
    """When ``trial`` is the retry of a trial whose run was stopped (its worker stopped or killed: :func:`optimize`,
    :func:`_retry_callback`) and that run left a complete checkpoint on this file system, move its ``checkpoints``
    into ``folder`` and, given the ``metric`` the trial reports, report each per-epoch evaluation the last complete
    one holds (the pruner's curve up to there); the run then goes on with ``--resume`` — bit for bit the run it would
    have been (``fsdkit.training.checkpoints``) — instead of training again from its first step. False (a run from
    the start) when there is none to continue. Each trial's user attribute ``output_dir`` (absolute, set before it
    trains) names its folder; a chain of retries is searched from the latest."""
    from fsdkit.training.checkpoints import last_complete_checkpoint
    from fsdkit.training.epoch_eval import curve

    trials = {t.number: t for t in trial.study.get_trials(deepcopy=False)}
    for number in reversed(trials[trial.number].system_attrs.get("retry_history") or []):
        stopped = trials.get(number)
        earlier = stopped.user_attrs.get("output_dir") if stopped is not None else None
        last = last_complete_checkpoint(Path(earlier) / "checkpoints")[0] if earlier else None
        if last is not None:
            break
    else:  # stopped before its first checkpoint, or on another machine: nothing here to continue
        return False
    folder.mkdir(parents=True, exist_ok=True)
    shutil.move(last.parent, folder / "checkpoints")
    if metric is not None:  # a single-objective study's pruning curve
        state = read_json_object(folder / "checkpoints" / last.name / "trainer_state.json")
        for point in curve(state.get("log_history") or []):
            trial.report(*_reported(point, metric))
    logger.info("trial %d continues the run of trial %d from its %s", trial.number, number, last.name)
    return True


def discard_stopped_runs(study) -> None:
    """Remove the checkpoints kept by stopped trials that no retry will continue: failed trials with no retry waiting
    or running (their retries finished, ran as a repeat, or were used up: :data:`MAX_RETRY`). Called when a worker
    finds its study finished, so that a stopped trial's checkpoints do not outlive the study."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    pending = {
        number
        for t in trials
        if t.state in (states.WAITING, states.RUNNING)
        for number in t.system_attrs.get("retry_history") or []
    }
    for t in trials:
        if t.state == states.FAIL and t.number not in pending and t.user_attrs.get("output_dir"):
            shutil.rmtree(Path(t.user_attrs["output_dir"]) / "checkpoints", ignore_errors=True)


def budget_trials(study, trials: int) -> list:
    """The study's first ``trials`` finished (complete or pruned) trials, in the order they finished, repeats not
    counted (:func:`finished_trials`)."""
    return finished_trials(study)[:trials]


def best_trial(study, trials: int):
    """The best complete trial among :func:`budget_trials` (the first to finish among equal values), or None."""
    import optuna

    complete = [t for t in budget_trials(study, trials) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)


def write_summary(study, config: SweepConfig, out: Path) -> dict[str, Any]:
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    count = {state.name.lower(): sum(t.state == state for t in trials) for state in states}
    count["repeats"] = repeat_count(study)  # not counted
    summary: dict[str, Any] = {
        "study_name": config.study_name,
        "storage": config.storage,
        "direction": config.direction,
        "metric": study.user_attrs.get("metric"),
        "trials": count,
        "budget": config.trials,
        "best": None,
    }
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = best_trial(study, config.trials)
    if best is not None:
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "options": trial_options(best),
            "command": best.user_attrs.get("command"),
            "output_dir": best.user_attrs.get("output_dir"),
        }
    if "fixed_from" in study.user_attrs:
        summary["fixed_from"] = study.user_attrs["fixed_from"]
    summary["plots"] = _plots(study, out) if len(complete) >= 2 else []
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _plots(study, out: Path) -> list[str]:
    import matplotlib
    import optuna

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    written = []
    for name, plot in (
        ("optimization_history.png", plot_optimization_history),
        ("param_importances.png", plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():  # optuna's matplotlib plots are "experimental": not news to the user
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes: Any = plot(study)  # an Axes, or an array of them
        except (ValueError, RuntimeError):  # e.g. importances of a parameter that never varied
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(figure)
        written.append(name)
    return written
