"""``fsdkit predict``: GLUE submission files from the unlabelled test splits, and records with probabilities."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from fsdkit.errors import ConfigError, DataError
from fsdkit.prediction import predict

pytestmark = pytest.mark.glue

N = 40


@pytest.fixture(scope="module")
def small_glue(glue_dir, tmp_path_factory):
    """The first 40 rows of every split of MRPC, STS-B and SICK (test.tsv included), in the GLUE layout."""
    root = tmp_path_factory.mktemp("glue")
    for folder in ("MRPC", "STS-B", "SICK"):
        (root / folder).mkdir()
        for split in ("train.tsv", "dev.tsv", "test.tsv"):
            lines = (glue_dir / folder / split).read_text(encoding="utf-8-sig").splitlines()[: N + 1]
            (root / folder / split).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def fresh_head(task, tmp_path):
    """The packaged MiniLM with a new head for ``task``, saved as a model folder."""
    from fsdkit.data import get_task
    from fsdkit.models import load_classifier, save_model

    model, tokenizer = load_classifier("minilm", get_task(task))
    return save_model(model, tokenizer, tmp_path / task)


def test_mrpc_test_split_is_a_glue_submission(small_glue, mrpc_teacher, tmp_path):
    out = tmp_path / "MRPC.tsv"
    result = predict(model=str(mrpc_teacher), task="mrpc", data_dir=str(small_glue), output=str(out), progress=False)
    assert result["n_examples"] == N
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    test_index = [line.split("\t")[0] for line in (small_glue / "MRPC" / "test.tsv").read_text().splitlines()[1:]]
    assert [line.split("\t")[0] for line in lines[1:]] == test_index
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_validation_records_agree_with_evaluate(small_glue, mrpc_teacher, tmp_path):
    """Predictions on the labelled dev split, scored by hand, give evaluate's accuracy; probabilities sum to 1."""
    from fsdkit import evaluate
    from fsdkit.data import load_task_data

    out = tmp_path / "dev.jsonl"
    predict(
        model=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(small_glue),
        split="validation",
        output=str(out),
        progress=False,
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    labels = load_task_data("mrpc", small_glue)["validation"]["label"]
    accuracy = np.mean([int(r["prediction"]) == y for r, y in zip(records, labels)])
    metrics = evaluate(model=str(mrpc_teacher), task="mrpc", data_dir=str(small_glue), progress=False)["metrics"]
    assert accuracy == pytest.approx(metrics["validation"]["accuracy"])
    for r in records:
        assert r["p_0"] + r["p_1"] == pytest.approx(1.0, abs=1e-5)
        assert r["prediction"] == ("1" if r["p_1"] > r["p_0"] else "0")


def test_stsb_scores_are_floats_and_sick_labels_are_glue_names(small_glue, tmp_path):
    predict(
        model=str(fresh_head("stsb", tmp_path)),
        task="stsb",
        data_dir=str(small_glue),
        output=str(tmp_path / "STS-B.tsv"),
        progress=False,
    )
    rows = [line.split("\t") for line in (tmp_path / "STS-B.tsv").read_text().splitlines()[1:]]
    assert len(rows) == N and all(np.isfinite(float(score)) for _, score in rows)
    predict(
        model=str(fresh_head("sick", tmp_path)),
        task="sick",
        data_dir=str(small_glue),
        output=str(tmp_path / "SICK.csv"),
        progress=False,
    )
    with open(tmp_path / "SICK.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert list(records[0]) == ["index", "prediction", "p_ENTAILMENT", "p_NEUTRAL", "p_CONTRADICTION"]
    assert {r["prediction"] for r in records} <= {"ENTAILMENT", "NEUTRAL", "CONTRADICTION"}


def test_bad_prediction_requests(small_glue, mrpc_teacher, tmp_path):
    options = dict(model=str(mrpc_teacher), task="mrpc", progress=False)
    with pytest.raises(ConfigError, match="unknown format '.txt'"):
        predict(**options, data_dir=str(small_glue), output=str(tmp_path / "p.txt"))
    with pytest.raises(ConfigError, match="give --data-dir"):
        predict(**options, output=str(tmp_path / "p.tsv"))
    broken = tmp_path / "glue"
    shutil.copytree(small_glue, broken)
    test = broken / "MRPC" / "test.tsv"
    test.write_text(test.read_text().replace("#2 String", "second"))
    with pytest.raises(DataError, match=r"line 1: columns \['#2 String'\] missing; the header has"):
        predict(**options, data_dir=str(broken), output=str(tmp_path / "p.tsv"))


def test_evaluate_reports_inference_latency_and_throughput(small_glue, mrpc_teacher):
    from fsdkit import evaluate

    result = evaluate(model=str(mrpc_teacher), task="mrpc", data_dir=str(small_glue), speed_batches=2, progress=False)
    speed = result["speed"]
    assert speed["latency_ms_batch1"] > 0 and speed["examples_per_second_batch32"] > 0 and speed["device"] == "cpu"
