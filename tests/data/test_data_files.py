"""Your own data (fsdkit.data.files): every file format, string / integer / float labels, a local dataset folder
through the hub path, the bad-file errors, and a real fine-tune → distil → predict on the shipped CSV."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from data_paths import TICKETS, TICKETS_DEV, TICKETS_TEST
from fsdkit.data.files import DataSource, load_custom
from fsdkit.errors import DataError

TRAIN, DEV, TEST = TICKETS, TICKETS_DEV, TICKETS_TEST


def write(frame: pd.DataFrame, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_task_and_rows(tmp_path, suffix):
    train, dev = pd.read_csv(TRAIN), pd.read_csv(DEV)
    source = DataSource(
        train_file=str(write(train, tmp_path / f"train{suffix}")),
        validation_file=str(write(dev, tmp_path / f"dev{suffix}")),
    )
    task, data = load_custom(source)
    assert task.labels == ("billing", "bug", "feature") and task.text_columns == ("sentence",)
    assert task.metric_names == ("accuracy", "macro_f1") and task.eval_splits == ("validation",)
    assert data["train"]["sentence"] == list(train["text"])
    assert [task.labels[i] for i in data["validation"]["label"]] == list(dev["label"])


def test_integer_float_and_pair_data(tmp_path):
    pairs = pd.DataFrame(
        {
            "q1": ["a cat", "a dog", "the sun", "rain"],
            "q2": ["a kitten", "a car", "the moon", "snow"],
            "y": [1, 0, 1, 0],
            "score": [4.5, 0.2, 2.5, 1.0],
        }
    )
    path = write(pairs, tmp_path / "pairs.csv")
    task, data = load_custom(DataSource(train_file=str(path), text_columns=("q1", "q2"), label_column="y"))
    assert task.labels == ("0", "1") and task.metric_names == ("accuracy", "macro_f1", "mcc")
    assert data["train"]["sentence2"] == ["a kitten", "a car", "the moon", "snow"] and data["train"]["label"] == [
        1,
        0,
        1,
        0,
    ]
    task, data = load_custom(DataSource(train_file=str(path), text_columns=("q1", "q2"), label_column="score"))
    assert task.is_regression and task.metric_names == ("pearson", "spearman")
    assert data["train"]["label"] == pytest.approx([4.5, 0.2, 2.5, 1.0])
    task, _ = load_custom(
        DataSource(train_file=str(path), text_columns=("q1", "q2"), label_column="y", task_type="regression")
    )
    assert task.is_regression


def test_a_local_dataset_folder_goes_through_the_hub_path(tmp_path):
    """`--dataset FOLDER` is read by datasets.load_dataset exactly as a hub name would be (offline: a folder)."""
    folder = tmp_path / "tickets"
    folder.mkdir()
    shutil.copy(TRAIN, folder / "train.csv")
    shutil.copy(DEV, folder / "validation.csv")
    task, data = load_custom(DataSource(dataset=str(folder)))
    assert task.labels == ("billing", "bug", "feature") and len(data["train"]) == 24 and len(data["validation"]) == 6
    with pytest.raises(DataError, match="has no split 'training'"):
        load_custom(DataSource(dataset=str(folder), train_split="training"))


def test_bad_files_get_errors_naming_file_row_and_column(tmp_path):
    with pytest.raises(DataError, match=r"columns \['label'\] missing; the data has \['text', 'category'\]"):
        load_custom(
            DataSource(
                train_file=str(
                    write(pd.read_csv(TRAIN).rename(columns={"label": "category"}), tmp_path / "renamed.csv")
                )
            )
        )
    dev = pd.read_csv(DEV)
    dev.loc[2, "label"] = "sales"
    with pytest.raises(DataError, match=r"dev.csv: row 3: label 'sales' is not one of the task's labels"):
        load_custom(DataSource(train_file=str(TRAIN), validation_file=str(write(dev, tmp_path / "dev.csv"))))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        load_custom(DataSource(train_file=str(tmp_path / "empty.csv")))
    (tmp_path / "mixed.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "bug"}\n')
    with pytest.raises(DataError, match="mixed.jsonl: cannot be read|mixes"):
        load_custom(DataSource(train_file=str(tmp_path / "mixed.jsonl")))
    with pytest.raises(DataError, match="unknown format '.xlsx'"):
        load_custom(DataSource(train_file=str(tmp_path / "t.xlsx")))
    with pytest.raises(DataError, match=r"no text column found \(columns: \['body', 'label'\]\)"):
        load_custom(
            DataSource(
                train_file=str(write(pd.read_csv(TRAIN).rename(columns={"text": "body"}), tmp_path / "body.csv"))
            )
        )


def test_fine_tune_distil_and_predict_your_own_csv(tmp_path):
    """The README's "Distil your own classifier", a few steps: the label names travel into the exported models
    and the prediction file."""
    from transformers import AutoConfig

    from fsdkit import distill, finetune, predict

    files = {"train_file": str(TRAIN), "validation_file": str(DEV)}
    finetune(**files, output_dir=str(tmp_path / "teacher"), max_steps=3, batch_size=8, progress=False)
    record = distill(
        **files,
        teacher=str(tmp_path / "teacher"),
        student="teacher",
        method="fsd",
        memory_clusters=3,
        output_dir=str(tmp_path / "student"),
        max_steps=3,
        batch_size=8,
        progress=False,
    )
    assert set(record["metrics"]["validation"]) == {"accuracy", "macro_f1"}
    assert AutoConfig.from_pretrained(tmp_path / "student").id2label == {0: "billing", 1: "bug", 2: "feature"}
    card = (tmp_path / "student" / "README.md").read_text()  # the model card
    for text in (
        "library_name: transformers",
        "# Student distilled with fsd (custom)",
        "0 = `billing`",
        "- Teacher: `",
        "0.5 · task + 0.5 · kd + 30 · intra",
        "| validation |",
        "macro_f1",
        "fsdkit distill --train-file",
        "--student teacher",
        "Made with fsdkit",
    ):
        assert text in card, text
    from fsdkit.cli import main as cli_main

    report = tmp_path / "report"  # fsdkit analyze on your own files
    assert (
        cli_main(
            [
                "analyze",
                "--train-file",
                str(TRAIN),
                "--validation-file",
                str(DEV),
                "--teacher",
                str(tmp_path / "teacher"),
                "--models",
                f"fsd={tmp_path / 'student'}",
                "--output-dir",
                str(report),
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    results = json.loads((report / "results.json").read_text())
    assert (report / "report.md").is_file() and "fsd" in json.dumps(results)
    assert cli_main(["export", str(tmp_path / "student"), "--output-dir", str(tmp_path / "onnx")]) == 0  # ONNX
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")
    batch = tokenizer(["I was billed twice", "the export button crashes the app"], padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    onnx_logits = session.run(["logits"], {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    import torch

    with torch.no_grad():
        torch_logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert abs(onnx_logits - torch_logits).max() < 1e-4  # the ONNX student gives PyTorch's logits
    out = tmp_path / "predictions.jsonl"
    predict(
        model=str(tmp_path / "student"), train_file=str(TRAIN), test_file=str(TEST), output=str(out), progress=False
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert all(r["prediction"] in ("billing", "bug", "feature") for r in rows)
    assert all(abs(r["p_billing"] + r["p_bug"] + r["p_feature"] - 1) < 1e-5 for r in rows)


def _load(path: Path, **options):
    return load_custom(DataSource(train_file=str(path), **options))


def test_files_are_read_as_written(tmp_path):
    """TSV quotes are characters (8 rows stay 8), labels keep their spelling ("1", "01", "001" are three classes),
    booleans and whole floats are labels like any other, a JSON object of column lists is columns, GLUE's own
    MRPC layout (quotes inside sentences, a '#1 String' header) loads as a file."""
    tsv = tmp_path / "quotes.tsv"
    tsv.write_text("text\tlabel\n" + "".join(f'he said "hi{i}\t{"ab"[i % 2]}\n' for i in range(8)))
    task, data = _load(tsv)
    assert len(data["train"]) == 8 and data["train"]["sentence"][0] == 'he said "hi0'
    spelled = tmp_path / "spelled.csv"
    spelled.write_text("text,label\na,1\nb,01\nc,001\nd,1\n")
    assert _load(spelled)[0].labels == ("1", "001", "01")  # whole numbers as written by value, then the others
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("text,label\na,10\nb,2\nc,3\n")
    assert _load(numbers)[0].labels == ("2", "3", "10")  # the class ids integer labels always had
    flags = tmp_path / "flags.jsonl"
    flags.write_text('{"text": "a", "label": true}\n{"text": "b", "label": false}\n{"text": "c", "label": true}\n')
    task, data = _load(flags)
    assert task.labels == ("false", "true") and data["train"]["label"] == [1, 0, 1]
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"text": "a", "label": 1.0}\n{"text": "b", "label": 2.0}\n{"text": "c", "label": 2.5}\n')
    task, data = _load(whole, task_type="classification")
    assert task.labels == ("1", "2", "2.5") and data["train"]["label"] == [0, 1, 2]
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}))
    assert len(_load(columns)[1]["train"]) == 3
    mrpc = tmp_path / "train.tsv"
    mrpc.write_text(
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "no" twice .\tHe said no .\n0\t3\t4\t"Quoted start\tplain end\n'
    )
    task, data = _load(mrpc, text_columns=("#1 String", "#2 String"), label_column="Quality")
    assert data["train"]["sentence1"] == ['He said "no" twice .', '"Quoted start'] and task.labels == ("0", "1")


@pytest.mark.parametrize(
    "name, content, options, message",
    [
        (
            "latin1.csv",
            "text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"),
            {},
            r"latin1.csv: line 2: byte 0xe9 is not UTF-8; save it as UTF-8",
        ),
        (
            "bad.jsonl",
            b'{"text": "a", "label": "x"}\n{"text": "b", "label": }\n',
            {},
            r"bad.jsonl: line 2: not valid JSON \(Expecting value at column 24\)",
        ),
        ("header.csv", b"text,label\n", {}, r"header.csv has no rows"),
        ("fields.csv", b"text,label\na,x\nb,y,z\n", {}, r"fields.csv: Expected 2 fields in line 3, saw 3"),
        (
            "blank.csv",
            b"text,label\na,x\nb,\nc,y\n",
            {},
            r"column 'label' is blank in row\(s\) 2; give every training row",
        ),
        ("one.csv", b"text,label\na,x\nb,x\n", {}, r"holds one class \('x' in all 2 rows\)"),
        (
            "nan.csv",
            b"text,score\na,0.5\nb,nan\nc,1.5\n",
            {"label_column": "score", "task_type": "regression"},
            r"row 2: label 'nan' is not a finite number",
        ),
        (
            "gap.csv",
            b"text,score\na,0.5\nb,\nc,1.5\n",
            {"label_column": "score", "task_type": "regression"},
            r"column 'score' is blank in row\(s\) 2",
        ),
        (
            "nested.jsonl",
            b'{"text": ["a", "b"], "label": "x"}\n{"text": "c", "label": "y"}\n',
            {},
            r"row 1: column 'text' holds a list \(\['a', 'b'\]\); a text cell must be one value",
        ),
        (
            "ragged.json",
            b'{"text": ["a", "b"], "label": ["x"]}',
            {},
            r"each column to a list of values, all of one length",
        ),
    ],
)
def test_bad_files_are_refused_naming_file_line_and_column(tmp_path, name, content, options, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        _load(path, **options)


def test_validation_labels_are_never_guessed(tmp_path):
    """A blank validation label is refused (it was scored as class 0); a test file may be wholly unlabelled."""
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\nmy invoice,billing\nit crashes,\n")
    with pytest.raises(DataError, match=r"dev.csv: column 'label' is blank in row\(s\) 2; every validation row"):
        load_custom(DataSource(train_file=str(TRAIN), validation_file=str(dev)))
    test = tmp_path / "test.csv"
    test.write_text("text,label\nmy invoice,\nit crashes,\n")
    _, data = load_custom(DataSource(train_file=str(TRAIN), test_file=str(test)))
    assert len(data["test"]) == 2


def test_nested_parquet_values_are_refused(tmp_path):
    frame = pd.DataFrame({"text": [["a", "b"], ["c"]], "label": ["x", "y"]})
    path = write(frame, tmp_path / "nested.parquet")
    with pytest.raises(DataError, match="row 1: column 'text' holds a list"):
        _load(path)
