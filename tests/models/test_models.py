"""Students built from chosen layers; exported folders reload with identical predictions."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from fsdkit.data import get_task
from fsdkit.errors import ConfigError, ModelError
from fsdkit.models import build_student, encoder_layers, load_classifier, resolve_model_path, save_model


def test_student_takes_the_chosen_layers(minilm_path):
    base, _ = load_classifier(minilm_path, get_task("mrpc"))
    originals = [layer.state_dict() for layer in encoder_layers(base)]
    student = build_student(base, [0, 2, 5])
    assert student.config.num_hidden_layers == 3 and student.config.fsdkit_student_layers == [0, 2, 5]
    for new_i, old_i in enumerate([0, 2, 5]):
        for key, value in encoder_layers(student)[new_i].state_dict().items():
            assert torch.equal(value, originals[old_i][key])


def test_first_k_layers_and_bad_layer_lists(minilm_path):
    base, _ = load_classifier(minilm_path, get_task("sst2"))
    assert build_student(base, 2).config.fsdkit_student_layers == [0, 1]
    base, _ = load_classifier(minilm_path, get_task("sst2"))
    with pytest.raises(ConfigError, match="out of range"):
        build_student(base, [0, 9])
    with pytest.raises(ConfigError, match="repeat"):
        build_student(base, [1, 1])
    with pytest.raises(ConfigError, match="expected 1..6"):
        build_student(base, 7)


def test_export_then_reload_gives_identical_predictions(minilm_path, tmp_path):
    torch.manual_seed(0)
    base, tokenizer = load_classifier(minilm_path, get_task("rte"))
    student = build_student(base, 3).eval()
    save_model(student, tokenizer, tmp_path / "student")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "student")
    batch = tokenizer(
        ["A man is playing.", "Nobody is here at all today."],
        ["Someone plays.", "The room is full."],
        padding=True,
        return_tensors="pt",
    )
    assert tok2(["A man is playing."])["input_ids"] == tokenizer(["A man is playing."])["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(**batch).logits, student(**batch).logits, rtol=0, atol=0)
    assert reloaded.config.id2label == {0: "entailment", 1: "not_entailment"}
    assert reloaded.config.num_hidden_layers == 3


def test_model_path_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    assert resolve_model_path("minilm").endswith("model")


def test_regression_head_for_stsb(minilm_path):
    model, _ = load_classifier(minilm_path, get_task("stsb"))
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
