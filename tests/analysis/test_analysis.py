"""Tests of fsdkit.analysis: restoration, CKA heat maps, relation differences, complexity, significance, report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from fsdkit.analysis import (
    RelationTracker,
    ReportFigure,
    Section,
    Table,
    cka_heatmap,
    cka_heatmaps,
    complexity_table,
    count_parameters,
    diagonal_mean,
    inference_throughput,
    learning_curves,
    load_run_record,
    relation_curves,
    relation_difference,
    relation_rank_table,
    restoration_bar_chart,
    restoration_rate,
    significance_against_best,
    summarize_runs,
    welch_one_sided,
    write_report,
)

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Task:
    is_regression: bool = False
    num_labels: int = 2


BINARY, MULTI, REGRESSION = Task(), Task(num_labels=3), Task(is_regression=True, num_labels=1)
PERFECT = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "agreement": 1.0}
RELATION_KEYS = ("inter_euclidean", "inter_cosine", "intra_euclidean", "intra_cosine")


# ---------------------------------------------------------------- restoration
def test_restoration_of_a_perfect_copy_is_one():
    rng = np.random.default_rng(0)
    binary = rng.integers(0, 2, 50)
    assert restoration_rate(binary, binary.copy(), BINARY) == PERFECT
    multi = rng.integers(0, 3, 50)
    assert restoration_rate(multi, multi.copy(), MULTI) == {"agreement": 1.0}
    scores = rng.normal(size=50)
    assert restoration_rate(scores, scores.copy(), REGRESSION) == pytest.approx({"pearson": 1.0, "spearman": 1.0})


def test_restoration_binary_hand_computed():
    teacher = [1, 1, 1, 1, 0, 0]
    model = [1, 1, 0, 0, 1, 0]  # TP 2, FN 2, FP 1, TN 1
    result = restoration_rate(teacher, model, BINARY)
    assert result == pytest.approx({"precision": 2 / 3, "recall": 1 / 2, "f1": 4 / 7, "agreement": 1 / 2})


def test_restoration_empty_denominators():
    assert restoration_rate([0, 0, 0], [0, 0, 0], BINARY) == PERFECT
    assert restoration_rate([1, 0, 1], [0, 0, 0], BINARY) == pytest.approx(
        {"precision": 1.0, "recall": 0.0, "f1": 0.0, "agreement": 1 / 3}
    )
    assert restoration_rate([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], REGRESSION) == {"pearson": None, "spearman": None}


def test_restoration_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        restoration_rate([0, 1], [0, 1, 1], BINARY)
    with pytest.raises(ValueError, match="integer class ids"):
        restoration_rate([0.0, 1.0], [0.0, 1.0], BINARY)
    with pytest.raises(ValueError, match="outside 0..1"):
        restoration_rate([0, 2], [0, 1], BINARY)


# ---------------------------------------------------------------- CKA heat maps
def _batches(seed: int, n_batches: int, b: int, d: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=gen) for _ in range(n_batches)]


def test_cka_heatmap_of_a_model_against_itself():
    batches = _batches(0, 5, 8, 20)
    heat = cka_heatmap(batches, batches)
    assert heat.shape == (5, 5)
    np.testing.assert_allclose(np.diagonal(heat), 1.0, atol=1e-10)
    np.testing.assert_allclose(heat, heat.T, atol=1e-12)
    assert diagonal_mean(heat) == pytest.approx(1.0)


def test_cka_heatmap_matches_linear_cka_per_pixel():
    from fsdkit.losses.similarities import linear_cka

    teacher = _batches(1, 4, 8, 24)
    projection = torch.randn(24, 12, generator=torch.Generator().manual_seed(2))
    model = [b @ projection + 0.3 * noise for b, noise in zip(teacher, _batches(3, 4, 8, 12), strict=True)]
    heat = cka_heatmap(teacher, model)
    for i, x in enumerate(teacher):
        for j, y in enumerate(model):
            assert heat[i, j] == pytest.approx(float(linear_cka(x.double(), y.double())), abs=1e-5)


def test_cka_heatmap_drops_incomplete_last_batch_and_ignores_zero_padding():
    batches = _batches(4, 3, 6, 10)
    heat = cka_heatmap(batches, batches)
    with_short = cka_heatmap([*batches, torch.randn(2, 10)], [*batches, torch.randn(3, 10)])
    np.testing.assert_allclose(with_short, heat)
    padded = [torch.cat([b, torch.zeros(6, 7)], dim=1) for b in batches]
    np.testing.assert_allclose(cka_heatmap(batches, padded), heat, atol=1e-12)


def test_cka_heatmap_errors():
    with pytest.raises(ValueError, match="no variance"):
        cka_heatmap([torch.ones(4, 3)], [torch.randn(4, 3)])
    with pytest.raises(ValueError, match="not the last"):
        cka_heatmap([torch.randn(4, 3), torch.randn(2, 3), torch.randn(4, 3)], [torch.randn(4, 3)])
    with pytest.raises(ValueError, match="differ in size"):
        cka_heatmap([torch.randn(4, 3)], [torch.randn(5, 3)])


# ---------------------------------------------------------------- relation differences
LEVELS_METRICS = [(level, metric) for level in ("inter", "intra") for metric in ("euclidean", "cosine")]


@pytest.mark.parametrize(("level", "metric"), LEVELS_METRICS)
def test_relation_difference_of_identical_features_is_zero(level, metric):
    x = torch.randn(4, 7, 5, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4, [1] * 6 + [0]])
    assert relation_difference(x, x.clone(), mask, level=level, metric=metric) == 0.0


@pytest.mark.parametrize(("level", "metric"), LEVELS_METRICS)
def test_relation_difference_is_invariant_to_padding(level, metric):
    gen = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 6, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    value = relation_difference(student, teacher, mask, level=level, metric=metric)
    # three more padding positions filled with garbage, and garbage in the existing padding
    s_pad = torch.cat([student, 100 * torch.randn(3, 3, 4, generator=gen)], dim=1)
    t_pad = torch.cat([teacher, 100 * torch.randn(3, 3, 6, generator=gen)], dim=1)
    s_pad[1, 3:] = 7.0
    mask_pad = torch.cat([mask, torch.zeros(3, 3, dtype=mask.dtype)], dim=1)
    assert relation_difference(s_pad, t_pad, mask_pad, level=level, metric=metric) == pytest.approx(value, rel=1e-9)


def test_inter_relation_difference_hand_computed():
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # distances 1, 2, √5
    teacher = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])  # distances 2, 2, √8
    expected = (1 + 0 + abs(math.sqrt(5) - math.sqrt(8))) / 3
    assert relation_difference(student, teacher, level="inter", metric="euclidean") == pytest.approx(expected)
    # cosines: student (0,0) row is the zero vector → cos 0 with everything; (1,0)·(0,2) → 0; teacher the same
    assert relation_difference(student, teacher, level="inter", metric="cosine") == pytest.approx(0.0)


def test_intra_relation_difference_hand_computed():
    student = torch.tensor([[[0.0], [1.0], [9.0]]])  # one sample, two real tokens + padding
    teacher = torch.tensor([[[0.0], [3.0], [-4.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert relation_difference(student, teacher, mask, level="intra", metric="euclidean") == pytest.approx(2.0)


def test_relation_difference_errors():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="level"):
        relation_difference(x, x, level="global", metric="cosine")
    with pytest.raises(ValueError, match="metric"):
        relation_difference(x, x, level="inter", metric="manhattan")
    with pytest.raises(ValueError, match="B × L"):
        relation_difference(x, torch.randn(2, 4, 4), level="intra", metric="cosine")
    with pytest.raises(ValueError, match="pooled"):
        relation_difference(x[:, 0], x[:, 0], torch.ones(2, 3), level="inter", metric="cosine")


def test_relation_tracker_round_trip_and_callback(tmp_path):
    tracker = RelationTracker(every_n_steps=5)
    assert [s for s in range(12) if tracker.should_update(s)] == [0, 5, 10]
    gen = torch.Generator().manual_seed(2)
    mask = torch.ones(4, 6, dtype=torch.long)
    for step in (0, 5):
        record = tracker.update(step, torch.randn(4, 6, 8, generator=gen), torch.randn(4, 6, 12, generator=gen), mask)
        assert set(record) == {"step", *RELATION_KEYS}
    loaded = RelationTracker.from_json(tracker.to_json(tmp_path / "h.json"))
    assert loaded.records == tracker.records and loaded.every_n_steps == 5
    tracker.on_train_end(SimpleNamespace(output_dir=str(tmp_path / "run")), None, None)
    assert RelationTracker.from_json(tmp_path / "run" / "relation_history.json").records == tracker.records
    (tmp_path / "bad.json").write_text('{"records": []}')
    with pytest.raises(ValueError, match="not a relation history"):
        RelationTracker.from_json(tmp_path / "bad.json")


def _record(step, a, b, c, d):
    return {"step": step, "inter_euclidean": a, "inter_cosine": b, "intra_euclidean": c, "intra_cosine": d}


def test_relation_rank_table_ranks_last_step():
    histories = {
        "vkd": [_record(0, 9, 9, 9, 9), _record(10, 3.0, 0.3, 2.0, 0.2)],
        "fsd": [_record(0, 9, 9, 9, 9), _record(10, 1.0, 0.1, 2.0, 0.1)],
        "pkd": [_record(0, 0, 0, 0, 0), _record(10, 2.0, 0.2, 3.0, 0.3)],
        "empty": [],
    }
    table = relation_rank_table(histories)
    rows = {row["run"]: row for row in table["rows"]}
    assert list(rows) == ["fsd", "vkd", "pkd"]
    assert rows["fsd"]["ranks"] == dict(zip(RELATION_KEYS, (1.0, 1.0, 1.5, 1.0), strict=True))
    assert rows["pkd"]["mean_rank"] == pytest.approx((2 + 2 + 3 + 3) / 4)
    assert rows["vkd"]["step"] == 10


# ---------------------------------------------------------------- significance
def test_welch_matches_scipy_and_hand_computed_t():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0]
    p = welch_one_sided(a, b)
    assert p == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert t == pytest.approx(1.60591, abs=1e-4)
    assert p == pytest.approx(stats.t.sf(t, dof))
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.5, 1, 8), rng.normal(0, 2, 6)
    assert welch_one_sided(x, y) == pytest.approx(stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
    assert welch_one_sided(y, x) == pytest.approx(1 - welch_one_sided(x, y))
    with pytest.raises(ValueError, match="at least 2"):
        welch_one_sided([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="zero variance"):
        welch_one_sided([1.0, 1.0], [2.0, 2.0])


def _runs(method, values, task="rte", metric="accuracy"):
    return [{"task": task, "method": method, "seed": s, "metrics": {metric: v}} for s, v in enumerate(values)]


def test_summarize_runs_mean_and_std():
    records = _runs("fsd", [0.8, 0.9, 1.0]) + _runs("vkd", [0.7]) + _runs("fsd", [0.5], task="mrpc")
    rows = {(r["task"], r["method"]): r for r in summarize_runs(records)}
    assert rows[("rte", "fsd")]["metrics"]["accuracy"] == pytest.approx({"mean": 0.9, "std": 0.1, "n": 3})
    assert rows[("rte", "vkd")]["metrics"]["accuracy"] == {"mean": 0.7, "std": None, "n": 1}
    assert rows[("rte", "fsd")]["seeds"] == [0, 1, 2]
    assert len(rows) == 3


def test_significance_against_best():
    records = _runs("fsd", [0.70, 0.72, 0.71]) + _runs("vkd", [0.65, 0.66, 0.64]) + _runs("pkd", [0.68, 0.69, 0.67])
    result = significance_against_best(records, "rte", "fsd", "accuracy")
    assert result["best_other"] == "pkd" and result["alternative"] == "greater" and result["reason"] == ""
    assert result["p_value"] == pytest.approx(welch_one_sided([0.70, 0.72, 0.71], [0.68, 0.69, 0.67]))
    below = significance_against_best(records, "rte", "vkd", "accuracy")
    assert below["best_other"] == "fsd" and below["alternative"] == "less"
    assert below["p_value"] == pytest.approx(welch_one_sided([0.70, 0.72, 0.71], [0.65, 0.66, 0.64]))
    single = significance_against_best(_runs("fsd", [0.7]) + _runs("vkd", [0.6, 0.65]), "rte", "fsd", "accuracy")
    assert single["p_value"] is None and "at least 2" in single["reason"]
    alone = significance_against_best(_runs("fsd", [0.7, 0.8]), "rte", "fsd", "accuracy")
    assert alone["p_value"] is None and "no other method" in alone["reason"]


def test_load_run_record(tmp_path):
    def run(name, info):
        (tmp_path / name).mkdir()
        (tmp_path / name / "fsdkit_run.json").write_text(json.dumps(info))
        return tmp_path / name

    flat = run("a", {"task": "mrpc", "method": "fsd", "seed": 3, "metrics": {"accuracy": 0.8, "f1": 0.85}})
    assert load_run_record(flat)["metrics"] == {"accuracy": 0.8, "f1": 0.85}
    nested = run("b", {"task": "rte", "method": "vkd", "seed": 1, "metrics": {"validation": {"accuracy": 0.6}}})
    record = load_run_record(nested)
    assert record["metrics"] == {"accuracy": 0.6} and record["seed"] == 1 and record["method"] == "vkd"
    mnli = run(
        "c",
        {
            "task": "mnli",
            "method": "fsd",
            "metrics": {"validation_matched": {"accuracy": 0.7}, "validation_mismatched": {"accuracy": 0.71}},
        },
    )
    assert load_run_record(mnli, split="validation_mismatched")["metrics"] == {"accuracy": 0.71}
    with pytest.raises(ValueError, match="several splits"):
        load_run_record(mnli)
    with pytest.raises(ValueError, match="no metrics for split"):
        load_run_record(nested, split="test")
    with pytest.raises(ValueError, match="lacks"):
        load_run_record(run("d", {"task": "rte", "method": "vkd"}))
    with pytest.raises(ValueError, match="fsdkit_run.json"):
        load_run_record(tmp_path)


# ---------------------------------------------------------------- complexity
class _TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.embed(input_ids).mean(1))


def test_count_parameters_and_throughput():
    model = _TinyEncoder()
    assert count_parameters(model) == 10 * 4 + 4 * 2 + 2
    batch = {"input_ids": torch.randint(0, 10, (4, 5)), "attention_mask": torch.ones(4, 5), "labels": torch.zeros(4)}
    loader = [batch] * 3
    model.train()
    assert inference_throughput(model, loader) > 0
    assert inference_throughput(model, loader[:1], max_batches=1) > 0
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        inference_throughput(model, [])


def test_complexity_table_relative_to_reference():
    table = complexity_table(
        [
            {"method": "VKD", "parameters": 100, "inference_examples_per_second": 50, "train_samples_per_second": 20},
            {"method": "fsd", "parameters": 115, "inference_examples_per_second": 44, "train_samples_per_second": 18.4},
            {"method": "nds", "parameters": 100, "inference_examples_per_second": 50.0},
        ],
        reference="vkd",
    )
    rows = {r["method"]: r for r in table["rows"]}
    assert rows["fsd"]["relative_parameters"] == pytest.approx(1.15)
    assert rows["fsd"]["relative_training_speed"] == pytest.approx(0.92)
    assert rows["fsd"]["relative_inference_speed"] == pytest.approx(0.88)
    assert rows["nds"]["relative_training_speed"] is None and table["note"] == ""
    missing = complexity_table([{"method": "fsd", "parameters": 1, "inference_examples_per_second": 1.0}])
    assert missing["rows"][0]["relative_parameters"] is None and "vkd" in missing["note"]


# ---------------------------------------------------------------- figures and report
def test_write_report_files(tmp_path):
    heat = cka_heatmap(_batches(5, 4, 6, 9), _batches(5, 4, 6, 9))
    histories = {"fsd": [_record(0, 3, 0.3, 2, 0.2), _record(10, 1, 0.1, 1, 0.1)], "vkd": [_record(0, 3, 0.3, 2, 0.2)]}
    restoration = {"fsd": {"f1": 0.9, "agreement": 0.95}, "vkd": {"f1": 0.8, "agreement": None}}
    sections = [
        Section(
            "Restoration <rate>",
            ["Teacher predictions | as ground truth & more."],
            [Table(["model", "f1", "pearson"], [["fs|d", 0.9, None], ["vkd", float("nan"), 12345678]], caption="t1")],
            [ReportFigure("restoration.png", restoration_bar_chart(restoration, "mrpc"))],
        ),
        Section(
            "Maps",
            figures=[
                ReportFigure("cka.png", cka_heatmaps({"T": heat, "fsd": heat * 0.9}, "mrpc"), "heat maps"),
                ReportFigure("relations.png", relation_curves(histories, "mrpc")),
            ],
        ),
    ]
    results = {"x": np.float32(0.5), "nan": float("nan"), "heat": heat}
    files = write_report(tmp_path / "out", sections, title="Analysis", results=results)
    out = tmp_path / "out"
    for name in ("restoration.png", "cka.png", "relations.png"):
        assert (out / name).read_bytes().startswith(PNG_HEADER)
    page = (out / "report.html").read_text()
    assert "<h2" in page and "Restoration &lt;rate&gt;" in page and page.count("data:image/png;base64,") == 3
    assert '<td class="num">–</td>' in page and "12,345,678" in page
    md = (out / "report.md").read_text()
    assert "## Maps" in md and "![heat maps](cka.png)" in md and "fs\\|d" in md
    results = json.loads((out / "results.json").read_text())
    assert results["x"] == 0.5 and results["nan"] is None and len(results["heat"]) == 4
    assert files["figures"] == [out / "restoration.png", out / "cka.png", out / "relations.png"]
    with pytest.raises(ValueError, match="repeat"):
        write_report(out, [sections[1], sections[1]], title="x", results={})


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from fsdkit.data import get_task
    from fsdkit.models import build_student, load_classifier, resolve_model_path, save_model

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    teacher, tokenizer = load_classifier(resolve_model_path("minilm"), get_task("mrpc"))
    save_model(teacher, tokenizer, root / "teacher")
    student, tokenizer = load_classifier(root / "teacher", get_task("mrpc"))
    save_model(build_student(student, 2), tokenizer, root / "student")
    return root


@pytest.mark.glue
def test_analyze_end_to_end(tmp_path, model_dirs, glue_dir):
    from fsdkit.analysis import analyze

    teacher, student = model_dirs / "teacher", model_dirs / "student"
    run_info = {"task": "mrpc", "method": "fsd", "seed": 0, "train_samples_per_second": 40.0}
    (student / "fsdkit_run.json").write_text(json.dumps(run_info))
    history = RelationTracker(every_n_steps=10)
    history.records = [_record(0, 3, 0.3, 2, 0.2), _record(10, 2, 0.2, 1, 0.1)]
    history.to_json(student / "relation_history.json")
    runs = []
    for method, seed, f1 in [("fsd", 0, 0.86), ("fsd", 1, 0.87), ("vkd", 0, 0.85), ("vkd", 1, 0.84)]:
        run = tmp_path / f"{method}{seed}"
        run.mkdir()
        metrics = {"validation": {"accuracy": f1 - 0.1, "f1": f1}}  # as the trainer writes them: per split
        info = {"task": "mrpc", "method": method, "seed": seed, "metrics": metrics}
        (run / "fsdkit_run.json").write_text(json.dumps(info))
        runs.append(str(run))

    results = analyze(
        {"task": "mrpc", "teacher": str(teacher), "data_dir": str(glue_dir), "output_dir": str(tmp_path / "report")},
        models={"vkd": str(teacher), "small": str(student)},
        batch_size=8,
        max_length=64,
        max_eval_samples=40,
        runs=runs,
        throughput_batches=2,
        progress=False,
    )
    out = tmp_path / "report"
    figures = ("restoration.png", "cka_heatmaps.png", "relation_history.png")
    for name in ("report.html", "report.md", "results.json", *figures):
        assert (out / name).is_file(), name
    assert results["n_examples"] == 40 and results["cka_pool"]["batches"] == 5
    assert results["restoration"]["vkd"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "agreement": 1.0}
    for pair in ("T", "vkd"):
        assert results["cka"][pair]["diagonal_mean"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < results["cka"]["small"]["diagonal_mean"] < 1.0
    assert results["relation_differences"]["vkd"] == pytest.approx(dict.fromkeys(RELATION_KEYS, 0.0), abs=1e-6)
    assert all(v > 0 for v in results["relation_differences"]["small"].values())
    params = {r["method"]: r for r in results["complexity"]["rows"]}
    assert params["small"]["relative_parameters"] < 1.0 and params["small"]["relative_training_speed"] is None
    assert results["models"]["small"]["num_layers"] == 2
    assert results["relation_history_ranks"]["rows"][0]["run"] == "small"
    significance = results["runs"]["significance"]
    assert significance["best_other"] == "vkd" and significance["p_value"] is not None
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["cka"]["small"]["heatmap"]) == 5
    assert "Restoration rate" in (out / "report.md").read_text()


def test_dev_relations_skip_intra_when_tokens_differ():
    from fsdkit.analysis.passes import ModelPass, dev_relations

    gen = torch.Generator().manual_seed(3)

    def model_pass(name, lengths, width, ids):
        samples = [torch.randn(n, width, generator=gen) for n in lengths]
        token_ids = [torch.full((n,), ids) for n in lengths]
        return ModelPass(name, name, np.zeros(len(lengths), dtype=np.int64), samples, token_ids, 2, width, 0, 1.0, None)

    teacher = model_pass("teacher", [5, 7, 4, 6], 8, 1)
    same = model_pass("same", [5, 7, 4, 6], 4, 1)
    other = model_pass("other", [6, 6, 5, 3], 4, 2)
    values = dev_relations(same, teacher, batch_size=2, n_batches=2)
    assert all(values[k] > 0 for k in RELATION_KEYS)
    values = dev_relations(other, teacher, batch_size=2, n_batches=2)
    assert values["inter_euclidean"] > 0 and values["intra_cosine"] is None and "tokenize" in values["intra_reason"]


def test_parse_model_specs_and_config_errors():
    from fsdkit.analysis.run import analyze, parse_model_specs
    from fsdkit.config import AnalyzeConfig
    from fsdkit.errors import ConfigError

    assert parse_model_specs(["fsd=runs/fsd", "runs/vkd_seed1/"]) == {"fsd": "runs/fsd", "vkd_seed1": "runs/vkd_seed1/"}
    with pytest.raises(ConfigError, match="twice"):
        parse_model_specs(["a=x", "a=y"])
    with pytest.raises(ConfigError, match="NAME=DIR"):
        parse_model_specs(["=x"])
    with pytest.raises(ConfigError, match="--teacher, --models"):
        analyze(AnalyzeConfig(task="mrpc", output_dir="out"))


def test_learning_curves_draw_the_mean_over_seeds_with_their_range(tmp_path):
    from matplotlib.collections import PolyCollection

    curves = {"vkd": [[(1, 70.0), (2, 74.0)], [(1, 72.0), (2, 76.0)]], "nds": [[(1, 69.0), (2, 71.0)]]}
    fig = learning_curves(curves, "mrpc", "accuracy", reference=79.4)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["vkd (n=2)"].get_ydata()) == [71.0, 75.0] and list(lines["nds (n=1)"].get_ydata()) == [69.0, 71.0]
    assert list(lines["teacher"].get_ydata()) == [79.4, 79.4]
    # a reference above every curve is drawn inside the frame, not on its edge
    top = learning_curves({"nds": [[(1, 10.0), (2, 83.0)]]}, "stsb", "pearson", reference=86.59).axes[0].get_ylim()[1]
    assert top > 86.59 + 1
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1  # only the method with several seeds has a band
    from fsdkit.analysis import save_figure

    assert save_figure(fig, tmp_path / "c.png").stat().st_size > 10_000


def test_learning_curves_colour_a_family_alike_and_style_a_variant_alike():
    """Two methods at two schedules: a method keeps its colour, a schedule its line style; distinct otherwise."""
    from matplotlib.colors import to_hex

    run = [[(1, 60.0), (2, 70.0)]]
    names = {
        "nds, 8 ep": ("nds", "8 ep"),
        "vkd, 8 ep": ("vkd", "8 ep"),
        "nds, 16 ep": ("nds", "16 ep"),
        "vkd, 16 ep": ("vkd", "16 ep"),
    }
    ax = learning_curves({name: run for name in names}, "stsb", "pearson", styles=names).axes[0]
    lines = {line.get_label().split(" (n=")[0]: line for line in ax.get_lines()}
    colour = {name: to_hex(line.get_color()) for name, line in lines.items()}
    style = {name: line.get_linestyle() for name, line in lines.items()}
    assert colour["nds, 8 ep"] == colour["nds, 16 ep"] != colour["vkd, 8 ep"] == colour["vkd, 16 ep"]
    assert style["nds, 8 ep"] == style["vkd, 8 ep"] == "-" != style["nds, 16 ep"] == style["vkd, 16 ep"]
    plain = learning_curves({"nds": run, "vkd": run}, "stsb", "pearson").axes[0].get_lines()
    assert to_hex(plain[0].get_color()) != to_hex(plain[1].get_color())
    assert {line.get_linestyle() for line in plain} == {"-"}
    # a legend of more than six lines stands beside the axes, not over the lines
    many = learning_curves({f"m{i}": run for i in range(7)}, "stsb", "pearson")
    many.canvas.draw()
    axes = many.axes[0]
    assert axes.get_legend().get_window_extent().x0 >= axes.get_window_extent().x1
    # more families than the default cycle's ten colours: still one colour each; epochs are whole numbers
    twelve = learning_curves({f"m{i}": run for i in range(12)}, "stsb", "pearson").axes[0]
    assert len({to_hex(line.get_color()) for line in twelve.get_lines()[:12]}) == 12
    assert all(float(tick).is_integer() for tick in twelve.get_xticks())
