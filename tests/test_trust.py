"""Nothing lost, no label guessed, no traceback: the second reliability round (issue "Touch nothing it does not own",
items 4-12), each case in a few lines on the shipped tickets data (no ../shared needed).

Data-file cases (item 9 and the reading errors of item 11) are in tests/data/test_data_files.py; security (items 1-3) in
tests/test_security.py.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from data_paths import TICKETS, TICKETS_DEV, TICKETS_TEST
from fsdkit import distill, finetune, predict
from fsdkit.cli import main as cli_main
from fsdkit.errors import ConfigError, ModelError

FILES = {"train_file": str(TICKETS), "validation_file": str(TICKETS_DEV)}
TINY_FINETUNE = dict(max_steps=1, batch_size=8, max_length=32, progress=False)
TINY = dict(**TINY_FINETUNE, relation_every=0)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------ [4] [5] data loss
def test_distilling_into_the_teacher_folder_is_refused_and_the_teacher_kept(tickets_teacher):
    before = snapshot(tickets_teacher)
    with pytest.raises(ConfigError, match=r"--output-dir .* is --teacher .*: the run's files would overwrite"):
        distill(**FILES, teacher=str(tickets_teacher), student="teacher", output_dir=str(tickets_teacher), **TINY)
    assert snapshot(tickets_teacher) == before


def test_an_output_folder_holding_the_data_or_the_student_source_is_refused(tmp_path, tickets_teacher):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(TICKETS, data / "train.csv")
    with pytest.raises(ConfigError, match=r"--output-dir .*data is --train-file .*train.csv|holds --train-file"):
        finetune(train_file=str(data / "train.csv"), output_dir=str(data), **TINY_FINETUNE)
    with pytest.raises(ConfigError, match=r"holds --(teacher|student)"):
        distill(
            **FILES,
            teacher=str(tickets_teacher),
            student=str(tickets_teacher),
            output_dir=str(tickets_teacher.parent),
            **TINY,
        )


def test_predicting_over_the_input_file_is_refused_and_the_input_kept(tmp_path, tickets_teacher):
    texts = tmp_path / "x.csv"
    shutil.copy(TICKETS_TEST, texts)
    before = texts.read_bytes()
    with pytest.raises(ConfigError, match=r"--output .*x.csv is --test-file .*: writing there would replace"):
        predict(model=str(tickets_teacher), **FILES, test_file=str(texts), split="test", output=str(texts))
    assert texts.read_bytes() == before


# ------------------------------------------------------------------------------------ [6] [7] what a model carries
def test_a_model_folder_without_tokenizer_files_is_refused(tmp_path, tickets_teacher):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tickets_teacher / name, bare / name)
    from fsdkit.models import check_model_folder

    with pytest.raises(ModelError, match="has no tokenizer files"):
        check_model_folder(bare, option="teacher")
    for command in (
        [
            "predict",
            str(bare),
            "--train-file",
            str(TICKETS),
            "--test-file",
            str(TICKETS_TEST),
            "--split",
            "test",
            "--output",
            str(tmp_path / "p.jsonl"),
        ],
        ["export", str(bare), "--output-dir", str(tmp_path / "onnx")],
    ):
        assert cli_main(command) == 2
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "onnx" / "model.onnx").exists()


def test_label_names_come_from_the_model_and_a_renamed_label_set_is_refused(tmp_path, tickets_teacher):
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(TICKETS).replace({"label": {"bug": "defect"}}).to_csv(renamed, index=False)
    dev = tmp_path / "dev.csv"
    pd.read_csv(TICKETS_DEV).replace({"label": {"bug": "defect"}}).to_csv(dev, index=False)
    with pytest.raises(ModelError, match=r"predicts the labels \['billing', 'bug', 'feature'\].*'bug' vs 'defect'"):
        predict(
            model=str(tickets_teacher),
            train_file=str(renamed),
            test_file=str(TICKETS_TEST),
            split="test",
            output=str(tmp_path / "p.jsonl"),
        )
    with pytest.raises(ModelError, match="'bug' vs 'defect'"):
        distill(
            train_file=str(renamed),
            validation_file=str(dev),
            teacher=str(tickets_teacher),
            student="teacher",
            output_dir=str(tmp_path / "student"),
            **TINY,
        )
    assert not (tmp_path / "p.jsonl").exists()


# ---------------------------------------------------------------------------------- [8] artifacts know their data
def test_an_automatic_memory_of_other_training_rows_is_rebuilt(tmp_path, tickets_teacher, caplog):
    out = tmp_path / "fsdg"
    distill(**FILES, teacher=str(tickets_teacher), method="fsdg", memory_clusters=3, output_dir=str(out), **TINY)
    changed = tmp_path / "changed.csv"
    frame = pd.read_csv(TICKETS)
    frame.loc[0, "text"] = "A completely different first ticket about invoices"
    frame.to_csv(changed, index=False)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        distill(
            train_file=str(changed),
            validation_file=str(TICKETS_DEV),
            teacher=str(tickets_teacher),
            method="fsdg",
            memory_clusters=3,
            output_dir=str(out),
            **TINY,
        )
    assert "data_sha256: memory" in caplog.text


# ----------------------------------------------------------------------------- [10] [11] [12] errors, not tracebacks
def test_output_paths_are_checked_before_the_model_runs(tmp_path, tickets_teacher, monkeypatch):
    import fsdkit.models.loading as loading

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(loading, "load_classifier", never)
    import fsdkit.prediction as prediction

    monkeypatch.setattr(prediction, "load_classifier", never, raising=False)
    (tmp_path / "a-folder.jsonl").mkdir()
    (tmp_path / "a-file").write_text("x")
    for output, message in (
        (tmp_path / "a-folder.jsonl", "is a folder"),
        (tmp_path / "a-file" / "p.jsonl", "a-file is a file, so no folder can be made there"),
    ):
        with pytest.raises(ConfigError, match=message):
            predict(model=str(tickets_teacher), **FILES, test_file=str(TICKETS_TEST), split="test", output=str(output))
    from fsdkit.evaluation import evaluate

    with pytest.raises(ConfigError, match="is a folder"):
        evaluate(model=str(tickets_teacher), **FILES, output=str(tmp_path / "a-folder.jsonl"))


def test_export_refuses_a_bad_opset_and_leaves_nothing_when_it_fails(tmp_path, tickets_teacher):
    from fsdkit.export import export_onnx

    with pytest.raises(ConfigError, match=r"--opset 5: the exporter writes opsets 7 to \d+"):
        export_onnx(str(tickets_teacher), str(tmp_path / "onnx"), opset=5)
    with pytest.raises(ConfigError, match="differs from PyTorch"):  # a check that cannot pass
        export_onnx(str(tickets_teacher), str(tmp_path / "onnx"), atol=-1.0)
    assert list((tmp_path / "onnx").iterdir()) == []
    with pytest.raises(ConfigError, match="is the model folder"):
        export_onnx(str(tickets_teacher), str(tickets_teacher))


@pytest.mark.parametrize(
    "storage, message",
    [
        ("sqlite://", "expected sqlite:///FILE"),
        ("sqlite://x.db", "expected sqlite:///FILE"),
        ("sqlite:///{tmp}", "is a folder; give a file name"),
        ("sqlite:///{tmp}/readonly.db", "cannot be written"),
    ],
)
def test_a_bad_sweep_storage_is_one_line(tmp_path, storage, message):
    import os

    from fsdkit.sweep import sweep

    readonly = tmp_path / "readonly.db"
    readonly.write_bytes(b"")
    readonly.chmod(0o444)
    if os.geteuid() == 0 and "readonly" in storage:
        pytest.skip("running as root: a read-only file stays writable, so the read-only storage case cannot be set up")
    spec = {
        "command": "distill",
        "base": {**FILES, "teacher": "t", "holdout-fraction": 0.2},
        "space": {"alpha": {"type": "float", "low": 0.1, "high": 0.9}},
    }
    with pytest.raises(ConfigError, match=message):
        sweep(spec, storage=storage.format(tmp=tmp_path), output_dir=str(tmp_path / "sweep"))


def test_a_diverged_run_stops_naming_its_term(tmp_path, tickets_teacher):
    """A learning rate of 1e30 (the CKA input turns non-finite) and a weight of 1e39 (a finite term overflows): the
    documented stop naming the term, never the CKA's ValueError nor the task term."""
    with pytest.raises(FloatingPointError, match=r"loss term '(intra|local)'.*the step was not applied"):
        distill(
            **FILES,
            teacher=str(tickets_teacher),
            method="fsdil",
            output_dir=str(tmp_path / "lr"),
            **{**TINY, "max_steps": 3},
            learning_rate=1e30,
        )
    with pytest.raises(FloatingPointError, match=r"loss term 'intra' \(structure\) × its weight 1e\+39"):
        distill(
            **FILES,
            teacher=str(tickets_teacher),
            method="fsdi",
            output_dir=str(tmp_path / "w"),
            **TINY,
            lambda_intra=1e39,
        )


def test_interrupted_commands_say_how_to_go_on(monkeypatch, capsys):
    import fsdkit.sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsdkit.sweep, "sweep", interrupted)
    assert cli_main(["sweep", "--trials", "1"]) == 130
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and "--resume" not in err


def test_the_memory_refusal_suggests_a_command_that_works_for_your_files(tmp_path, tickets_teacher):
    from fsdkit import build_memory

    build_memory(
        teacher=str(tickets_teacher),
        **FILES,
        output_dir=str(tmp_path / "mem"),
        n_clusters=2,
        max_length=32,
        progress=False,
    )
    with pytest.raises(ConfigError, match=r"fsdkit memory build --teacher .* --train-file .*tickets.csv") as info:
        distill(
            **FILES,
            teacher=str(tickets_teacher),
            method="fsdg",
            memory=str(tmp_path / "mem"),
            output_dir=str(tmp_path / "x"),
            **{**TINY, "max_length": 24},
        )
    assert "--task custom" not in str(info.value)


def test_resume_before_the_first_checkpoint_starts_afresh(tmp_path, caplog):
    (tmp_path / "run" / "checkpoints" / "checkpoint-2").mkdir(parents=True)  # a save cut short by a kill
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        record = finetune(**FILES, output_dir=str(tmp_path / "run"), resume=True, **{**TINY_FINETUNE, "max_steps": 2})
    assert "starting from the beginning" in caplog.text and record["metrics"]["validation"]


def test_a_killed_build_leaves_no_temporary_folder_for_ever(tmp_path):
    from fsdkit.artifacts import staged_dir

    final = tmp_path / "cache-key"
    dead = tmp_path / f".{final.name}.tmp-999999999-deadbeef"  # a build killed with SIGKILL: no cleanup ran
    dead.mkdir()
    (dead / "rows.npy").write_bytes(b"\0" * 1024)
    with staged_dir(final) as folder:
        (folder / "done").write_text("1")
    assert not dead.exists() and (final / "done").is_file()


def test_a_pickle_that_is_not_plain_tensors_is_refused_in_one_line(tmp_path, tickets_teacher):
    """A ``pytorch_model.bin`` whose pickle would call a function: torch reads weights only as tensors, and the
    refusal is one line naming the file (it was a traceback)."""
    import os

    import torch

    from fsdkit.models import load_classifier

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    folder = tmp_path / "pickled"
    shutil.copytree(tickets_teacher, folder, ignore=shutil.ignore_patterns("model.safetensors", "checkpoints"))
    torch.save({"weights": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"could not load pytorch_model.bin of .*pickled: .*plain tensors"):
        load_classifier(folder)


# ------------------------------------------------------------------------------- unlabelled transfer data (issue 41)
def test_a_transfer_row_never_reaches_the_task_loss():
    """The task term on a batch of labelled and transfer rows is the labelled rows' cross-entropy over the batch's
    rows, whatever label a transfer row carries; micro-batches accumulate to their union; a batch of transfer rows
    only gives 0 (and a gradient of 0)."""
    import torch
    import torch.nn.functional as F

    from fsdkit.data.files import LABELLED
    from fsdkit.data.tasks import TaskSpec
    from fsdkit.features import Features
    from fsdkit.losses.base import TermContext
    from fsdkit.losses.terms.logits import TaskLoss

    task = TaskSpec("custom", "", ("sentence",), ("a", "b", "c"), ("accuracy",), "accuracy")
    term = TaskLoss(TermContext(None, None, task))
    logits = torch.randn(4, 3, requires_grad=True)
    student = Features(logits=logits, attention_mask=torch.ones(4, 2, dtype=torch.long))
    labels = torch.tensor([0, 2, 1, 1])
    for garbage in (0, 1, 2):
        batch = {
            "labels": labels.clone().index_fill_(0, torch.tensor([1, 3]), garbage),
            LABELLED: torch.tensor([1, 0, 1, 0]),
        }
        value = term(student, None, batch)  # a batch mean in which a transfer row adds 0
        assert torch.allclose(value, F.cross_entropy(logits[[0, 2]], labels[[0, 2]], reduction="sum") / 4)
    # micro-batches of any labelled share, weighted n_i / N as the trainer weights them, give the union's value
    big = torch.randn(16, 3)
    big_labels, mask = torch.randint(0, 3, (16,)), torch.tensor([1] * 8 + [1] + [0] * 7)
    whole = term(Features(logits=big, attention_mask=torch.ones(16, 2)), None, {"labels": big_labels, LABELLED: mask})
    parts = sum(
        term(
            Features(logits=big[i : i + 8], attention_mask=torch.ones(8, 2)),
            None,
            {"labels": big_labels[i : i + 8], LABELLED: mask[i : i + 8]},
        )
        * 8
        / 16
        for i in (0, 8)
    )
    assert torch.allclose(parts, whole)
    only_transfer = term(student, None, {"labels": labels, LABELLED: torch.zeros(4, dtype=torch.long)})
    only_transfer.backward()
    assert only_transfer.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_transfer_rows_train_the_distillation_terms_and_feed_cache_and_memory(tmp_path, tickets_teacher, monkeypatch):
    """--transfer-file: every batch the distillation terms see holds transfer rows too (the KD term's batches sum
    to the labelled plus the transfer rows), the teacher-output cache and the automatic FSDG memory are built over
    both, and the task loss reads the labelled rows only."""
    import torch

    from fsdkit.data.files import LABELLED
    from fsdkit.training.trainer import DistillationTrainer

    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(f"unlabelled ticket number {i} about an invoice or a crash" for i in range(16)))
    seen = []
    original = DistillationTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append(inputs[LABELLED].clone())
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", spy)
    record = distill(
        **FILES,
        transfer_file=str(transfer),
        teacher=str(tickets_teacher),
        student="teacher",
        method="fsdg",
        memory_clusters=3,
        teacher_cache=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "student"),
        **{**TINY, "max_steps": 0, "epochs": 1},
    )
    rows = torch.cat(seen)
    assert int((rows == 1).sum()) == 24 and int((rows == 0).sum()) == 16  # one epoch: every row once
    from fsdkit.memory import TeacherMemory

    assert TeacherMemory.load(tmp_path / "student" / "memory").metadata["n_rows"] == 40
    manifest = next((tmp_path / "cache").rglob("manifest.json"))
    import json as _json

    assert _json.loads(manifest.read_text())["n_examples"] == 40
    assert record["metrics"]["validation"]


def test_tensorboard_gets_every_loss_term_as_its_own_scalar(tmp_path, tickets_teacher):
    """--report-to tensorboard (issue "Your model, as it is", item 4): each weighted term of FSD and each part of
    its memory term is a scalar of its own in the event file."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    distill(
        **FILES,
        teacher=str(tickets_teacher),
        student="teacher",
        method="fsd",
        memory_clusters=3,
        report_to="tensorboard",
        output_dir=str(tmp_path / "student"),
        logging_steps=1,
        **{**TINY, "max_steps": 2},
    )
    events = list((tmp_path / "student").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    tags = set()
    for event in events:
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    for term in ("task", "kd", "intra", "local", "global"):
        assert f"train/loss_{term}" in tags, sorted(tags)
    assert any(tag.startswith("train/loss_global_") for tag in tags), sorted(tags)  # the memory term's parts


def test_a_teacher_memory_leaves_out_the_holdout_rows_of_its_run(tmp_path, tickets_teacher):
    """With --holdout-fraction, the FSDG memory (built by the run, or by `fsdkit memory build` with the same
    setting) holds the teacher's features of the training rows only: the rows the run is scored on are not the
    student's to see, not even as centroids."""
    from fsdkit import build_memory
    from fsdkit.memory import TeacherMemory

    distill(
        **FILES,
        teacher=str(tickets_teacher),
        student="teacher",
        method="fsdg",
        memory_clusters=3,
        holdout_fraction=0.125,
        output_dir=str(tmp_path / "student"),
        **{**TINY, "max_steps": 0, "epochs": 1},
    )
    assert TeacherMemory.load(tmp_path / "student" / "memory").metadata["n_rows"] == 21  # 24 rows less 3
    build_memory(
        **FILES,
        teacher=str(tickets_teacher),
        n_clusters=3,
        max_length=32,
        holdout_fraction=0.125,
        output_dir=str(tmp_path / "memory"),
        progress=False,
    )
    assert TeacherMemory.load(tmp_path / "memory").metadata["n_rows"] == 21


def test_a_sweep_scored_on_rows_its_teacher_was_fine_tuned_on_says_so(tmp_path, tickets_teacher, caplog):
    """fsdkit sweep on a holdout split the teacher was trained on (its run record has no --holdout-fraction): the
    scores reward staying close to the teacher, and the sweep warns before its trials."""
    import logging

    from fsdkit.sweep import sweep

    spec = {
        "command": "distill",
        "base": {
            **FILES,
            "teacher": str(tickets_teacher),
            "method": "vkd",
            "holdout_fraction": 0.125,
            "batch_size": 8,
            "max_length": 32,
            "max_steps": 1,
            "relation_every": 0,
        },
        "space": {"alpha": {"type": "float", "low": 0.1, "high": 0.9}},
        "trials": 1,
    }
    with caplog.at_level(logging.WARNING, logger="fsdkit"):
        sweep(spec, storage=f"sqlite:///{tmp_path / 's.db'}", output_dir=str(tmp_path / "sweep"))
    assert "was fine-tuned on the holdout rows the trials are scored on" in caplog.text
