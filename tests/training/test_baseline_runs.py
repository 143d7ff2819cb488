"""Every baseline method end to end on a small MRPC subset: it trains, logs each of its terms, and the staged
schedules pick their terms from the global step, also after a resume in the middle of a stage."""

from __future__ import annotations

import json
import math

import pytest

from fsdkit import distill
from fsdkit.errors import ConfigError, ModelError
from fsdkit.methods import get_method
from fsdkit.training.trainer import DistillationTrainer

pytestmark = pytest.mark.glue

METHOD_LABELS = {
    "pkd": {"task", "kd", "pkd"},
    "rkd": {"task", "kd", "rkd"},
    "minilm": {"task", "kd", "minilm"},
    "internal-all": {"task", "kd", "internal_1", "internal_2", "internal_3"},
    "internal-pid": {"task", "kd", "internal_1", "internal_2", "internal_3"},
    "internal-sid": {"task", "kd", "internal_1", "internal_2", "internal_3"},
    "relation-cka": {"task", "kd", "relation_cka"},
    "geometry-procrustes": {"task", "kd", "intra", "local"},
    "geometry-gram": {"task", "kd", "intra", "local"},
    "fsd-procrustes": {"task", "kd", "intra", "local", "global"},
}


def tiny(glue_dir, teacher, **overrides):
    options = dict(
        task="mrpc",
        data_dir=str(glue_dir),
        teacher=str(teacher),
        batch_size=8,
        max_train_samples=32,
        max_eval_samples=16,
        max_length=64,
        max_steps=4,
        logging_steps=1,
        progress=False,
        relation_every=0,
    )
    options.update(overrides)
    if get_method(options.get("method", "vkd")).needs_memory:
        options.setdefault("memory_clusters", 4)
    return options


def logged_terms(out) -> list[dict]:
    return [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]


@pytest.mark.parametrize("method", sorted(METHOD_LABELS))
def test_method_runs_and_logs_its_terms(glue_dir, mrpc_teacher, tmp_path, method):
    out = tmp_path / method
    record = distill(**tiny(glue_dir, mrpc_teacher, output_dir=str(out), method=method))
    history = logged_terms(out)
    logged = {key.removeprefix("loss_") for h in history for key in h if key.startswith("loss_")}
    parts = {f"global_{part}" for part in ("distance", "cosine", "centroid")}  # the memory term's parts
    assert logged - parts == METHOD_LABELS[method]
    assert parts <= logged if "global" in METHOD_LABELS[method] else not parts & logged
    assert all(math.isfinite(v) for h in history for k, v in h.items() if k.startswith("loss"))
    assert {t["label"] for t in record["terms"]} == METHOD_LABELS[method]
    assert 0.0 <= record["metrics"]["validation"]["accuracy"] <= 1.0
    if method in ("internal-pid", "internal-sid"):
        # 4 steps, 4 stages (3 pairs + classification): one step per stage, each logged on its own
        active = [sorted(k.removeprefix("loss_") for k in h if k.startswith("loss_")) for h in history]
        pid = [["internal_1"], ["internal_2"], ["internal_3"], ["kd", "task"]]
        sid = [["internal_1"], ["internal_1", "internal_2"], ["internal_1", "internal_2", "internal_3"], ["kd", "task"]]
        assert active == (pid if method == "internal-pid" else sid)


def test_extra_losses_compose_with_a_method_and_log_separately(glue_dir, mrpc_teacher, tmp_path):
    """method=fsd plus --loss structure:5:view=local,similarity=procrustes: six terms, each logged on its own."""
    from fsdkit.config import parse_loss_flag

    out = tmp_path / "composed"
    extras = [parse_loss_flag(flag) for flag in ("structure:5:view=local,similarity=procrustes", "pkd:10:layers=last")]
    record = distill(**tiny(glue_dir, mrpc_teacher, output_dir=str(out), method="fsd", losses=extras))
    history = logged_terms(out)
    assert {"loss_task", "loss_kd", "loss_intra", "loss_local", "loss_global", "loss_structure", "loss_pkd"} <= set(
        history[0]
    )
    terms = {t["label"]: (t["name"], t["weight"]) for t in record["terms"]}
    assert terms["structure"] == ("structure", 5.0) and terms["pkd"] == ("pkd", 10.0)
    assert history[0]["loss_structure"] != history[0]["loss_local"]  # Procrustes vs CKA on the same view


def test_staged_run_resumed_mid_stage_continues_in_that_stage(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """internal-pid with 2 layer pairs over 6 steps has 3 stages of 2 steps. A run that dies after its step-3
    checkpoint (the middle of stage 1) resumes at step 3 with stage 1's term, then moves on to VKD alone. Without
    warm-up, each stage's learning rate restarts at the peak and decays linearly (lr, lr/2), also after the resume."""
    options = tiny(
        glue_dir,
        mrpc_teacher,
        method="internal-pid",
        internal_layers="1:2;3:6",
        max_steps=6,
        save_steps=3,
        output_dir=str(tmp_path / "run"),
        warmup_ratio=0.0,
        learning_rate=1e-4,
    )
    original = DistillationTrainer.compute_loss
    calls = []

    def dies_after_checkpoint(self, model, *args, **kwargs):
        if self.state.global_step == 3:
            raise RuntimeError("simulated crash")
        return spy(self, model, *args, **kwargs)

    def spy(self, model, *args, **kwargs):
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step is taken with
        calls.append((self.state.global_step, sorted(spec.label for spec, _ in self.active_terms(model)), lr))
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", dies_after_checkpoint)
    with pytest.raises(RuntimeError, match="simulated crash"):
        distill(**options)
    assert calls == [(0, ["internal_1"], 1e-4), (1, ["internal_1"], 5e-5), (2, ["internal_2"], 1e-4)]

    calls.clear()
    monkeypatch.setattr(DistillationTrainer, "compute_loss", spy)
    record = distill(**options, resume=True)
    assert calls == [(3, ["internal_2"], 5e-5), (4, ["kd", "task"], 1e-4), (5, ["kd", "task"], 5e-5)]
    assert record["global_steps"] == 6


def test_staged_run_with_a_global_schedule_decays_once_over_the_run(glue_dir, mrpc_teacher, tmp_path, monkeypatch):
    """stage_lr='global' keeps transformers' one linear decay: lr · (6 − t) / 6 at step t, whatever the stage."""
    options = tiny(
        glue_dir,
        mrpc_teacher,
        method="internal-pid",
        internal_layers="1:2;3:6",
        max_steps=6,
        output_dir=str(tmp_path / "run"),
        warmup_ratio=0.0,
        learning_rate=1e-4,
        stage_lr="global",
    )
    original = DistillationTrainer.compute_loss
    rates = []

    def spy(self, model, *args, **kwargs):
        rates.append(self.optimizer.param_groups[0]["lr"])
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "compute_loss", spy)
    distill(**options)
    assert rates == pytest.approx([1e-4 * (6 - t) / 6 for t in range(6)])
    with pytest.raises(ConfigError, match="--stage-lr must be one of restart, global"):
        distill(**{**options, "stage_lr": "cosine", "output_dir": str(tmp_path / "other")})


ALL_METHODS = ["nds", "vkd", "fsdi", "fsdl", "fsdg", "fsdil", "fsd", *sorted(METHOD_LABELS)]
NARROW = "hidden_size=192,num_hidden_layers=3,num_attention_heads=6,intermediate_size=384"


@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_student_of_another_width_trains_or_is_refused_up_front(glue_dir, mrpc_teacher, tmp_path, method):
    """--student-config: a fresh 3-layer student of width 192 and 6 heads from the 384-wide, 12-head teacher.
    CKA, Procrustes and Gram compare different widths; PKD and internal KD learn projections; the attention-map
    losses (MiniLM, internal KD) need equal head counts and are refused before training, saying so."""
    options = tiny(
        glue_dir, mrpc_teacher, output_dir=str(tmp_path / method), method=method, student_config=NARROW, max_steps=2
    )
    if method in ("minilm", "internal-all", "internal-pid", "internal-sid"):
        with pytest.raises(ModelError, match="same number of attention heads|heads"):
            distill(**options)
        assert not (tmp_path / method / "checkpoints").exists()
        return
    record = distill(**options)
    assert record["student_init"] == "config" and record["global_steps"] == 2
    from transformers import AutoConfig

    exported = AutoConfig.from_pretrained(tmp_path / method)
    assert (exported.hidden_size, exported.num_hidden_layers, exported.num_attention_heads) == (192, 3, 6)
    assert "A fresh student of shape" in (tmp_path / method / "README.md").read_text()
