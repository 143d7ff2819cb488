"""Method presets (fsdkit.methods: parts, fsd, baselines, registry): the terms each method builds from its typed
options, and the staged schedules of internal-representation KD (fsdkit.training.trainer's stage functions)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainerState, get_linear_schedule_with_warmup

from fsdkit.config import DistillConfig, make_config
from fsdkit.errors import ConfigError
from fsdkit.methods import get_method, run_terms
from fsdkit.training.trainer import DistillationTrainer, stage_of, stage_start, staged_linear_factor


def config(**values) -> DistillConfig:
    return make_config(DistillConfig, {"teacher": "t", **values})


def terms_of(method: str, **values) -> dict[str, tuple]:
    return {s.label: (s.name, s.weight, s.options, s.stages) for s in run_terms(config(method=method, **values))}


def test_baseline_presets():
    assert terms_of("pkd", alpha=0.3)["pkd"] == ("pkd", 100.0, {"layers": "skip"}, None)
    assert terms_of("pkd")["task"][1] == 0.5 and terms_of("pkd")["kd"][1] == 0.5
    assert terms_of("rkd", lambda_rkd_angle=0)["rkd"] == (
        "rkd",
        1.0,
        {"distance_weight": 25.0, "angle_weight": 0.0},
        None,
    )
    assert set(terms_of("rkd", lambda_rkd_angle=0, lambda_rkd_distance=0)) == {"task", "kd"}  # both parts off: VKD
    assert terms_of("minilm", lambda_minilm=2)["minilm"] == ("minilm", 2.0, {}, None)
    assert terms_of("relation-cka")["relation_cka"] == ("relation_cka", 15.0, {}, None)
    for similarity in ("procrustes", "gram"):
        terms = terms_of(f"geometry-{similarity}", lambda_geometry=7)
        assert set(terms) == {"task", "kd", "intra", "local"}
        assert terms["intra"][:2] == ("structure", 7.0) and terms["intra"][2]["similarity"] == similarity
        assert terms["local"][2] == {"view": "local", "similarity": similarity, "pooling": "flatten"}
    fsd = terms_of("fsd-procrustes", memory="m")
    assert {label: t[2]["similarity"] for label, t in fsd.items() if "similarity" in t[2]} == {
        "intra": "procrustes",
        "local": "procrustes",
        "global": "procrustes",
    }
    assert get_method("fsd-procrustes").needs_memory and fsd["intra"][1] == 30.0


def test_pkd_layers_from_a_config_file_or_flag():
    assert config(method="pkd", pkd_layers=[[1, 2], [2, 4]]).method_options.pkd_layers == [[1, 2], [2, 4]]
    assert config(method="pkd", pkd_layers="1:2,2:4").method_options.pkd_layers == "1:2,2:4"
    with pytest.raises(ConfigError, match="pkd-layers"):
        config(method="pkd", pkd_layers=[["a"]])


def test_internal_schedules():
    """3 student layers, skip map: 3 pairs. PID trains pair k in stage k, SID pairs 1..k, VKD alone at the end."""
    stages = {label: spec[3] for label, spec in terms_of("internal-pid").items()}
    assert stages == {"internal_1": {0}, "internal_2": {1}, "internal_3": {2}, "task": {3}, "kd": {3}}
    stages = {label: spec[3] for label, spec in terms_of("internal-sid").items()}
    assert stages == {"internal_1": {0, 1, 2}, "internal_2": {1, 2}, "internal_3": {2}, "task": {3}, "kd": {3}}
    stages = {label: spec[3] for label, spec in terms_of("internal-all").items()}
    assert stages == dict.fromkeys(["task", "kd", "internal_1", "internal_2", "internal_3"])
    assert terms_of("internal-pid")["internal_2"][2] == {"layers": "skip", "pairs": [2]}
    pid, every = config(method="internal-pid"), config(method="internal-all")
    assert get_method("internal-pid").stages(pid.method_options, pid) == 4
    assert get_method("internal-all").stages(every.method_options, every) == 1
    for values, stages in [({"internal_layers": "1:2;3:6"}, 3), ({"student_layers": [0, 2, 4, 5]}, 5)]:
        sid = config(method="internal-sid", **values)
        assert get_method("internal-sid").stages(sid.method_options, sid) == stages


def test_stage_follows_the_global_step():
    assert [stage_of(step, 8, 4) for step in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [stage_of(step, 10, 3) for step in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert stage_of(5, 8, 1) == 0 and stage_of(8, 8, 4) == 3


def test_active_terms_follow_the_global_step_as_after_a_resume():
    """A trainer whose state was restored at global step g (as after --resume) selects the terms of g's stage."""
    specs = run_terms(config(method="internal-pid"))
    trainer = DistillationTrainer.__new__(DistillationTrainer)
    trainer.term_specs, trainer.n_stages = specs, 4
    model = SimpleNamespace(terms={s.label: s.name for s in specs})
    active = []
    for step in range(8):
        trainer.state = TrainerState(global_step=step, max_steps=8)
        active.append(sorted(spec.label for spec, _ in trainer.active_terms(model)))
    assert active == [["internal_1"]] * 2 + [["internal_2"]] * 2 + [["internal_3"]] * 2 + [["kd", "task"]] * 2


def test_staged_schedule_restarts_its_warm_up_and_decay_in_every_stage():
    """40 steps, 4 stages of 10, warm-up ratio 0.1 (one step): 0, then 10/9·(10 − u)/10 … in every stage."""
    factors = [staged_linear_factor(t, total_steps=40, n_stages=4, warmup_ratio=0.1) for t in range(40)]
    one_stage = [0.0] + [(10 - u) / 9 for u in range(1, 10)]
    assert factors == pytest.approx(one_stage * 4)
    assert [stage_start(s, 10, 3) for s in range(4)] == [0, 4, 7, 10]  # the stages of stage_of(·, 10, 3)


def _hf_linear_factors(total: int, warmup: int) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    scheduler = get_linear_schedule_with_warmup(torch.optim.SGD([parameter], lr=1.0), warmup, total)
    return [scheduler.lr_lambdas[0](t) for t in range(total)]


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 300), n_stages=st.integers(1, 6), ratio=st.sampled_from([0.0, 0.06, 0.1, 0.25]))
def test_each_stage_follows_transformers_linear_schedule_of_its_own_length(total, n_stages, ratio):
    """Restarted per stage, the factor at local step u of a stage of m steps is transformers' linear
    warm-up/decay schedule of m steps with ⌈ratio · m⌉ warm-up steps, at step u (one stage: the same schedule)."""
    factors = [staged_linear_factor(t, total_steps=total, n_stages=n_stages, warmup_ratio=ratio) for t in range(total)]
    starts = sorted({stage_start(s, total, n_stages) for s in range(n_stages + 1)})
    expected = []
    for begin, end in zip(starts, starts[1:]):
        expected += _hf_linear_factors(end - begin, int(np.ceil(ratio * (end - begin))))
    assert factors == pytest.approx(expected)
    assert all(0.0 <= f <= 1.0 for f in factors)
    assert [stage_of(t, total, n_stages) for t in starts[:-1]] == sorted(
        {stage_of(t, total, n_stages) for t in range(total)}
    )


def test_unknown_stage_schedule_is_refused():
    with pytest.raises(ValueError, match="stage_lr must be one of"):
        DistillationTrainer(model=None, args=None, term_specs=[], stage_lr="cosine")


def test_each_method_holds_its_own_typed_options():
    """A run's method options are an instance of its method's options class, composed of the shared parts: one
    declaration per setting (alpha is the KD part's wherever it appears), another method's setting refused, a method
    change through ``replace`` keeps the shared settings and drops the others."""
    from fsdkit.methods import KD, METHODS, Global, Intra, all_settings
    from fsdkit.methods.fsd import FSDOptions
    from fsdkit.settings import settings_of

    fsd = config(method="fsd", alpha=0.2, lambda_intra=3)
    assert isinstance(fsd.method_options, FSDOptions) and isinstance(fsd.method_options, (KD, Intra, Global))
    assert (fsd.method_options.alpha, fsd.method_options.lambda_intra, fsd.method_options.lambda_local) == (0.2, 3, 30)
    for method in METHODS.values():  # every setting of every method is the one declaration of the table
        assert all(
            all_settings()[name] is declared or all_settings()[name] == declared
            for name, declared in settings_of(method.options).items()
        )
    assert set(settings_of(METHODS["nds"].options)) == set()
    assert {"alpha", "temperature"} <= set(settings_of(METHODS["pkd"].options))
    vkd = fsd.replace(method="vkd")
    assert vars(vkd.method_options) == {"alpha": 0.2, "temperature": 5.0}
    with pytest.raises(ConfigError, match="--lambda-intra is not a setting of --method vkd; it is one of fsdi"):
        config(method="vkd", lambda_intra=3)
    with pytest.raises(ConfigError, match="--alpha is not a setting of --method nds"):
        config(method="nds", alpha=0.5)
    assert not hasattr(fsd, "lambda_intra")  # no attribute forwarding: the options are read where they live


def test_a_config_built_directly_is_checked_at_the_entry_point():
    """``DistillConfig(...)`` built without make_config holds typed options at once, and an entry point checks its
    values against their declared ranges like any other source."""
    from fsdkit.config import as_config
    from fsdkit.methods.baselines import PKDOptions

    direct = DistillConfig(method="pkd", method_options={"beta_pkd": 3.0})
    assert isinstance(direct.method_options, PKDOptions) and direct.method_options.beta_pkd == 3.0
    with pytest.raises(ConfigError, match="--batch-size must be ≥ 1, got 0"):
        as_config(DistillConfig, DistillConfig(batch_size=0))
    with pytest.raises(ConfigError, match="--beta-pkd must be ≥ 0, got -1"):
        DistillConfig(method="pkd", method_options={"beta_pkd": -1.0})
