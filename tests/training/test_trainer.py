"""``DistillationTrainer`` honours transformers' contracts: gradient accumulation and mixed precision.

- Gradient accumulation: ``k`` micro-batches of ``b`` give the same loss, gradient norm, logged terms and
  weights as one batch of ``k·b`` for terms that are batch means (VKD's task and KD terms, PKD's patient loss).
  Models without dropout, so both runs compute the same function. FSDI's ``−log(mean_b CKA_b + ε)`` is not a
  batch mean (the log is taken of the mean): like FSDL and the memory term it is computed per micro-batch.
- Mixed precision: ``--bf16`` runs the student's forward pass under autocast (its linear layers output
  bfloat16), the loss terms still compute in float32, and the terms agree with a float32 step within 3 %.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from torch import nn

from fsdkit.config import DistillConfig
from fsdkit.losses import TermContext, build_term
from fsdkit.methods import run_terms
from fsdkit.training.run import training_arguments
from fsdkit.training.trainer import DistillationTrainer, StudentWithTerms
from read_counting import count_reads

SENTENCES = [
    "a gripping, beautifully acted film",
    "the plot never comes together",
    "one of the year's best",
    "tedious and far too long",
    "warm, funny and wise",
    "a mess from start to finish",
    "an instant classic",
    "i wanted to leave after ten minutes",
    "the cast is wonderful",
    "flat characters and a dull script",
    "smart, moving and surprising",
    "nothing here works at all",
    "a joy to watch",
    "painfully slow going",
    "it earns every one of its tears",
    "forgettable in every way",
]


def tiny_bert(tokenizer, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0,
        num_labels=2,
        max_position_embeddings=64,
    )
    return BertForSequenceClassification(config)


def tiny_parts(minilm_path: str) -> dict:
    """Tokenizer, 16 encoded sentences, collator and task of the tiny no-dropout teacher/student pair."""
    from transformers import AutoTokenizer

    from fsdkit.data import get_task, make_collator

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    encoded = tokenizer(SENTENCES, truncation=True, max_length=32)
    data = Dataset.from_dict({**encoded, "labels": [i % 2 for i in range(len(SENTENCES))]})
    return {"tokenizer": tokenizer, "data": data, "collator": make_collator(tokenizer), "task": get_task("sst2")}


@pytest.fixture(scope="module")
def parts(minilm_path):
    return tiny_parts(minilm_path)


def make_trainer(parts, tmp_path, *, method: str, batch_size: int, accumulation: int, max_steps: int, **run):
    config = DistillConfig(
        output_dir=str(tmp_path),
        method=method,
        batch_size=batch_size,
        max_steps=max_steps,
        gradient_accumulation_steps=accumulation,
        logging_steps=1,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        progress=False,
        relation_every=0,
        **run,
    )
    teacher, student = tiny_bert(parts["tokenizer"], 0), tiny_bert(parts["tokenizer"], 1)
    specs = run_terms(config)
    ctx = TermContext(student.config, teacher.config, parts["task"], max_length=32)
    terms = nn.ModuleDict({s.label: build_term(s.name, ctx, s.options) for s in specs})
    return DistillationTrainer(
        model=StudentWithTerms(student, terms),
        args=training_arguments(config, tmp_path),
        term_specs=specs,
        teacher=teacher,
        train_dataset=parts["data"],
        data_collator=parts["collator"],
    )


def train_logs(trainer) -> list[dict]:
    trainer.train()
    return [entry for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("method", ["vkd", "pkd"])
def test_accumulated_micro_batches_equal_one_large_batch(parts, tmp_path, method):
    """2 × 4 accumulated == 1 × 8: loss, grad norm, every logged term, and the weights after 2 steps."""
    big = make_trainer(parts, tmp_path / "big", method=method, batch_size=8, accumulation=1, max_steps=2)
    small = make_trainer(parts, tmp_path / "small", method=method, batch_size=4, accumulation=2, max_steps=2)
    logs_big, logs_small = train_logs(big), train_logs(small)
    assert len(logs_big) == len(logs_small) == 2
    for a, b in zip(logs_big, logs_small):
        keys = {k for k in a if k == "loss" or k == "grad_norm" or k.startswith("loss_")}
        assert {"loss", "grad_norm", "loss_task", "loss_kd"} <= keys
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        # the logged loss is the weighted sum of the logged terms (not k times it)
        weights = {s.label: s.weight for s in big.term_specs}
        total = sum(weights[k[5:]] * a[k] for k in keys if k.startswith("loss_"))
        assert a["loss"] == pytest.approx(total, rel=1e-3)
    for (name, p_big), (_, p_small) in zip(big.model.named_parameters(), small.model.named_parameters()):
        torch.testing.assert_close(p_small, p_big, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_runs_the_forward_in_bfloat16_and_the_losses_in_float32(parts, tmp_path):
    """One FSD-I step under --bf16 against float32: the student's linear layers output bfloat16, every term is
    float32 and within 3 % of the float32 step (bfloat16 keeps 8 bits of mantissa: ~0.4 % per op)."""
    steps = {}
    for precision in ("fp32", "bf16"):
        trainer = make_trainer(
            parts,
            tmp_path / precision,
            method="fsdi",
            batch_size=8,
            accumulation=1,
            max_steps=1,
            bf16=precision == "bf16",
        )
        seen = []
        layer = trainer.model.student.bert.encoder.layer[0].output.dense
        handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        term_dtypes = []
        for label, term in trainer.model.terms.items():
            term.register_forward_hook(lambda _m, _i, out: term_dtypes.append(out.dtype))
        logs = train_logs(trainer)
        handle.remove()
        steps[precision] = logs[0]
        assert seen, "the student's forward did not run"
        assert set(seen) == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert set(term_dtypes) == {torch.float32}
    for key, value in steps["fp32"].items():
        if key.startswith("loss"):
            assert steps["bf16"][key] == pytest.approx(value, rel=3e-2), key


def test_a_terms_own_parameter_group_gets_its_learning_rate(parts, tmp_path):
    """The FSDG student memory trains at memory_lr (its own optimizer group, no weight decay), the student at the
    run's learning rate: after one AdamW step (|Δ| = lr on every entry) the memory moved by 1e-2, not 1e-3."""
    from fsdkit.memory import TeacherMemory

    memory = TeacherMemory(
        torch.randn(4, 32), {"layer": "penultimate", "pooling": "mean", "max_length": None, "hidden_size": 32}
    )
    trainer = make_trainer(
        parts,
        tmp_path,
        method="vkd",
        batch_size=8,
        accumulation=1,
        max_steps=1,
        losses=[{"name": "memory", "weight": 1.0, "memory": memory, "memory_lr": 1e-2}],
    )
    before = trainer.model.terms["memory"].student_memory.detach().clone()
    train_logs(trainer)
    groups = trainer.optimizer.param_groups
    (own,) = [g for g in groups if any(p is trainer.model.terms["memory"].student_memory for p in g["params"])]
    assert len(own["params"]) == 1 and own["weight_decay"] == 0.0 and own["initial_lr"] == 1e-2
    assert sum(len(g["params"]) for g in groups) == len(list(trainer.model.parameters()))
    moved = (trainer.model.terms["memory"].student_memory.detach() - before).abs()
    torch.testing.assert_close(moved.median(), torch.tensor(1e-2), rtol=1e-2, atol=0)


def test_on_an_accelerator_the_structure_terms_add_no_read_to_a_step(parts, tmp_path, monkeypatch):
    """With the similarities on an accelerator (the CPU taken for one), an FSD step (intra, local and memory terms)
    reads tensor values as often as a VKD step: the terms' checks are read with the trainer's one finiteness check.
    On the CPU, where a read costs nothing, each structure term reads once (its Gram route)."""
    from fsdkit.losses import similarities
    from fsdkit.memory import TeacherMemory

    memory = TeacherMemory(
        torch.randn(4, 32), {"layer": "penultimate", "pooling": "mean", "max_length": None, "hidden_size": 32}
    )
    batch = parts["collator"]([parts["data"][i] for i in range(8)])

    def reads_of_a_step(method: str, **run) -> int:
        trainer = make_trainer(
            parts, tmp_path / method, method=method, batch_size=8, accumulation=1, max_steps=1, **run
        )
        trainer.model.train()
        with pytest.MonkeyPatch.context() as mp:
            reads = count_reads(mp)
            trainer.compute_loss(trainer.model, dict(batch))
        return len(reads)

    fsd = {"method": "fsdil", "losses": [{"name": "memory", "weight": 1.0, "memory": memory}]}
    on_cpu = reads_of_a_step(**fsd), reads_of_a_step("vkd")
    assert on_cpu[0] == on_cpu[1] + 3
    monkeypatch.setattr(similarities, "_on_accelerator", lambda z: True)
    assert reads_of_a_step(**fsd) == reads_of_a_step("vkd") == on_cpu[1]


def test_length_grouped_batches_depend_on_the_seed_and_epoch_only(parts, tmp_path):
    """--group-by-length: the Trainer's sampler draws each epoch's order from the seed and the epoch, not from the
    global RNG (whose state differs in a resumed run and across processes), still in batches of similar length."""
    trainer = make_trainer(
        parts, tmp_path, method="vkd", batch_size=4, accumulation=1, max_steps=1, group_by_length=True
    )
    loader = trainer.get_train_dataloader()
    sampler = loader.batch_sampler.sampler

    def epoch_order(epoch: int, global_seed: int) -> list[int]:
        torch.manual_seed(global_seed)
        loader.set_epoch(epoch)  # what the Trainer calls before every epoch
        return [i for batch in loader.batch_sampler for i in batch]

    first = epoch_order(0, global_seed=1)
    assert epoch_order(0, global_seed=2) == first
    assert epoch_order(1, global_seed=1) != first and sorted(epoch_order(1, global_seed=3)) == sorted(first)
    lengths = [len(ids) for ids in parts["data"]["input_ids"]]
    assert lengths[first[0]] == max(lengths)  # transformers' grouping: the longest example leads
    assert sampler.lengths == lengths


def test_a_multi_process_resume_inside_an_epoch_takes_that_epochs_order(parts, tmp_path):
    """Resumed inside epoch 2 as one of 2 processes (accelerate's shard of the batches), the loader that skips the
    trained batches yields the rest of epoch 2's order: the skipping wrapper hides the sampler from ``set_epoch``,
    so the Trainer sets the resumed epoch on it first."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    trainer = make_trainer(
        parts, tmp_path, method="vkd", batch_size=2, accumulation=1, max_steps=1, group_by_length=True
    )

    def rank0_loader():  # the Trainer's sampler, batched and sharded as process 0 of 2
        loader = DataLoader(list(range(len(parts["data"]))), batch_size=2, sampler=trainer._get_train_sampler())
        return prepare_data_loader(loader, num_processes=2, process_index=0, put_on_device=False)

    whole = rank0_loader()
    whole.set_epoch(2)
    epoch2 = [batch.tolist() for batch in whole]
    trainer.state.epoch = 2.5  # the checkpoint's: half-way through epoch 2
    resumed = trainer.get_resumed_dataloader(rank0_loader(), 2)
    resumed.set_epoch(2)  # what the Trainer calls next (it does not reach the sampler through the wrapper)
    assert [batch.tolist() for batch in resumed] == epoch2[2:]
