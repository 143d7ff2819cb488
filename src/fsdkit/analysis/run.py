"""``analyze``: every analysis of the FSD paper's section 5 on one task's dev split, written as one report.

One inference pass per model (teacher first) collects the predictions and the penultimate-layer token
features of every dev example; a second, plain pass measures inference throughput. From these:

- dev-set scores of every model against the gold labels;
- restoration rate of each model against the teacher's predictions (:mod:`fsdkit.analysis.restoration`);
- CKA heat maps teacher × teacher and teacher × each model over the pool of full dev mini-batches of
  ``batch_size`` examples, in dev-set order (:mod:`fsdkit.analysis.cka_map`);
- relation differences between each model and the teacher on the dev set (:mod:`fsdkit.analysis.relations`):
  inter-feature per pool mini-batch, averaged over the pool; intra-feature over every dev example (only when
  the model tokenizes every example exactly as the teacher does — token k must be the same token);
- relation differences during training, from ``relation_history.json`` in each model folder, with the
  ranks at the last step;
- complexity: parameters, training throughput (``fsdkit_run.json``) and inference throughput (measured here);
- with ``runs``: mean (std) over seeds per method and the one-sided Welch test of ``proposed`` against the
  best other method (:mod:`fsdkit.analysis.significance`).

This module orchestrates; the model passes are :mod:`fsdkit.analysis.passes` and the report's text
:mod:`fsdkit.analysis.sections`. ``analyze`` takes an ``AnalyzeConfig`` (``fsdkit analyze``'s options) or a
dict of the same names, plus keyword overrides, like ``finetune`` and ``distill``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from fsdkit.analysis.cka_map import cka_heatmap_from_grams, diagonal_mean, normalised_centred_grams
from fsdkit.analysis.complexity import complexity_table
from fsdkit.analysis.passes import ModelPass, dev_relations, model_pass, pool
from fsdkit.analysis.relations import HISTORY_FILENAME, RelationTracker, finite_records, relation_rank_table
from fsdkit.analysis.report import write_report
from fsdkit.analysis.restoration import restoration_rate
from fsdkit.analysis.sections import TEACHER_SHORT, report_sections
from fsdkit.analysis.significance import load_run_record, significance_against_best, summarize_runs
from fsdkit.config import AnalyzeConfig, as_config
from fsdkit.data import TaskSpec
from fsdkit.errors import ConfigError
from fsdkit.run_record import RunRecord

TEACHER = "teacher"


def _load_histories(passes: Sequence[ModelPass]) -> dict[str, list[dict[str, Any]]]:
    histories = {}
    for p in passes:
        path = Path(p.path) / HISTORY_FILENAME
        records = finite_records(RelationTracker.from_json(path).records) if path.is_file() else []
        if records:
            histories[p.name] = records
    return histories


def _same_task(name: str, spec) -> bool:
    """Whether a run record's task name is ``spec`` (registry aliases such as "SST-2" included)."""
    from fsdkit.data import get_task

    if name == spec.name:
        return True
    try:
        return get_task(name).name == spec.name
    except ValueError:  # a task of your own data, or an unknown name
        return False


def _load_runs(runs: Sequence[str], spec, split: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Run records of ``spec``'s task (metrics of ``split``), and the folders of runs of other tasks."""
    records, other_task = [], []
    for run in runs:
        info = RunRecord.read(run)
        if info is not None and info.task is not None and not _same_task(info.task, spec):
            other_task.append(str(run))
            continue
        records.append(load_run_record(run, split))
    return records, other_task


def parse_model_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["NAME=DIR", ...]`` → ``{NAME: DIR}``; a bare ``DIR`` is named after its last path component."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or not path:
            raise ConfigError(f"model {spec!r}: expected NAME=DIR (e.g. fsd=runs/fsd_seed1)")
        if name in models:
            raise ConfigError(f"model name {name!r} is given twice")
        models[name] = path
    return models


def _check_names(models: Mapping[str, str]) -> None:
    if not models:
        raise ConfigError("no model to analyse: give at least one NAME=DIR")
    lowered = [name.lower() for name in models]
    reserved = sorted({TEACHER, TEACHER_SHORT.lower()} & set(lowered))
    if reserved:
        raise ConfigError(f"model name {reserved[0]!r} is reserved for the teacher; rename that model")
    if len(set(lowered)) != len(lowered):
        raise ConfigError(f"model names repeat (case-insensitively): {list(models)}")


@dataclass
class DevSplit:
    """The examples an analysis reads: the task's evaluation split (cut to ``max_eval_samples``) and how many full
    mini-batches of it the CKA pool holds."""

    spec: TaskSpec
    name: str
    dataset: Dataset
    n_batches: int

    @property
    def n_examples(self) -> int:
        return len(self.dataset)


@dataclass
class Comparison:
    """What the model passes give: each model's pass (the teacher's first), and against the teacher its CKA heat
    map, restoration rate and dev-set relation differences."""

    passes: list[ModelPass]
    heatmaps: dict[str, np.ndarray]
    restoration: dict[str, dict[str, float | None]]
    relations: dict[str, dict[str, Any]]


def _run_analysis(config: AnalyzeConfig, models: Mapping[str, str]) -> dict[str, Any]:
    """Run the analyses of ``config.teacher`` and ``models`` (display name → model folder: students, the
    non-distilled student "nDS", ...) on the task's dev split and write the report (:func:`analyze`'s work).

    Returns:
        the results dictionary also written to ``results.json``.
    """
    split = _dev_split(config, models)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    comparison = _compare_models(config, models, split, device)
    results = _results(config, split, comparison, device)
    # analyze refuses a config without a teacher or an output folder
    sections = report_sections(split.spec, results, cast(str, config.teacher), config.proposed)
    title = f"fsdkit analysis — {split.spec.name} ({split.name}, {split.n_examples} examples)"
    files = write_report(cast(str, config.output_dir), sections, title=title, results=results)
    results["files"] = {k: [str(f) for f in v] if isinstance(v, list) else str(v) for k, v in files.items()}
    return results


def _dev_split(config: AnalyzeConfig, models: Mapping[str, str]) -> DevSplit:
    """The task (the registry's, or your own data files) and the split the analysis reads, with the options and
    model names checked."""
    from fsdkit.data import get_task, load_task_data
    from fsdkit.data.files import DataSource, load_custom

    data_source = DataSource.from_config(config)
    spec, data = load_custom(data_source) if data_source is not None else (get_task(config.task), None)
    _check_names(models)
    batch_size, max_examples = config.batch_size, config.max_eval_samples
    if batch_size < 2:
        raise ConfigError(f"batch_size must be ≥ 2 (CKA and inter-feature relations need pairs), got {batch_size}")
    if max_examples is not None and max_examples < 2:
        raise ConfigError(f"max_examples must be ≥ 2, got {max_examples}")
    split = config.split or spec.eval_splits[0]
    if data is None:
        data = load_task_data(spec, config.data_dir, cache_dir=config.cache_dir)
    if split not in data:
        raise ConfigError(f"task {spec.name} has no split {split!r}; available: {', '.join(data)}")
    dataset = data[split]
    if max_examples is not None:
        dataset = dataset.select(range(min(max_examples, len(dataset))))
    n = len(dataset)
    if n < batch_size:
        raise ConfigError(
            f"{spec.name} {split} has {n} examples, fewer than one mini-batch of batch_size={batch_size}: "
            "lower --batch-size"
        )
    return DevSplit(spec=spec, name=split, dataset=dataset, n_batches=n // batch_size)


def _compare_models(
    config: AnalyzeConfig, models: Mapping[str, str], split: DevSplit, device: torch.device
) -> Comparison:
    """One pass of the teacher, then of each model, over the split; each model compared with the teacher as it
    passes (its features are dropped once compared)."""
    spec, dataset, batch_size = split.spec, split.dataset, config.batch_size
    options = {
        "batch_size": batch_size,
        "max_length": config.max_length,
        "device": device,
        "throughput_batches": config.throughput_batches,
        "progress": config.progress,
    }
    teacher = model_pass(TEACHER, config.teacher, spec, dataset, **options)
    teacher_grams = normalised_centred_grams(pool(teacher.samples, batch_size, split.n_batches), "teacher")
    comparison = Comparison(
        passes=[teacher],
        heatmaps={TEACHER_SHORT: cka_heatmap_from_grams(teacher_grams, teacher_grams)},
        restoration={},
        relations={},
    )
    for name, path in tqdm(list(models.items()), desc="models", disable=not config.progress):
        p = model_pass(name, path, spec, dataset, **options)
        grams = normalised_centred_grams(pool(p.samples, batch_size, split.n_batches), name)
        comparison.heatmaps[name] = cka_heatmap_from_grams(teacher_grams, grams)
        comparison.restoration[name] = restoration_rate(teacher.predictions, p.predictions, spec)
        comparison.relations[name] = dev_relations(p, teacher, batch_size, split.n_batches)
        p.samples, p.token_ids = [], []  # the features are no longer needed
        comparison.passes.append(p)
    return comparison


def _results(config: AnalyzeConfig, split: DevSplit, comparison: Comparison, device: torch.device) -> dict[str, Any]:
    """The results dictionary (``results.json``): the split, every model's scores and complexity, the comparisons
    with the teacher, the relation histories of training, and the runs over seeds."""
    from fsdkit.data import compute_metrics

    passes, n, batch_size = comparison.passes, split.n_examples, config.batch_size
    references = np.asarray(split.dataset["label"])
    dev_metrics = {p.name: compute_metrics(split.spec, p.predictions, references) for p in passes}
    complexity = _complexity(passes, config.reference)
    histories = _load_histories(passes[1:])
    history_ranks = relation_rank_table(histories) if histories else None
    runs = _runs_over_seeds(config, split)
    return {
        "task": split.spec.name,
        "split": split.name,
        "n_examples": n,
        "batch_size": batch_size,
        "max_length": config.max_length,
        "cka_pool": {
            "batches": split.n_batches,
            "batch_size": batch_size,
            "examples_left_out": n - split.n_batches * batch_size,
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "models": {p.name: {**_model_summary(p), "dev_metrics": dev_metrics[p.name]} for p in passes},
        "restoration": comparison.restoration,
        "cka": {
            name: {"diagonal_mean": diagonal_mean(h), "mean": float(np.mean(h)), "heatmap": h}
            for name, h in comparison.heatmaps.items()
        },
        "relation_differences": comparison.relations,
        "relation_histories": histories,
        "relation_history_ranks": history_ranks,
        "complexity": complexity,
        "runs": runs,
    }


def _model_summary(p: ModelPass) -> dict[str, Any]:
    """A model's entry in the results: its folder, shape, parameters, throughputs and training method."""
    return {
        "path": p.path,
        "num_layers": p.num_layers,
        "hidden_size": p.hidden_size,
        "parameters": p.parameters,
        "inference_examples_per_second": p.inference_examples_per_second,
        "train_samples_per_second": p.train_samples_per_second,
        "method": p.method,
    }


def _complexity(passes: Sequence[ModelPass], reference: str) -> dict[str, Any]:
    """The complexity table of the models passed (parameters, throughputs), relative to ``reference``."""
    return complexity_table(
        [
            {
                "method": p.name,
                "parameters": p.parameters,
                "inference_examples_per_second": p.inference_examples_per_second,
                "train_samples_per_second": p.train_samples_per_second,
            }
            for p in passes
        ],
        reference=reference,
    )


def _runs_over_seeds(config: AnalyzeConfig, split: DevSplit) -> dict[str, Any]:
    """The mean (std) over seeds of ``config.runs`` of this task, the significance test of ``config.proposed``,
    and the runs of other tasks left out."""
    run_records, other_task_runs = _load_runs(config.runs or [], split.spec, split.name)
    significance = (
        significance_against_best(run_records, split.spec.name, config.proposed, split.spec.main_metric)
        if run_records
        else None
    )
    return {"summary": summarize_runs(run_records), "significance": significance, "ignored_other_task": other_task_runs}


def analyze(config: AnalyzeConfig | dict | None = None, **overrides) -> dict[str, Any]:
    """Every analysis of a teacher and its students on one task's dev split, written as one report.

    ``config``: an :class:`~fsdkit.config.AnalyzeConfig` or a dict of its option names (those of
    ``fsdkit analyze``: ``teacher``, ``models``, ``output_dir``, ``max_eval_samples``, ...), with keyword
    ``overrides``. ``models`` is a list of ``NAME=DIR`` (or a ``{NAME: DIR}`` mapping). Returns the results
    dictionary also written to ``OUTPUT_DIR/results.json``; see :func:`_run_analysis` for what it holds.
    """
    if isinstance(overrides.get("models"), Mapping):
        overrides["models"] = [f"{name}={path}" for name, path in overrides["models"].items()]
    if isinstance(config, Mapping) and isinstance(config.get("models"), Mapping):
        config = {**config, "models": [f"{name}={path}" for name, path in config["models"].items()]}
    config = as_config(AnalyzeConfig, dict(config) if isinstance(config, Mapping) else config, overrides)
    required = (("--teacher", config.teacher), ("--models", config.models), ("--output-dir", config.output_dir))
    missing = [flag for flag, value in required if not value]
    if missing:
        raise ConfigError(f"fsdkit analyze needs {', '.join(missing)}")
    return _run_analysis(config, parse_model_specs(cast("list[str]", config.models)))
