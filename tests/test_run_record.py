"""The typed run record (``fsdkit_run.json``): the same JSON as the writer's dict, old records still read."""

from __future__ import annotations

import json

from fsdkit.model_card import render_model_card
from fsdkit.run_record import RUN_RECORD, RunRecord, read_run_record

COMMON = {
    "command": "distill",
    "task": "mrpc",
    "method": "fsd",
    "seed": 1,
    "config": {"task": "mrpc", "output_dir": "runs/fsd", "student_layers": 3, "learning_rate": 1e-4},
    "terms": [{"label": "task", "name": "task", "weight": 0.5}, {"label": "kd", "name": "kd", "weight": 0.5}],
    "metrics": {"validation": {"accuracy": 0.72, "f1": 0.81}},
    "main_metric": "f1",
    "curve": [{"epoch": 1.0, "step": 104, "eval_split": "validation", "eval_f1": 0.8}],
    "losses_by_epoch": [{"epoch": 1, "loss": 0.6, "loss_task": 0.6}],
    "train_runtime": 497.6662,
    "train_samples_per_second": 19.899,
    "train_examples": 3301,
    "global_steps": 312,
    "final_train_loss": 0.39,
    "eval_runtime": 12.4,
    "parameters": 17390594,
    "num_layers": 3,
    "wall_time": 510.9,
    "teacher_source": "cache 6cde60d683bfd5d6",
    "fsdkit_version": "0.1.0",
    "command_line": "fsdkit distill --task mrpc --method fsd",
    "git_commit": "15514741802bb216d9ac7d80c164394b0035534b",
    "torch_version": "2.4.0",
}
DISTILL = {
    **COMMON,
    "teacher": None,  # a method without a teacher still writes the key
    "student_base": "runs/teacher",
    "student_init": "teacher",
    "student_layers": [0, 2, 4],
    "student_shape": None,
}
FINETUNE = {**COMMON, "command": "finetune", "method": "finetune", "model": "minilm"}


def _written(data: dict) -> str:
    """The text the writer wrote before the record was typed."""
    return json.dumps(data, indent=2, default=str) + "\n"


def test_record_round_trips_to_the_same_json(tmp_path):
    for data in (DISTILL, FINETUNE):
        record = RunRecord.from_dict(data)
        assert record.to_dict() == data and list(record.to_dict()) == list(data)  # the same keys in the same order
        assert record.to_json() == _written(data)
        path = record.write(tmp_path)
        assert path == tmp_path / RUN_RECORD and path.read_text() == _written(data)
        assert RunRecord.read(tmp_path) == record
        assert RunRecord.from_json(path.read_text()).to_json() == path.read_text()
    assert "model" not in RunRecord.from_dict(DISTILL).to_dict()
    assert "teacher" not in RunRecord.from_dict(FINETUNE).to_dict()


def test_old_record_with_an_unknown_key_reads_and_keeps_it(tmp_path):
    old = {**FINETUNE, "legacy_note": {"kept": True}}
    (tmp_path / RUN_RECORD).write_text(_written(old))
    record = RunRecord.read(tmp_path)
    assert record.metrics == FINETUNE["metrics"] and record.model == "minilm"
    assert record.extra == {"legacy_note": {"kept": True}}
    assert record.to_json() == _written(old)


def test_partial_record_reads_missing_keys_as_none(tmp_path):
    (tmp_path / RUN_RECORD).write_text(json.dumps({"task": "rte", "method": "vkd", "train_samples_per_second": 4.0}))
    record = RunRecord.read(tmp_path)
    assert (record.task, record.method, record.train_samples_per_second) == ("rte", "vkd", 4.0)
    assert record.metrics is None and record.command is None and record.extra == {}
    assert read_run_record(tmp_path) == {"task": "rte", "method": "vkd", "train_samples_per_second": 4.0}


def test_folder_without_a_record_reads_none(tmp_path):
    assert RunRecord.read(tmp_path) is None
    assert RunRecord.read(tmp_path / "not-a-folder") is None
    assert read_run_record(tmp_path) is None


def test_model_card_reads_the_typed_record():
    distilled = render_model_card(RunRecord.from_dict(DISTILL), {0: "no", 1: "yes"})
    assert "Student distilled with fsd (mrpc)" in distilled and "layers [0, 2, 4] (teacher initialisation)" in distilled
    assert "none (the method has no teacher term)" in distilled and "0.5 · task + 0.5 · kd" in distilled
    assert "fsdkit distill --task mrpc --method fsd" in distilled and "(commit 15514741802b)" in distilled
    tuned = render_model_card(RunRecord.from_dict(FINETUNE), None)
    assert "# Fine-tuned model (mrpc)" in tuned and "- Base: `minilm`" in tuned and "Distillation" not in tuned
