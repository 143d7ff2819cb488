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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
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


def _run_analysis(
    task: Any,
    teacher_dir: str,
    models: Mapping[str, str],
    *,
    data_dir: str | None = None,
    output_dir: str | Path,
    batch_size: int = 32,
    max_length: int = 128,
    split: str | None = None,
    max_examples: int | None = None,
    runs: Sequence[str] | None = None,
    reference: str = "vkd",
    proposed: str = "fsd",
    throughput_batches: int | None = None,
    device: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
    data_source=None,
) -> dict[str, Any]:
    """Run the analyses of a teacher and ``models`` on ``task``'s ``split`` and write the report (:func:`analyze`'s
    work, with its options as arguments).

    ``data_source``: your own data (:class:`fsdkit.data.files.DataSource`) instead of the registry task.

    Args:
        task: task name or TaskSpec.
        teacher_dir: the fine-tuned teacher (model folder or name).
        models: display name → model folder (students, the non-distilled student "nDS", ...).
        data_dir: GLUE-layout folder (None: :func:`fsdkit.data.load_task_data`'s default source).
        output_dir: where ``report.html``, ``report.md``, ``results.json`` and the PNG figures go.
        batch_size: inference batch size and the CKA/relation mini-batch size b.
        max_length: tokenizer truncation length.
        split: the evaluation split (None: the task's first, ``validation``; MNLI ``validation_matched``).
        max_examples: analyse only the first examples of the split.
        runs: training output folders (each with ``fsdkit_run.json``) for the mean (std) over seeds and the
            significance test; only runs of ``task`` are used.
        reference: the model name the complexity table is relative to (case-insensitive).
        proposed: the method tested against the best other method in the significance section.
        throughput_batches: timed batches for the inference throughput (None: the whole split).
        device: torch device (None: CUDA when available, else CPU).
        cache_dir: data cache folder for :func:`fsdkit.data.load_task_data`.
        progress: show tqdm progress bars.

    Returns:
        the results dictionary also written to ``results.json``.
    """
    from fsdkit.data import compute_metrics, get_task, load_task_data

    if data_source is not None:
        from fsdkit.data.files import load_custom

        spec, data = load_custom(data_source)
    else:
        spec, data = get_task(task), None
    _check_names(models)
    if batch_size < 2:
        raise ConfigError(f"batch_size must be ≥ 2 (CKA and inter-feature relations need pairs), got {batch_size}")
    if max_examples is not None and max_examples < 2:
        raise ConfigError(f"max_examples must be ≥ 2, got {max_examples}")
    split = split or spec.eval_splits[0]
    if data is None:
        data = load_task_data(spec, data_dir, cache_dir=cache_dir)
    if split not in data:
        raise ConfigError(f"task {spec.name} has no split {split!r}; available: {', '.join(data)}")
    dataset = data[split]
    if max_examples is not None:
        dataset = dataset.select(range(min(max_examples, len(dataset))))
    n = len(dataset)
    n_batches = n // batch_size
    if n_batches < 1:
        raise ConfigError(
            f"{spec.name} {split} has {n} examples, fewer than one mini-batch of batch_size={batch_size}: "
            "lower --batch-size"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    references = np.asarray(dataset["label"])

    options = {
        "batch_size": batch_size,
        "max_length": max_length,
        "device": device,
        "throughput_batches": throughput_batches,
        "progress": progress,
    }
    teacher = model_pass(TEACHER, teacher_dir, spec, dataset, **options)
    teacher_grams = normalised_centred_grams(pool(teacher.samples, batch_size, n_batches), "teacher")
    heatmaps = {TEACHER_SHORT: cka_heatmap_from_grams(teacher_grams, teacher_grams)}
    passes = [teacher]
    restoration, relations = {}, {}
    for name, path in tqdm(list(models.items()), desc="models", disable=not progress):
        p = model_pass(name, path, spec, dataset, **options)
        grams = normalised_centred_grams(pool(p.samples, batch_size, n_batches), name)
        heatmaps[name] = cka_heatmap_from_grams(teacher_grams, grams)
        restoration[name] = restoration_rate(teacher.predictions, p.predictions, spec)
        relations[name] = dev_relations(p, teacher, batch_size, n_batches)
        p.samples, p.token_ids = [], []  # the features are no longer needed
        passes.append(p)

    dev_metrics = {p.name: compute_metrics(spec, p.predictions, references) for p in passes}
    complexity = complexity_table(
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
    histories = _load_histories(passes[1:])
    history_ranks = relation_rank_table(histories) if histories else None
    run_records, other_task_runs = _load_runs(runs or [], spec, split)
    significance = (
        significance_against_best(run_records, spec.name, proposed, spec.main_metric) if run_records else None
    )

    results = {
        "task": spec.name,
        "split": split,
        "n_examples": n,
        "batch_size": batch_size,
        "max_length": max_length,
        "cka_pool": {"batches": n_batches, "batch_size": batch_size, "examples_left_out": n - n_batches * batch_size},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "models": {
            p.name: {
                "path": p.path,
                "num_layers": p.num_layers,
                "hidden_size": p.hidden_size,
                "parameters": p.parameters,
                "inference_examples_per_second": p.inference_examples_per_second,
                "train_samples_per_second": p.train_samples_per_second,
                "method": p.method,
                "dev_metrics": dev_metrics[p.name],
            }
            for p in passes
        },
        "restoration": restoration,
        "cka": {
            name: {"diagonal_mean": diagonal_mean(h), "mean": float(np.mean(h)), "heatmap": h}
            for name, h in heatmaps.items()
        },
        "relation_differences": relations,
        "relation_histories": histories,
        "relation_history_ranks": history_ranks,
        "complexity": complexity,
        "runs": {
            "summary": summarize_runs(run_records),
            "significance": significance,
            "ignored_other_task": other_task_runs,
        },
    }
    sections = report_sections(spec, results, teacher_dir, proposed)
    title = f"fsdkit analysis — {spec.name} ({split}, {n} examples)"
    files = write_report(output_dir, sections, title=title, results=results)
    results["files"] = {k: [str(f) for f in v] if isinstance(v, list) else str(v) for k, v in files.items()}
    return results


def analyze(config: AnalyzeConfig | dict | None = None, **overrides) -> dict[str, Any]:
    """Every analysis of a teacher and its students on one task's dev split, written as one report.

    ``config``: an :class:`~fsdkit.config.AnalyzeConfig` or a dict of its option names (those of
    ``fsdkit analyze``: ``teacher``, ``models``, ``output_dir``, ``max_eval_samples``, ...), with keyword
    ``overrides``. ``models`` is a list of ``NAME=DIR`` (or a ``{NAME: DIR}`` mapping). Returns the results
    dictionary also written to ``OUTPUT_DIR/results.json``; see :func:`_run_analysis` for what it holds.
    """
    from fsdkit.data.files import DataSource

    if isinstance(overrides.get("models"), Mapping):
        overrides["models"] = [f"{name}={path}" for name, path in overrides["models"].items()]
    if isinstance(config, Mapping) and isinstance(config.get("models"), Mapping):
        config = {**config, "models": [f"{name}={path}" for name, path in config["models"].items()]}
    config = as_config(AnalyzeConfig, dict(config) if isinstance(config, Mapping) else config, overrides)
    required = (("--teacher", config.teacher), ("--models", config.models), ("--output-dir", config.output_dir))
    missing = [flag for flag, value in required if not value]
    if missing:
        raise ConfigError(f"fsdkit analyze needs {', '.join(missing)}")
    return _run_analysis(
        config.task,
        config.teacher,
        parse_model_specs(config.models),
        data_dir=config.data_dir,
        output_dir=config.output_dir,
        batch_size=config.batch_size,
        max_length=config.max_length,
        split=config.split,
        max_examples=config.max_eval_samples,
        cache_dir=config.cache_dir,
        progress=config.progress,
        runs=config.runs,
        reference=config.reference,
        proposed=config.proposed,
        throughput_batches=config.throughput_batches,
        device=config.device,
        data_source=DataSource.from_config(config),
    )
