"""Teacher and student with different tokenizers: each model reads its own tokenisation of the same text.

The student is a fresh 2-layer BERT whose WordPiece vocabulary (1,000 pieces) is trained here on MRPC's text
with `tokenizers`; the teacher is the MiniLM teacher with its own 30k vocabulary. Logit KD and the sample-level
structure losses (FSDL, FSDG, RKD, PKD's [CLS] vectors, Relation-CKA) train; the token-level ones (FSDI,
MiniLM, internal KD) are refused before training, naming a sample-level alternative.
"""

from __future__ import annotations

import pytest
import torch

from fsdkit import distill
from fsdkit.errors import ModelError
from fsdkit.methods import get_method
from fsdkit.training.trainer import DistillationTrainer

pytestmark = pytest.mark.glue

SHAPE = "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128"


@pytest.fixture(scope="module")
def task_tokenizer(glue_dir, tmp_path_factory):
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    from fsdkit.data import load_task_data

    train = load_task_data("mrpc", glue_dir)["train"].select(range(600))
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(list(train["sentence1"]) + list(train["sentence2"]), vocab_size=1000, min_frequency=2)
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    folder = tmp_path_factory.mktemp("student-tokenizer")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    assert len(tokenizer) == 1000 and tokenizer("a test")["input_ids"][0] == cls
    tokenizer.save_pretrained(folder)
    return folder


def options(glue_dir, teacher, tokenizer, out, method, **extra):
    return dict(
        task="mrpc",
        data_dir=str(glue_dir),
        teacher=str(teacher),
        method=method,
        output_dir=str(out),
        student_config=SHAPE,
        student_tokenizer=str(tokenizer),
        batch_size=8,
        max_train_samples=32,
        max_eval_samples=16,
        max_length=64,
        max_steps=2,
        logging_steps=1,
        progress=False,
        **({"memory_clusters": 4} if get_method(method).needs_memory else {}),
        **extra,
    )


@pytest.mark.parametrize("method", ["vkd", "fsdl", "fsdg", "rkd", "pkd", "relation-cka"])
def test_sample_level_losses_train_across_vocabularies(
    glue_dir, mrpc_teacher, task_tokenizer, tmp_path, method, monkeypatch
):
    seen = {}
    original = DistillationTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen["student"], seen["teacher"] = inputs["input_ids"], inputs["teacher_input_ids"]
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", spy)
    record = distill(**options(glue_dir, mrpc_teacher, task_tokenizer, tmp_path / method, method))
    assert record["global_steps"] == 2
    assert int(seen["student"].max()) < 1000 < int(seen["teacher"].max())  # each model its own vocabulary
    assert seen["student"].shape[1] != seen["teacher"].shape[1] or not torch.equal(seen["student"], seen["teacher"])
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tmp_path / method)) == 1000  # the student keeps its own tokenizer


@pytest.mark.parametrize(
    "method, loss", [("fsdi", "intra-feature"), ("minilm", "MiniLM"), ("internal-all", "internal-representation")]
)
def test_token_level_losses_are_refused_with_an_alternative(
    glue_dir, mrpc_teacher, task_tokenizer, tmp_path, method, loss
):
    with pytest.raises(ModelError, match=rf"{loss}.*tokenizers differ; use "):
        distill(**options(glue_dir, mrpc_teacher, task_tokenizer, tmp_path / method, method))
    assert not (tmp_path / method / "checkpoints").exists()
