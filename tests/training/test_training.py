"""Real runs on MRPC with the packaged MiniLM: learning, export/reload, resume, a frozen teacher, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from data_paths import mrpc_run
from fsdkit import build_memory, distill, evaluate
from fsdkit.errors import ConfigError, ModelError
from fsdkit.training.trainer import DistillationTrainer

pytestmark = pytest.mark.glue


def small(glue_dir, **overrides):
    return mrpc_run(glue_dir, **{"max_train_samples": 48, "max_eval_samples": 24, "relation_every": 2, **overrides})


def test_fsd_run_lowers_the_loss_and_exports_a_standard_folder(glue_dir, mrpc_teacher, tmp_path):
    out = tmp_path / "fsd"
    record = distill(
        **small(
            glue_dir,
            teacher=str(mrpc_teacher),
            output_dir=str(out),
            method="fsd",
            epochs=6,
            learning_rate=1e-4,
            memory_clusters=4,
            warmup_ratio=0.0,
        )
    )
    history = [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert {"loss_task", "loss_kd", "loss_intra", "loss_local", "loss_global"} <= set(history[0])
    first = sum(h["loss"] for h in history[:3]) / 3
    last = sum(h["loss"] for h in history[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    by_epoch = record["losses_by_epoch"]  # every term and part, per epoch, in the run record
    assert [e["epoch"] for e in by_epoch] == [1, 2, 3, 4, 5, 6] and "loss_global" in by_epoch[0]
    # a standard model folder: transformers loads it alone, with 3 layers, and it scores as the run reported
    model = AutoModelForSequenceClassification.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 3
    assert not any("memory" in k for k in load_file(out / "model.safetensors"))
    assert (out / "memory" / "memory.json").is_file() and (out / "relation_history.json").is_file()
    reloaded = evaluate(
        model=str(out), task="mrpc", data_dir=str(glue_dir), max_eval_samples=24, max_length=64, progress=False
    )
    assert reloaded["metrics"] == record["metrics"]


def test_resumed_run_matches_uninterrupted_run(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """A run that dies after its step-4 checkpoint and is resumed ends with the same weights as one that did not."""
    options = small(
        glue_dir,
        teacher=str(mrpc_teacher),
        method="fsdg",
        max_steps=8,
        save_steps=4,
        memory_clusters=4,
        relation_every=0,
    )
    distill(**options, output_dir=str(tmp_path / "full"))

    original = DistillationTrainer.compute_loss

    def dies_after_checkpoint(self, *args, **kwargs):
        if self.state.global_step == 5:
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", dies_after_checkpoint)
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(**options, output_dir=str(tmp_path / "resumed"))
    monkeypatch.setattr(DistillationTrainer, "compute_loss", original)
    with pytest.raises(ConfigError, match="--resume"):
        distill(**options, output_dir=str(tmp_path / "resumed"))
    distill(**options, output_dir=str(tmp_path / "resumed"), resume=True)

    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=key)
    # the student memory (training state, not exported) was restored from the checkpoint as well
    ckpt = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-8" / "model.safetensors")
    ckpt_full = load_file(tmp_path / "full" / "checkpoints" / "checkpoint-8" / "model.safetensors")
    torch.testing.assert_close(
        ckpt["terms.global.student_memory"], ckpt_full["terms.global.student_memory"], rtol=0, atol=1e-6
    )


def test_length_grouped_run_with_epoch_evaluation_resumes_exactly(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """Killed just after an epoch's last step and again inside the third epoch, a run with --group-by-length (whose
    batch order is drawn per epoch) and an evaluation after every epoch (which draws from the RNG) resumes, twice, to
    the weights and the learning curve of the uninterrupted run."""
    options = small(  # 48 examples, batch 8: 6 steps an epoch; checkpoints at steps 4, 8, 12 (epoch 2's end), 16
        glue_dir,
        teacher=str(mrpc_teacher),
        method="vkd",
        max_steps=18,
        save_steps=4,
        relation_every=0,
        eval_strategy="epoch",
        group_by_length=True,
    )
    full = distill(**options, output_dir=str(tmp_path / "full"))

    original, crash_at, started = DistillationTrainer.compute_loss, [13, 17], []

    def dies_after_checkpoints(self, *args, **kwargs):
        if not started or started[-1] is None:
            started[-1:] = [self.state.global_step]
        if crash_at and self.state.global_step == crash_at[0]:
            crash_at.pop(0)
            started.append(None)
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", dies_after_checkpoints)
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(**options, output_dir=str(tmp_path / "resumed"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(**options, output_dir=str(tmp_path / "resumed"), resume=True)
    resumed = distill(**options, output_dir=str(tmp_path / "resumed"), resume=True)
    assert started == [0, 12, 16]  # from the start, from epoch 2's last step, from inside epoch 3

    assert resumed["curve"] == full["curve"] and [p["epoch"] for p in full["curve"]] == [1.0, 2.0, 3.0]
    weights = load_file(tmp_path / "full" / "model.safetensors")
    for key, value in load_file(tmp_path / "resumed" / "model.safetensors").items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)


def test_teacher_is_frozen_and_gets_no_gradient(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    seen = {}
    original = DistillationTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen["teacher_training"] = self.teacher.model.training
        seen["teacher_in_model"] = any(p is q for p in model.parameters() for q in self.teacher.model.parameters())
        seen["grads"] = [p.grad for p in self.teacher.model.parameters() if p.grad is not None]
        seen["requires_grad"] = any(p.requires_grad for p in self.teacher.model.parameters())
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", spy)
    distill(**small(glue_dir, teacher=str(mrpc_teacher), output_dir=str(tmp_path / "vkd"), method="fsdil", max_steps=3))
    assert seen == {"teacher_training": False, "teacher_in_model": False, "grads": [], "requires_grad": False}


def test_non_finite_loss_stops_before_the_optimizer(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    from fsdkit.losses.terms.logits import LogitKD

    monkeypatch.setattr(LogitKD, "forward", lambda self, s, t, b: s.logits.sum() * float("nan"))
    with pytest.raises(FloatingPointError, match="loss term 'kd'.*step 0"):
        distill(
            **small(glue_dir, teacher=str(mrpc_teacher), output_dir=str(tmp_path / "nan"), method="vkd", max_steps=2)
        )


def test_different_tokenizers_are_refused(glue_dir, mrpc_teacher, tmp_path):
    from transformers import BertTokenizerFast

    teacher = tmp_path / "other-teacher"
    shutil.copytree(mrpc_teacher, teacher)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie"]) + "\n")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (teacher / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(teacher)
    with pytest.raises(ModelError, match="tokenizers differ"):
        distill(**small(glue_dir, teacher=str(teacher), output_dir=str(tmp_path / "x"), method="fsdi", max_steps=1))


def test_bad_run_options(glue_dir, mrpc_teacher, tmp_path):
    base = small(glue_dir, teacher=str(mrpc_teacher), output_dir=str(tmp_path / "y"), max_steps=1)
    with pytest.raises(ConfigError, match="batch-size ≥ 2"):
        distill(**{**base, "method": "fsdl", "batch_size": 1})
    with pytest.raises(ConfigError, match="unknown method 'fsdx'"):
        distill(**{**base, "method": "fsdx"})
    with pytest.raises(ModelError, match="does not exist"):
        distill(**{**base, "teacher": str(tmp_path / "missing" / "teacher")})
    with pytest.raises(ModelError, match="2 outputs but task stsb needs 1"):
        distill(**{**base, "task": "stsb"})


@pytest.mark.parametrize("method", ["fsdil", "minilm"])  # hidden states; attention maps (from cached queries and keys)
def test_teacher_cache_gives_the_same_run_as_the_live_teacher(glue_dir, mrpc_teacher, tmp_path, method):
    options = small(glue_dir, teacher=str(mrpc_teacher), method=method, max_steps=4)
    records = [distill(**options, output_dir=str(tmp_path / "live"))]
    records += [
        distill(**options, output_dir=str(tmp_path / name), teacher_cache=str(tmp_path / "cache"))
        for name in ("cached", "cached-again")
    ]
    (cache,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]  # built once, reused by the second run
    assert [r["teacher_source"] for r in records] == ["live", f"cache {cache.name}", f"cache {cache.name}"]

    def losses(name):
        history = json.loads((tmp_path / name / "log_history.json").read_text())
        return [{k: v for k, v in h.items() if k.startswith("loss")} for h in history if "loss" in h]

    live = losses("live")
    for name in ("cached", "cached-again"):
        for a, b in zip(losses(name), live, strict=True):
            assert a.keys() == b.keys()
            for key in a:  # logged terms are rounded to 6 decimals: one unit of 1e-6 besides float noise
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=2e-6), key


def test_an_fsd_run_with_a_teacher_cache_makes_one_teacher_pass(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """With --teacher-cache, the automatic teacher memory reads its rows from the cache that the run then trains
    from: one cache (one pass of the teacher over the training set), and the memory of a live encoding."""
    import fsdkit.memory.build as build_module
    from fsdkit.memory import TeacherMemory

    def no_live_teacher(*args, **kwargs):
        raise AssertionError("the memory build ran the teacher although the teacher-output cache has its rows")

    options = small(glue_dir, teacher=str(mrpc_teacher), method="fsd", max_steps=1, memory_clusters=3, relation_every=0)
    with monkeypatch.context() as patch:
        patch.setattr(build_module, "forward_features", no_live_teacher)
        distill(**options, output_dir=str(tmp_path / "cached"), teacher_cache=str(tmp_path / "cache"))
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1
    build_memory(
        teacher=str(mrpc_teacher),
        task="mrpc",
        data_dir=str(glue_dir),
        output_dir=str(tmp_path / "live"),
        n_clusters=3,
        max_length=64,
        max_train_samples=48,
        seed=42,
        progress=False,
    )
    cached, live = TeacherMemory.load(tmp_path / "cached" / "memory"), TeacherMemory.load(tmp_path / "live")
    assert cached.metadata["cluster_sizes"] == live.metadata["cluster_sizes"]
    assert torch.allclose(cached.centroids, live.centroids, atol=1e-4)


def test_a_method_without_teacher_terms_runs_without_a_teacher(glue_dir, tmp_path):
    """--method nds (the task loss alone) asks for no --teacher; a method with teacher terms does, naming itself."""
    out = tmp_path / "nds"
    record = distill(**small(glue_dir, output_dir=str(out), method="nds", max_steps=2, relation_every=0))
    assert record["teacher"] is None and [t["label"] for t in record["terms"]] == ["task"]
    assert "- Teacher: none" in (out / "README.md").read_text()
    with pytest.raises(ConfigError, match="--teacher is required by --method vkd"):
        distill(**small(glue_dir, output_dir=str(tmp_path / "vkd"), method="vkd", max_steps=1))


def test_student_initialised_from_the_teacher(glue_dir, mrpc_teacher, tmp_path):
    """--student teacher: the student takes layers 0 and 2 and the fine-tuned head of the teacher (recorded)."""
    record = distill(
        **small(
            glue_dir,
            teacher=str(mrpc_teacher),
            output_dir=str(tmp_path / "s"),
            method="nds",
            student="teacher",
            student_layers=[0, 2],
            max_steps=1,
            learning_rate=1e-12,
            relation_every=0,
        )
    )
    assert record["student_init"] == "teacher" and record["student_layers"] == [0, 2]
    teacher, student = load_file(mrpc_teacher / "model.safetensors"), load_file(tmp_path / "s" / "model.safetensors")
    for key in ("classifier.weight", "bert.encoder.layer.1.output.dense.weight"):
        source = key.replace("layer.1.", "layer.2.")
        torch.testing.assert_close(student[key], teacher[source], rtol=0, atol=1e-6)


def test_a_seeded_run_repeated_gives_the_same_curve(glue_dir, mrpc_teacher, tmp_path):
    """The regime study's premise: the dev curve (--eval-strategy epoch) of a seeded run is reproducible."""
    options = small(
        glue_dir,
        teacher=str(mrpc_teacher),
        method="vkd",
        student="teacher",
        epochs=2,
        learning_rate=1e-4,
        eval_strategy="epoch",
        relation_every=0,
        seed=3,
    )
    first = distill(**options, output_dir=str(tmp_path / "a"))["curve"]
    second = distill(**options, output_dir=str(tmp_path / "b"))["curve"]
    assert [p["epoch"] for p in first] == [1.0, 2.0]
    assert first == second


def test_losses_by_epoch_averages_each_logged_term_and_part_per_epoch():
    from fsdkit.training.epoch_eval import losses_by_epoch

    history = [
        {"loss": 4.0, "loss_global": 3.0, "loss_global_distance": 2.0, "epoch": 0.5, "learning_rate": 1e-4},
        {"loss": 2.0, "loss_global": 1.0, "loss_global_distance": 1.0, "epoch": 1.0},
        {"epoch": 1.0, "step": 4, "eval_split": "validation", "eval_loss_like": 9.0},  # a curve point
        {"loss": 1.0, "loss_global": 0.5, "loss_global_distance": 0.25, "epoch": 1.5},
        {"train_runtime": 3.0, "epoch": 2.0},
    ]
    assert losses_by_epoch(history) == [
        {"epoch": 1, "loss": 3.0, "loss_global": 2.0, "loss_global_distance": 1.5},
        {"epoch": 2, "loss": 1.0, "loss_global": 0.5, "loss_global_distance": 0.25},
    ]


def test_a_term_at_weight_zero_is_not_built_so_the_run_is_the_method_without_it(glue_dir, mrpc_teacher, tmp_path):
    """A sweep's "off" nests a method's parts: MiniLM at weight 0 trains exactly as VKD (a built MiniLM term switched
    both models to eager attention), and FSD with λ_L = λ_G = 0 exactly as FSDI (a built local term asked for
    batches of 2 or more: the last, short batch was dropped), without a teacher memory for its global term; the
    record still lists the terms at weight 0, and their names and options are still checked."""
    options = small(glue_dir, teacher=str(mrpc_teacher), max_train_samples=45, epochs=1, relation_every=0)
    pairs = {
        "minilm": ({"method": "vkd"}, {"method": "minilm", "lambda_minilm": 0.0}),
        "fsd": (
            {"method": "fsdi", "lambda_intra": 3.0},
            {"method": "fsd", "lambda_intra": 3.0, "lambda_local": 0.0, "lambda_global": 0.0},
        ),
    }
    for name, (part, off) in pairs.items():
        records = [distill(**options, **o, output_dir=str(tmp_path / f"{name}-{i}")) for i, o in enumerate((part, off))]
        assert records[0]["global_steps"] == records[1]["global_steps"] == 6, (
            name
        )  # 45 rows: 5 batches of 8 and one of 5
        weights = [load_file(tmp_path / f"{name}-{i}" / "model.safetensors") for i in (0, 1)]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), name
        assert {t["label"]: t["weight"] for t in records[1]["terms"]}.get("local" if name == "fsd" else "minilm") == 0
    assert not (tmp_path / "fsd-1" / "memory").exists()  # λ_G = 0: no teacher memory built for a term not built
    with pytest.raises(ConfigError, match="unknown loss 'minlm'"):  # a term at weight 0 is still checked
        distill(**options, method="vkd", losses=[{"name": "minlm", "weight": 0}], output_dir=str(tmp_path / "typo"))
