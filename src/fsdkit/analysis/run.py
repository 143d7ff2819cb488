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

Each example is one row for the inter-feature analyses: its token vectors flattened, padding zeroed. Rows
are zero-padded to a common length; since zero columns change no dot product, distance or cosine, each
mini-batch is padded to its longest example, which gives exactly the values of padding the whole dev set
to one fixed length.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from fsdkit.analysis.cka_map import cka_heatmap_from_grams, diagonal_mean, normalised_centred_grams
from fsdkit.analysis.complexity import complexity_table, count_parameters, inference_throughput, read_run_info
from fsdkit.analysis.plots import RELATION_TITLES, cka_heatmaps, relation_curves, restoration_bar_chart
from fsdkit.analysis.relations import (
    HISTORY_FILENAME,
    METRICS,
    RECORD_KEYS,
    RelationTracker,
    finite_records,
    rank_values,
    relation_difference,
    relation_rank_table,
)
from fsdkit.analysis.report import ReportFigure, Section, Table, format_value, write_report
from fsdkit.analysis.restoration import restoration_metric_names, restoration_rate
from fsdkit.analysis.significance import load_run_record, significance_against_best, summarize_runs
from fsdkit.errors import ConfigError
from fsdkit.features import FeatureRequest, forward_features

TEACHER = "teacher"
TEACHER_SHORT = "T"  # the teacher in heat-map names: T–T, T–<model>


@dataclass
class ModelPass:
    """What one pass of a model over the dev split gives the analyses."""

    name: str
    path: str
    predictions: np.ndarray  # n class ids, or n scores for regression
    samples: list[Tensor]  # n tensors L_k × D: penultimate-layer vectors of the real tokens
    token_ids: list[Tensor]  # n tensors L_k: the real tokens' ids
    num_layers: int
    hidden_size: int
    parameters: int
    inference_examples_per_second: float
    run_info: dict[str, Any] | None


def _model_pass(
    name, path, spec, dataset, *, batch_size, max_length, device, throughput_batches, progress
) -> ModelPass:
    from torch.utils.data import DataLoader

    from fsdkit.data import encode_dataset, make_collator
    from fsdkit.models import load_classifier

    model, tokenizer = load_classifier(path, spec)
    model.to(device).eval()
    encoded = encode_dataset(dataset, tokenizer, spec, max_length=max_length)
    loader = DataLoader(encoded, batch_size=batch_size, shuffle=False, collate_fn=make_collator(tokenizer))
    predictions, samples, token_ids = [], [], []
    request = FeatureRequest(hidden_states=True)
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{name}: features", disable=not progress, leave=False):
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            features = forward_features(model, batch, request)
            hidden = features.hidden("penultimate").float().cpu()
            mask = features.attention_mask.bool().cpu()
            ids = batch["input_ids"].cpu()
            logits = features.logits.float().cpu()
            predictions.append(logits[:, 0] if spec.is_regression else logits.argmax(dim=-1))
            for k in range(hidden.shape[0]):
                samples.append(hidden[k, mask[k]])
                token_ids.append(ids[k, mask[k]])
        num_layers = features.num_layers
    throughput = inference_throughput(model, loader, max_batches=throughput_batches)
    result = ModelPass(
        name=name,
        path=str(path),
        predictions=torch.cat(predictions).numpy(),
        samples=samples,
        token_ids=token_ids,
        num_layers=num_layers,
        hidden_size=samples[0].shape[-1],
        parameters=count_parameters(model),
        inference_examples_per_second=throughput,
        run_info=read_run_info(path) if Path(path).is_dir() else None,
    )
    del model
    return result


def _padded(samples: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad L_k × D samples to b × L_max × D, with the b × L_max mask of real tokens."""
    length = max(s.shape[0] for s in samples)
    out = samples[0].new_zeros(len(samples), length, samples[0].shape[-1])
    mask = torch.zeros(len(samples), length, dtype=torch.bool)
    for k, s in enumerate(samples):
        out[k, : s.shape[0]] = s
        mask[k, : s.shape[0]] = True
    return out, mask


def _rows(samples: Sequence[Tensor]) -> Tensor:
    """b × (L_max · D) flattened rows, padding zeroed."""
    padded, _ = _padded(samples)
    return padded.reshape(padded.shape[0], -1)


def _pool(samples: Sequence[Tensor], batch_size: int, n_batches: int):
    for p in range(n_batches):
        yield _rows(samples[p * batch_size : (p + 1) * batch_size])


def _dev_relations(model: ModelPass, teacher: ModelPass, batch_size: int, n_batches: int) -> dict[str, Any]:
    """The four relation differences of ``model`` vs the teacher on the dev split (see the module docstring)."""
    values: dict[str, Any] = {}
    for metric in METRICS:
        per_batch = [
            relation_difference(
                _rows(model.samples[p * batch_size : (p + 1) * batch_size]),
                _rows(teacher.samples[p * batch_size : (p + 1) * batch_size]),
                level="inter",
                metric=metric,
            )
            for p in range(n_batches)
        ]
        values[f"inter_{metric}"] = float(np.mean(per_batch))
    same_tokens = len(model.token_ids) == len(teacher.token_ids) and all(
        torch.equal(a, b) for a, b in zip(model.token_ids, teacher.token_ids, strict=True)
    )
    if not same_tokens:
        values["intra_reason"] = "the model and the teacher tokenize the dev examples differently"
        for metric in METRICS:
            values[f"intra_{metric}"] = None
        return values
    n = len(model.samples)
    for metric in METRICS:
        total = 0.0
        for start in range(0, n, batch_size):
            s, mask = _padded(model.samples[start : start + batch_size])
            t, _ = _padded(teacher.samples[start : start + batch_size])
            total += relation_difference(s, t, mask, level="intra", metric=metric) * s.shape[0]
        values[f"intra_{metric}"] = total / n
    return values


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
        info = read_run_info(run)
        if info is not None and "task" in info and not _same_task(info["task"], spec):
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


def analyze(
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
    """Run the analyses of a teacher and ``models`` on ``task``'s ``split`` and write the report.

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
    teacher = _model_pass(TEACHER, teacher_dir, spec, dataset, **options)
    teacher_grams = normalised_centred_grams(_pool(teacher.samples, batch_size, n_batches), "teacher")
    heatmaps = {TEACHER_SHORT: cka_heatmap_from_grams(teacher_grams, teacher_grams)}
    passes = [teacher]
    restoration, relations = {}, {}
    for name, path in tqdm(list(models.items()), desc="models", disable=not progress):
        p = _model_pass(name, path, spec, dataset, **options)
        grams = normalised_centred_grams(_pool(p.samples, batch_size, n_batches), name)
        heatmaps[name] = cka_heatmap_from_grams(teacher_grams, grams)
        restoration[name] = restoration_rate(teacher.predictions, p.predictions, spec)
        relations[name] = _dev_relations(p, teacher, batch_size, n_batches)
        p.samples, p.token_ids = [], []  # the features are no longer needed
        passes.append(p)

    dev_metrics = {p.name: compute_metrics(spec, p.predictions, references) for p in passes}
    complexity = complexity_table(
        [
            {
                "method": p.name,
                "parameters": p.parameters,
                "inference_examples_per_second": p.inference_examples_per_second,
                "train_samples_per_second": (p.run_info or {}).get("train_samples_per_second"),
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
                "train_samples_per_second": (p.run_info or {}).get("train_samples_per_second"),
                "method": (p.run_info or {}).get("method"),
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
    sections = _sections(spec, results, teacher_dir, proposed)
    title = f"fsdkit analysis — {spec.name} ({split}, {n} examples)"
    files = write_report(output_dir, sections, title=title, results=results)
    results["files"] = {k: [str(f) for f in v] if isinstance(v, list) else str(v) for k, v in files.items()}
    return results


def _sections(spec, results: dict[str, Any], teacher_dir: str, proposed: str) -> list[Section]:
    models = results["models"]
    names = list(models)
    students = names[1:]
    pool = results["cka_pool"]
    sections = [
        Section(
            "Setup",
            [
                f"Task {spec.name}, split {results['split']}, {results['n_examples']} examples, tokenized to at "
                f"most {results['max_length']} tokens. Teacher: {teacher_dir}. Generated {results['created']} "
                f"on {results['device']} ({platform.platform()}).",
                "Features are the penultimate-layer token vectors (hidden_states[N−1] of an N-layer model); for "
                "the inter-feature analyses each example is one row, its token vectors flattened with padding "
                "zeroed.",
            ],
            [
                Table(
                    ["model", "folder", "layers", "hidden size", "parameters", "training method"],
                    [
                        [n, m["path"], m["num_layers"], m["hidden_size"], m["parameters"], m["method"]]
                        for n, m in models.items()
                    ],
                )
            ],
        ),
        Section(
            "Dev-set scores",
            ["Each model's predictions scored against the gold labels."],
            [
                Table(
                    ["model", *spec.metric_names],
                    [[n, *(models[n]["dev_metrics"][k] for k in spec.metric_names)] for n in names],
                )
            ],
        ),
    ]
    metric_names = restoration_metric_names(spec)
    sections.append(
        Section(
            "Restoration rate of the teacher's predictions",
            [
                "The teacher's predictions are the ground truth (paper Fig. 3). "
                + (
                    "Binary task: precision, recall and F1 of the positive class (label 1), and agreement "
                    "(fraction of identical predictions)."
                    if metric_names[0] == "precision"
                    else "Multi-class task: agreement (fraction of identical predictions)."
                    if metric_names == ("agreement",)
                    else "Regression task: Pearson and Spearman correlation with the teacher's scores."
                )
            ],
            [
                Table(
                    ["model", *metric_names],
                    [[n, *(results["restoration"][n][k] for k in metric_names)] for n in students],
                )
            ],
            [
                ReportFigure(
                    "restoration.png",
                    restoration_bar_chart(results["restoration"], spec.name),
                    "Restoration rate per model",
                )
            ],
        )
    )
    cka = results["cka"]
    sections.append(
        Section(
            "CKA heat maps",
            [
                f"The dev split, in order, is cut into {pool['batches']} mini-batches of {pool['batch_size']} "
                f"examples ({pool['examples_left_out']} examples of an incomplete last batch left out). Pixel "
                "(i, j) is the linear CKA between the teacher's rows of mini-batch i and the model's rows of "
                "mini-batch j (paper Fig. 4); the diagonal mean is the paper's Table 6 value. T–T is the "
                "teacher against itself (diagonal of ones). The colour scale is shared by all maps.",
            ],
            [
                Table(
                    ["pair", "diagonal mean", "mean over all pixels"],
                    [[f"T–{n}", cka[n]["diagonal_mean"], cka[n]["mean"]] for n in cka],
                )
            ],
            [
                ReportFigure(
                    "cka_heatmaps.png", cka_heatmaps({n: cka[n]["heatmap"] for n in cka}, spec.name), "CKA heat maps"
                )
            ],
        )
    )
    sections.append(_relation_section(results, students))
    if results["relation_histories"]:
        sections.append(_history_section(spec, results))
    complexity = results["complexity"]
    sections.append(
        Section(
            "Model and time complexity",
            [
                f"Relative values divide by {complexity['reference']} (paper Table 8); speeds are examples per "
                "second, higher is faster. Training speed is train_samples_per_second of the model folder's "
                "fsdkit_run.json; inference speed was measured in this analysis (plain forward passes over the "
                "split, first batch excluded as warm-up) and depends on the machine's load. A training-time "
                "memory (FSDG) is not part of the exported model and is not counted."
                + (f" Note: {complexity['note']}." if complexity["note"] else "")
            ],
            [
                Table(
                    ["model", "parameters", "training ex/s", "inference ex/s", "relative parameters",
                     "relative training speed", "relative inference speed"],
                    [
                        [
                            r["method"],
                            r["parameters"],
                            r["train_samples_per_second"],
                            r["inference_examples_per_second"],
                            r["relative_parameters"],
                            r["relative_training_speed"],
                            r["relative_inference_speed"],
                        ]
                        for r in complexity["rows"]
                    ],
                )
            ],
        )
    )
    if results["runs"]["summary"] or results["runs"]["ignored_other_task"]:
        sections.append(_runs_section(spec, results["runs"], proposed))
    return sections


def _relation_section(results: dict[str, Any], students: Sequence[str]) -> Section:
    rel = results["relation_differences"]
    keys = [k for k in RECORD_KEYS if all(rel[n][k] is not None for n in students)]
    ranks = {row["run"]: row for row in rank_values({n: rel[n] for n in students}, keys)} if keys else {}
    reasons = sorted({f"{n}: {rel[n]['intra_reason']}" for n in students if "intra_reason" in rel[n]})
    text = [
        "Mean absolute difference between a model's and the teacher's pairwise relations (paper eq. 12–13), "
        "relation = Euclidean distance or cosine similarity, each computed in the model's own feature space; "
        "pairs i ≠ j. Inter-feature: example pairs within each CKA mini-batch, averaged over the mini-batches. "
        "Intra-feature: pairs of real tokens within each example, averaged over examples. Lower is closer to "
        "the teacher; rank 1 = smallest, ranked over the models listed."
    ]
    if reasons:
        text.append("Intra-feature values missing — " + "; ".join(reasons) + ".")
    columns = ["model", *(RELATION_TITLES[k] for k in RECORD_KEYS), "mean rank"]
    rows = [[n, *(rel[n][k] for k in RECORD_KEYS), ranks[n]["mean_rank"] if n in ranks else None] for n in students]
    return Section("Relation differences on the dev set", text, [Table(columns, rows)])


def _history_section(spec, results: dict[str, Any]) -> Section:
    histories = results["relation_histories"]
    table = results["relation_history_ranks"]
    rows = [
        [
            row["run"],
            row["step"],
            *(f"{format_value(row['values'][k])} ({row['ranks'][k]:g})" for k in RECORD_KEYS),
            row["mean_rank"],
        ]
        for row in table["rows"]
    ]
    return Section(
        "Relation differences during training",
        [
            "Recorded by the trainer on training batches (relation_history.json in each model folder; paper "
            "Fig. 6). The table gives each run's values at its last recorded step with the rank in parentheses "
            "(paper Table 7: rank 1 = smallest difference; ties share the average rank).",
        ],
        [Table(["run", "last step", *(RELATION_TITLES[k] for k in RECORD_KEYS), "mean rank"], rows)],
        [
            ReportFigure(
                "relation_history.png",
                relation_curves(histories, spec.name),
                "Relation differences over training steps",
            )
        ],
    )


def _mean_std(stat: Mapping[str, Any] | None) -> str | None:
    if stat is None:
        return None
    if stat["std"] is None:
        return f"{stat['mean']:.4f} (n=1)"
    return f"{stat['mean']:.4f} ({stat['std']:.4f}, n={stat['n']})"


def _runs_section(spec, runs: Mapping[str, Any], proposed: str) -> Section:
    summary = runs["summary"]
    rows = [
        [r["method"], len(r["seeds"]), *(_mean_std(r["metrics"].get(k)) for k in spec.metric_names)] for r in summary
    ]
    text = ["Dev-set scores over seeds: mean (sample standard deviation, number of runs)."]
    sig = runs["significance"]
    if sig is not None:
        if sig["p_value"] is None:
            text.append(f"Significance of {proposed} on {sig['metric']}: not computed — {sig['reason']}.")
        else:
            relation = ">" if sig["alternative"] == "greater" else "<"
            text.append(
                f"One-sided Welch t-test (unequal variances) of {proposed} ({sig['mean']:.4f}, {sig['n']} runs) "
                f"against the best other method {sig['best_other']} ({sig['best_other_mean']:.4f}, "
                f"{sig['best_other_n']} runs) on {sig['metric']}: H1 {proposed} {relation} {sig['best_other']}, "
                f"p = {sig['p_value']:.4g}."
            )
    if runs["ignored_other_task"]:
        text.append("Runs of other tasks left out: " + ", ".join(runs["ignored_other_task"]) + ".")
    return Section("Mean and significance over seeds", text, [Table(["method", "runs", *spec.metric_names], rows)])


# Options of ``fsdkit analyze`` that ``AnalyzeConfig`` may not declare, with the defaults of :func:`analyze`.
def analyze_from_config(config: Any) -> dict[str, Any]:
    """Run :func:`analyze` from an ``AnalyzeConfig`` (``fsdkit analyze``); ``models`` are ``NAME=DIR`` strings."""
    from fsdkit.data.files import DataSource

    required = (("--teacher", config.teacher), ("--models", config.models), ("--output-dir", config.output_dir))
    missing = [flag for flag, value in required if not value]
    if missing:
        raise ConfigError(f"fsdkit analyze needs {', '.join(missing)}")
    return analyze(
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
