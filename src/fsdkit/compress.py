"""``fsdkit compress``: the smallest, fastest student that keeps its teacher's quality.

One multi-objective Optuna study (holdout quality against measured batch-1 latency; size recorded) over students
of the teacher: the depth (1 … L−1 of its layers), which layers (the first k, or k spread over the depth), the start
(the teacher's own layers and head, or the pretrained layers it was fine-tuned from) and the recipe — one of
:data:`RECIPES`, measured settings from benchmark v2 (``benchmarks/recipe-v2.yaml``). Each trial is a real
``fsdkit distill`` run on the training set less a fixed holdout split (seed 0, as ``fsdkit sweep`` carves it),
scored on that split (with ``transfer_file``, its distillation terms also train on those unlabelled texts); its
latency is timed on this machine. The front's latencies are timed again at the end of the run, the teacher's and
every student's together (:func:`retime`), and each student is ranked by the median of those of its architecture
(:func:`pool_latency`). The teacher is scored and timed on the same split; a teacher fine-tuned on those
rows (no ``--holdout-fraction 0.1`` in its run record, the same training data) scores them from memory, and so do the
students started from its layers: the result then carries a warning (:func:`fsdkit.training.run_data.teacher_saw_holdout`). A student that
cannot be made (a config error) or diverges is a failed trial, replaced; the study stops if failures outnumber twice
its budget. A trial that draws a student already tried (the space is small and discrete, and the same student
trains to the same scores) is pruned without training and a student not yet tried is queued in its place:
``trials`` counts distinct students (at most all of them, :func:`students`).

When the study has its trials, ``OUTPUT_DIR`` gets ``front.md`` (the Pareto front: quality, retention of the
teacher's score, latency, parameters, size, settings), ``front.png`` (holdout quality against batch-1 latency, point
size = parameters, the teacher marked) and ``compress.json``, and the chosen student (:func:`choose_student`: the
fastest that meets the target — ``target_retention`` of the teacher's holdout score, ``max_latency_ms``,
``max_size_mb`` — or, when none does, none, with the one that came closest named) is exported to
``OUTPUT_DIR/student`` (ONNX with :func:`fsdkit.export.export_onnx`; with ``quantize`` also int8, chosen and flagged
on the study's metric), the folder replaced whole. Like ``fsdkit sweep`` the study lives in an Optuna storage:
rerunning the command resumes it (a killed worker's trial is retried), several workers may share it (one of them at
a time times, reports and exports). A study records its metric, its teacher's weights (sha256) and its data and
training options; resuming it with others is refused, as is an ``OUTPUT_DIR`` whose trial folders belong to
another study.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import statistics
from pathlib import Path
from typing import Any

from fsdkit.artifacts import atomic_write_text, build_lock, folder_weights_sha256, staged_dir
from fsdkit.config import CompressConfig, DataOptions, DistillConfig, as_config, make_config
from fsdkit.errors import ConfigError, ModelError
from fsdkit.models.architecture import shares_layers

#: the recipes a trial chooses from, with their searched settings of benchmark v2 (MRPC; recipe-v2.yaml)
RECIPES: dict[str, dict[str, Any]] = {
    "vkd": {"method": "vkd", "learning_rate": 6.54e-5, "alpha": 0.813, "temperature": 1.0},
    "fsdi": {"method": "fsdi", "learning_rate": 1.97e-4, "alpha": 0.183, "temperature": 2.0, "lambda_intra": 9.11},
    "fsdi-minilm": {
        "method": "fsdi",
        "learning_rate": 2.24e-4,
        "alpha": 0.871,
        "temperature": 2.0,
        "lambda_intra": 213.0,
        "losses": [{"name": "minilm", "weight": 1.0}],
    },
}
LAYER_CHOICES = ("first", "spread")
#: round-robin passes of the final timing of the teacher and every student (:func:`retime`)
RETIME_ROUNDS = 3
logger = logging.getLogger(__name__)
HOLDOUT_FRACTION = 0.1


def student_layers(choice: str, depth: int, total: int) -> list[int]:
    """The first ``depth`` layers, or ``depth`` layers spread evenly over ``total`` (the last always kept)."""
    if choice == "first":
        return list(range(depth))
    step = total / depth
    return sorted({min(total - 1, round((i + 1) * step) - 1) for i in range(depth)})


def students(depth_total: int, choices: tuple[str, ...], starts: list[str]) -> dict[tuple, dict[str, Any]]:
    """Every distinct student: ``(layers, start, recipe)`` -> the trial parameters that draw it (the first that do;
    "first" and "spread" pick the same layers at some depths)."""
    space: dict[tuple, dict[str, Any]] = {}
    for depth in range(1, depth_total):
        for choice in choices:
            layers = tuple(student_layers(choice, depth, depth_total))
            for start in starts:
                for recipe in RECIPES:
                    space.setdefault(
                        (layers, start, recipe), {"depth": depth, "layers": choice, "start": start, "recipe": recipe}
                    )
    return space


def _student_of(params: dict[str, Any], depth_total: int) -> tuple:
    return (tuple(student_layers(params["layers"], params["depth"], depth_total)), params["start"], params["recipe"])


def _tried(study, depth_total: int, but: int) -> dict[tuple, int]:
    """Students of the study's trials other than trial ``but`` that count as tried: finished, running, or failed by
    themselves (a config error or divergence: the same student would fail again) -> their trial number."""
    import optuna

    states = optuna.trial.TrialState
    return {
        _student_of(t.params, depth_total): t.number
        for t in study.get_trials(deepcopy=False)
        if t.number != but
        and len(t.params) == 4
        and (t.state in (states.COMPLETE, states.RUNNING) or (t.state == states.FAIL and "failed" in t.user_attrs))
    }


def _data_options(config) -> dict[str, Any]:
    import dataclasses

    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(DataOptions)}
    return {**values, "task": config.task, "data_dir": config.data_dir}


def _measure(folder: str, task, data, max_length: int, batches: int | None) -> dict[str, Any]:
    """Holdout metrics, batch-1 latency (ms; not timed when ``batches`` is None), parameters and weight-file size (MB)
    of a model folder."""
    from fsdkit.evaluation import evaluate_model, latency_ms
    from fsdkit.models import load_classifier

    model, tokenizer = load_classifier(folder, None)
    metrics = evaluate_model(model, tokenizer, task, data, splits=["holdout"], max_length=max_length, progress=False)[
        "holdout"
    ]
    weights = Path(folder) / "model.safetensors"
    return {
        "metrics": metrics,
        "latency_ms": None
        if batches is None
        else latency_ms(model, tokenizer, task, data["holdout"], batch_size=1, batches=batches, max_length=max_length),
        "parameters": sum(p.numel() for p in model.parameters()),
        "size_mb": weights.stat().st_size / 2**20 if weights.is_file() else float("nan"),
    }


def compress(config: CompressConfig | dict | None = None, **overrides) -> dict[str, Any]:
    """Run (or resume) the study of ``config`` and export its chosen student; returns ``compress.json``'s content."""
    import optuna

    from fsdkit.models import check_model_folder, load_model_config
    from fsdkit.run_record import RunRecord
    from fsdkit.sweep import (
        _check_storage,
        _creation_lock,
        _storage,
        claim_study,
        continue_stopped_run,
        discard_stopped_runs,
        optimize,
        refuse_stray_trials,
        trial_checkpoints,
    )
    from fsdkit.training.run import distill
    from fsdkit.training.run_data import HOLDOUT, load_run_data, teacher_holdout_warning

    config = as_config(CompressConfig, config, overrides)
    if not config.teacher or not config.output_dir:
        raise ConfigError("fsdkit compress --teacher TEACHER_DIR --output-dir DIR (and the data flags)")
    folder = check_model_folder(config.teacher, max_length=config.max_length, option="teacher")
    teacher_config = load_model_config(folder)
    depth_total = teacher_config.num_hidden_layers
    choices = ("first",) if shares_layers(teacher_config) else LAYER_CHOICES  # ALBERT: a student repeats its group
    if depth_total < 2:
        raise ConfigError(f"--teacher {folder} has {depth_total} layer: there is no smaller student of its layers")
    record = RunRecord.read(folder)
    pretrained = config.pretrained or (record.config.get("model") if record is not None else None)
    starts = ["teacher", *(["pretrained"] if pretrained else [])]
    options = _data_options(config)
    task, data = load_run_data(
        make_config(DistillConfig, {**options, "holdout_fraction": HOLDOUT_FRACTION, "output_dir": config.output_dir})
    )
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = task.metric(config.metric)
    teacher = _measure(folder, task, data, config.max_length, None)  # timed with the students at the end (retime)
    teacher["sha256"] = folder_weights_sha256(folder)
    if config.target_retention is not None and not teacher["metrics"][metric] > 0:
        raise ConfigError(
            f"--target-retention: the teacher {folder} scores {teacher['metrics'][metric]:.4f} holdout {metric}, and "
            "a fraction of that is no quality target; give --target-retention none with --max-latency-ms or "
            "--max-size-mb, or another --metric"
        )
    warnings = [w for w in (teacher_holdout_warning(record, options, HOLDOUT_FRACTION),) if w]
    for warning in warnings:
        logger.warning("fsdkit compress: %s", warning)

    space = students(depth_total, choices, starts)

    def objective(trial) -> tuple[float, float]:
        depth = trial.suggest_int("depth", 1, depth_total - 1)
        layers = student_layers(trial.suggest_categorical("layers", list(choices)), depth, depth_total)
        start = trial.suggest_categorical("start", starts)
        recipe = trial.suggest_categorical("recipe", list(RECIPES))
        # the same student trains to the same scores (same seed): a repeat draw is not trained again but pruned, and
        # a student not yet tried is queued for the next trial (the sampler draws repeats often in this small space)
        tried = _tried(study, depth_total, but=trial.number)
        student = (tuple(layers), start, recipe)
        if student in tried:
            untried = [params for key, params in space.items() if key not in tried]
            if untried:
                study.enqueue_trial(untried[random.Random(trial.number).randrange(len(untried))])
            else:
                study.stop()
            raise optuna.TrialPruned(f"the same student as trial {tried[student]}")
        run_dir = out / f"trial-{trial.number}"
        settings = {
            **options,
            **RECIPES[recipe],
            "teacher": folder,
            "student_layers": layers,
            "student": "teacher" if start == "teacher" else pretrained,
            "epochs": config.epochs,
            "max_steps": config.max_steps,
            "batch_size": config.batch_size,
            "max_length": config.max_length,
            "holdout_fraction": HOLDOUT_FRACTION,
            "seed": config.seed,
            "output_dir": str(run_dir),
            "relation_every": 0,
            "progress": False,
            **({"transfer_file": config.transfer_file} if config.transfer_file else {}),
        }
        trial.set_user_attr("output_dir", str(run_dir.resolve()))  # before training: where a retry finds its run
        try:
            with trial_checkpoints(run_dir):
                distill({**settings, "resume": continue_stopped_run(trial, run_dir, None)})
        except (FloatingPointError, ConfigError, ModelError) as error:
            trial.set_user_attr("failed", str(error))  # this student fails by itself: not drawn again
            raise
        measured = _measure(str(run_dir), task, data, config.max_length, config.speed_batches)
        trial.set_user_attr("settings", {"layers": layers, "start": start, "recipe": recipe})
        trial.set_user_attr("measured", measured)
        return measured["metrics"][metric], measured["latency_ms"]

    storage = config.storage or f"sqlite:///{(out / 'compress.db').resolve()}"
    _check_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _creation_lock(storage):  # two workers creating the study record the same options, or one is refused
        study = optuna.create_study(
            storage=_storage(storage, config.heartbeat),
            study_name=config.study_name,
            directions=["maximize", "minimize"],
            load_if_exists=True,
        )
        claim_study(
            study, _experiment(config, options, metric, teacher["sha256"] or folder, pretrained), storage=storage
        )
    refuse_stray_trials(out, study, storage)
    joining = bool(study.get_trials(deepcopy=False))  # a resumed or shared study: other random start-up draws
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + (os.getpid() if joining else 0), n_startup_trials=max(1, min(10, config.trials // 2))
    )
    states = optuna.trial.TrialState
    budget = min(config.trials, len(space))  # a small teacher may have fewer distinct students than --trials
    done = len(study.get_trials(deepcopy=False, states=(states.COMPLETE,)))
    if done < budget:
        started = optuna.study.MaxTrialsCallback(budget, states=(states.COMPLETE, states.RUNNING))
        # a student that cannot be made or diverges is a failed trial (recorded with its message), not the study's end
        optimize(
            study,
            objective,
            callbacks=[started, _too_many_failures(config.trials)],
            catch=(FloatingPointError, ConfigError, ModelError),
        )
    discard_stopped_runs(study)
    with build_lock(out / "student"):  # one worker of a shared study at a time times, reports and exports
        finished = study.get_trials(deepcopy=False, states=(states.COMPLETE,))
        running = study.get_trials(deepcopy=False, states=(states.RUNNING,))  # another worker's, which may finish
        if not finished and not running:
            failed = [t.user_attrs["failed"] for t in study.get_trials(deepcopy=False) if "failed" in t.user_attrs]
            if failed:
                raise ConfigError(
                    f"every student of study {study.study_name!r} in {storage} failed ({len(failed)}); the first: "
                    f"{failed[0]}"
                )
        timings = retime(
            {"teacher": folder, **{t.number: t.user_attrs["output_dir"] for t in finished}},
            task,
            data[HOLDOUT],
            max_length=config.max_length,
            batches=config.speed_batches,
        )
        return _report(
            finished, config, out, task, {**teacher, "latency_ms": timings.pop("teacher")}, timings, metric, warnings
        )


def _experiment(config, options: dict[str, Any], metric: str, teacher: str, pretrained: str | None) -> dict[str, Any]:
    """What makes a study's trials comparable, as :func:`fsdkit.sweep.claim_study` records it: the metric, the
    teacher (its weights' sha256, or its name when it has no local weights), and the data and training options a
    student's score depends on (``data.<option>``, ``training.<option>``), local paths made absolute so that a resume
    spelling them otherwise is the same study."""
    from fsdkit.sweep import TEACHER_KEY, recorded_value
    from fsdkit.training.run_data import HOLDOUT

    training = {
        "pretrained": pretrained,
        "epochs": config.epochs,
        "max_steps": config.max_steps,
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "seed": config.seed,
        "transfer_file": config.transfer_file,
    }
    return {
        "metric": f"{HOLDOUT}.{metric}",
        TEACHER_KEY: teacher,
        **{f"data.{k}": recorded_value(k, v) for k, v in options.items() if k != "test_file"},  # test: scores nothing
        **{f"training.{k}": recorded_value(k, v) for k, v in training.items()},
    }


def _too_many_failures(trials: int):
    """Stop a study whose failed trials outnumber twice its budget (every student failing, e.g. a bad --pretrained)."""
    import optuna

    def callback(study, trial) -> None:
        if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))) > 2 * trials:
            study.stop()

    return callback


def retime(
    folders: dict[Any, str], task, dataset, *, max_length: int, batches: int, rounds: int = RETIME_ROUNDS
) -> dict[Any, float]:
    """Batch-1 latency (ms) of each model folder, timed together: ``rounds`` round-robin passes over ``folders`` (one
    model in memory at a time), each folder's median. A study's timings were taken at different moments, each with
    whatever else the machine ran then (a student has been timed slower than its deeper teacher); these compare the
    models under the same conditions."""
    from fsdkit.evaluation import latency_ms
    from fsdkit.models import load_classifier

    timings: dict[Any, list[float]] = {key: [] for key in folders}
    for _ in range(rounds):
        for key, folder in folders.items():
            model, tokenizer = load_classifier(folder, None)
            timings[key].append(
                latency_ms(model, tokenizer, task, dataset, batch_size=1, batches=batches, max_length=max_length)
            )
            del model
    return {key: statistics.median(values) for key, values in timings.items()}


def pool_latency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``latency_ms``: the median of ``timed_ms`` over the rows of the same architecture (depth and
    parameter count). Students of one architecture run the same computation; their timings differ only by what
    else the machine did meanwhile, and the median of them all is the steadier figure to rank them by."""
    timings: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        timings.setdefault((len(row["layers"]), row["parameters"]), []).append(row["timed_ms"])
    return [{**row, "latency_ms": statistics.median(timings[(len(row["layers"]), row["parameters"])])} for row in rows]


def pareto_front(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The rows no other row dominates (at least as good on ``metric`` and as fast, and better or faster), fastest
    first."""

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return (
            a[metric] >= b[metric]
            and a["latency_ms"] <= b["latency_ms"]
            and (a[metric] > b[metric] or a["latency_ms"] < b["latency_ms"])
        )

    front = [row for row in rows if not any(dominates(other, row) for other in rows)]
    return sorted(front, key=lambda r: (r["latency_ms"], -r[metric]))


def shortfall(row: dict[str, Any], config) -> float:
    """How far ``row`` misses the target: the largest relative excess over the limits that are set (retention below
    ``target_retention``, latency above ``max_latency_ms``, size above ``max_size_mb``); 0 when it meets them all."""
    misses = [0.0]
    if config.target_retention is not None:
        misses.append((config.target_retention - row["retention"]) / config.target_retention)
    if config.max_latency_ms is not None:
        misses.append((row["latency_ms"] - config.max_latency_ms) / config.max_latency_ms)
    if config.max_size_mb is not None:
        misses.append((row["size_mb"] - config.max_size_mb) / config.max_size_mb)
    return math.inf if any(math.isnan(m) for m in misses) else max(misses)  # an unknown size meets no limit


def choose_student(rows: list[dict[str, Any]], config, metric: str) -> tuple[dict | None, dict | None]:
    """``(chosen, closest)``: the fastest student (then the better on ``metric``) of all ``rows`` that meets the target
    — not only the front's, which ignores size — or, when none does, ``(None, the one with the least`` :func:`shortfall`
    ``)``."""
    meeting = [row for row in rows if shortfall(row, config) <= 0]
    if meeting:
        return min(meeting, key=lambda r: (r["latency_ms"], -r[metric])), None
    if not rows:
        return None, None
    return None, min(rows, key=lambda r: (shortfall(r, config), r["latency_ms"]))


def _report(
    finished: list,
    config,
    out: Path,
    task,
    teacher: dict[str, Any],
    timings: dict[int, float],
    metric: str,
    warnings: list[str],
) -> dict[str, Any]:
    """The front (table, plot, JSON) and the chosen student's export; ``finished``: the study's finished trials,
    ``timings``: each one's student's batch-1 latency, timed with the teacher's (:func:`retime`)."""
    import shutil

    from fsdkit.export import export
    from fsdkit.training.run_data import HOLDOUT

    rows = []
    reference = teacher["metrics"][metric]
    for trial in finished:
        measured = trial.user_attrs["measured"]
        rows.append(
            {
                "trial": trial.number,
                **trial.user_attrs["settings"],
                **measured["metrics"],  # every holdout metric; the study's own is its first value
                metric: trial.values[0],
                "retention": trial.values[0] / reference if reference > 0 else None,
                "timed_ms": timings[trial.number],
                "timed_in_trial_ms": trial.values[1],
                "parameters": measured["parameters"],
                "size_mb": measured["size_mb"],
                "output_dir": trial.user_attrs["output_dir"],
            }
        )
    rows = pool_latency(rows)
    front = pareto_front(rows, metric)
    chosen, closest = choose_student(rows, config, metric)
    result: dict[str, Any] = {
        "task": task.name,
        "metric": f"{HOLDOUT}.{metric}",
        "trials": len(rows),
        "teacher": {
            **teacher["metrics"],
            "sha256": teacher["sha256"],
            "latency_ms": teacher["latency_ms"],
            "parameters": teacher["parameters"],
            "size_mb": teacher["size_mb"],
        },
        "target": {
            "retention": config.target_retention,
            "max_latency_ms": config.max_latency_ms,
            "max_size_mb": config.max_size_mb,
        },
        "front": front,
        "chosen": chosen,
        "closest": closest,
        "warnings": warnings,
    }
    student = out / "student"
    if chosen is not None:
        with staged_dir(student) as staging:  # the folder replaced whole: no file of an earlier choice stays
            # int8 is measured on the evaluation split of the data the student was trained on (its run record)
            exported = export(
                model=chosen["output_dir"],
                output_dir=str(staging),
                quantize=config.quantize,
                metric=metric if config.quantize else None,
                max_length=config.max_length,
            )
        result["export"] = {k: v for k, v in exported.items() if k != "quantization"} | {
            "output": str(student / "model.onnx")
        }
        if "quantization" in exported:
            result["quantization"] = exported["quantization"]
    else:
        shutil.rmtree(student, ignore_errors=True)  # an earlier run's choice, which no longer meets the target
    atomic_write_text(out / "compress.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "front.md", _front_table(result, metric, [m for m in task.metric_names if m != metric]))
    _front_plot(result, metric, out / "front.png")
    return result


def _front_table(result: dict[str, Any], metric: str, others: list[str]) -> str:
    """front.md: the teacher and the front's students; ``others``: the task's other holdout metrics, shown too."""
    t = result["teacher"]
    extra = "".join(f" {name} |" for name in others)
    lines = [
        f"# Students of the teacher ({result['task']}): the Pareto front",
        "",
        f"Holdout {metric} against batch-1 latency on this machine; {result['trials']} students trained. The teacher "
        f"and every student were timed together at the end ({RETIME_ROUNDS} rounds, each one's median); a student's "
        "latency is the median of those of its architecture (depth, parameters).",
        "",
        *(line for warning in result.get("warnings", []) for line in (f"**Warning**: {warning}.", "")),
        f"| student | layers | start | recipe | {metric} | retention |{extra} latency (ms) | parameters | size (MB) |",
        "|---|---|---|---|---|---|" + "---|" * len(others) + "---|---|---|",
        f"| teacher | all | – | – | {100 * t[metric]:.2f} | 100.0 % |{_cells(t, others)} {t['latency_ms']:.2f} | "
        f"{t['parameters'] / 1e6:.1f}M | {t['size_mb']:.1f} |",
    ]
    chosen = result["chosen"]
    shown = list(result["front"])
    on_front = chosen is None or any(row["trial"] == chosen["trial"] for row in shown)
    if not on_front:
        shown = sorted([*shown, chosen], key=lambda r: r["latency_ms"])  # off the front: a smaller, slower student
    for row in shown:
        mark = ""
        if chosen is not None and row["trial"] == chosen["trial"]:
            mark = " (chosen)" if on_front else " (chosen; not on the front, within --max-size-mb)"
        lines.append(
            f"| trial {row['trial']}{mark} | {row['layers']} | {row['start']} | {row['recipe']} | "
            f"{100 * row[metric]:.2f} | {retention_text(row['retention'])} |{_cells(row, others)} {row['latency_ms']:.2f} | "
            f"{row['parameters'] / 1e6:.1f}M | {row['size_mb']:.1f} |"
        )
    if chosen is None:
        closest = result["closest"]
        lines += [
            "",
            "No student meets the target"
            + (
                f"; the closest is trial {closest['trial']} ({retention_text(closest['retention'])} of the teacher, "
                f"{closest['latency_ms']:.2f} ms, {closest['size_mb']:.1f} MB)"
                if closest
                else ""
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def retention_text(retention: float | None) -> str:
    """A student's retention of the teacher's score in percent; "–" when the teacher scores ≤ 0 (no retention)."""
    return "–" if retention is None else f"{100 * retention:.1f} %"


def _cells(row: dict[str, Any], names: list[str]) -> str:
    return "".join(f" {100 * row[name]:.2f} |" if name in row else " – |" for name in names)


def _front_plot(result: dict[str, Any], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    front = result["front"]
    if front:
        axes.scatter(
            [r["latency_ms"] for r in front],
            [100 * r[metric] for r in front],
            s=[20 + 200 * r["parameters"] / result["teacher"]["parameters"] for r in front],
            alpha=0.7,
            label="students (size: parameters)",
        )
        for r in front:
            axes.annotate(f"{len(r['layers'])}L {r['recipe']}", (r["latency_ms"], 100 * r[metric]), fontsize=7)
    t = result["teacher"]
    axes.scatter([t["latency_ms"]], [100 * t[metric]], marker="*", s=200, color="black", label="teacher")
    axes.set_xlabel("latency at batch 1 (ms, this machine)")
    axes.set_ylabel(f"holdout {metric}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
