"""One contract over every registered loss term (pytorch-metric-learning style): a term registered anywhere —
a built-in or a test's toy — is checked the moment it is registered.

For each term, on the features of real forward passes of a tiny BERT teacher (4 layers) and student (2 layers),
float64, batch of 3 padded sentences: a finite scalar; finite gradients that reach the student's features;
determinism; padding invariance (the same batch padded 5 tokens longer gives the same value, for every term
but those whose definition sees padded positions); a float64 ``gradcheck`` (fast mode) through the student's
features; and the ``Config example::`` of its docstring builds it. See docs/architecture.md, "Adding a loss".
"""

from __future__ import annotations

import textwrap

import pytest
import torch
import yaml
from torch.autograd import gradcheck

from fsdkit.features import FeatureRequest, Features, forward_features
from fsdkit.losses import TermContext
from fsdkit.losses.catalog import TERMS, build_term
from fsdkit.memory import TeacherMemory

SENTENCES = ["a gripping, beautifully acted film", "dull", "the plot never quite comes together at all"]


@pytest.fixture(scope="module")
def models(minilm_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)

    def tiny(layers: int, seed: int):
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=16,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=32,
            num_labels=2,
            attn_implementation="eager",
        )
        return BertForSequenceClassification(config).double().eval()

    return {"tokenizer": tokenizer, "teacher": tiny(4, 0), "student": tiny(2, 1)}


def batch_of(tokenizer, extra_padding: int = 0) -> dict:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    if extra_padding:
        batch = {k: torch.nn.functional.pad(v, (0, extra_padding)) for k, v in batch.items()}
    return {**batch, "labels": torch.tensor([1, 0, 1])}


def options_for(name: str, models) -> dict:
    if name == "memory":  # a teacher memory of the tiny teacher's pooled rows
        return {
            "memory": TeacherMemory(
                torch.randn(3, 8, generator=torch.Generator().manual_seed(0)),
                {"layer": "penultimate", "pooling": "mean", "max_length": None, "hidden_size": 8},
            )
        }
    return {}


def features(models, name: str, term, extra_padding: int = 0) -> tuple[Features, Features, dict]:
    batch = batch_of(models["tokenizer"], extra_padding)
    request = term.request() | FeatureRequest(hidden_states=True)
    with torch.no_grad():
        teacher = forward_features(models["teacher"], batch, request)
        student = forward_features(models["student"], batch, request)
    return student, teacher, batch


def leaves(student: Features) -> tuple[list[torch.Tensor], callable]:
    """The student's float tensors as leaves requiring grad, and a function rebuilding Features from them."""
    tensors = [student.logits, *student.hidden_states, *(student.attentions or ()), *student.values.values()]
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    n_hidden, n_att = len(student.hidden_states), len(student.attentions or ())

    def rebuild(*ts) -> Features:
        return Features(
            logits=ts[0],
            attention_mask=student.attention_mask,
            hidden_states=tuple(ts[1 : 1 + n_hidden]),
            attentions=tuple(ts[1 + n_hidden : 1 + n_hidden + n_att]) if student.attentions else None,
            values=dict(zip(student.values, ts[1 + n_hidden + n_att :])),
        )

    return tensors, rebuild


def make(name: str, models):
    ctx = TermContext(models["student"].config, models["teacher"].config, _task(), max_length=16)
    torch.manual_seed(0)
    return build_term(name, ctx, options_for(name, models)).double()


def _task():
    from fsdkit.data import get_task

    return get_task("sst2")


@pytest.mark.parametrize("name", sorted(TERMS))
def test_term_contract(name, models):
    check_contract(name, models)


def check_contract(name: str, models) -> None:
    term = make(name, models)
    student, teacher, batch = features(models, name, term)
    tensors, rebuild = leaves(student)

    value = term(rebuild(*tensors), teacher, batch)
    assert value.dim() == 0 and torch.isfinite(value), f"{name}: {value}"
    value.backward()
    grads = [t.grad for t in tensors if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), f"{name}: no or non-finite gradient"
    assert any(g.abs().sum() > 0 for g in grads), f"{name}: the term cannot move the student's features"

    again = term(rebuild(*tensors), teacher, batch)
    assert torch.equal(again.detach(), value.detach()), f"{name} is not deterministic"

    padded_student, padded_teacher, padded_batch = features(models, name, term, extra_padding=5)
    padded = term(padded_student, padded_teacher, padded_batch)
    torch.testing.assert_close(padded, value.detach(), rtol=1e-6, atol=1e-8, msg=f"{name} depends on padding")

    used = [t for t in tensors if t.grad is not None and t.grad.abs().sum() > 0]
    fixed = [t.detach() for t in tensors]

    def f(*inputs):
        ts = list(fixed)
        for i, t in zip([j for j, t in enumerate(tensors) if t.grad is not None and t.grad.abs().sum() > 0], inputs):
            ts[i] = t
        return term(rebuild(*ts), teacher, batch)

    assert gradcheck(
        f, tuple(u.detach().clone().requires_grad_(True) for u in used), fast_mode=True, eps=1e-6, atol=1e-5
    ), name


@pytest.mark.parametrize("name", sorted(TERMS))
def test_config_example_in_the_docstring_builds_the_term(name, models):
    doc = TERMS[name].__doc__ or ""
    assert "Config example::" in doc, f"{name}: its docstring has no 'Config example::'"
    block = textwrap.dedent(doc.split("Config example::", 1)[1].split("\n\n", 2)[1])
    (entry,) = yaml.safe_load(block)["losses"]
    assert entry.pop("name") == name and float(entry.pop("weight")) > 0
    entry.pop("label", None)
    if name == "memory":
        entry["memory"] = options_for("memory", models)["memory"]
    ctx = TermContext(models["student"].config, models["teacher"].config, _task(), max_length=16)
    build_term(name, ctx, entry)


def test_a_toy_loss_is_one_class_and_one_registration(models, tmp_path, capsys):
    """Registered in a test: it passes the contract, `fsdkit methods` lists it with its options, and `--loss` and
    config files reach it with no other edit. A toy that reads padded positions fails the contract."""
    from fsdkit.cli import _config_from_args, build_parser
    from fsdkit.cli import main as cli_main
    from fsdkit.config import DistillConfig
    from fsdkit.losses import LossTerm, register_term
    from fsdkit.methods import run_terms

    class ToyLogitNorm(LossTerm):
        """``scale · mean(z_S²)``.

        Config example::

            losses:
              - {name: toy, weight: 2.0, scale: 3.0}
        """

        def __init__(self, ctx, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def forward(self, student, teacher, batch):
            return self.scale * student.logits.square().mean()

    class ToyPaddingReader(ToyLogitNorm):
        """Sums hidden states over every position, padding included: not a valid structure loss."""

        def request(self):
            return FeatureRequest(hidden_states=True)

        def forward(self, student, teacher, batch):
            return student.hidden(-1).sum(1).square().mean()

    register_term("toy")(ToyLogitNorm)
    register_term("toy_padding")(ToyPaddingReader)
    try:
        check_contract("toy", models)
        test_config_example_in_the_docstring_builds_the_term("toy", models)
        with pytest.raises(AssertionError, match="toy_padding depends on padding"):
            check_contract("toy_padding", models)
        assert cli_main(["methods", "--losses"]) == 0
        assert "toy" in capsys.readouterr().out
        args = build_parser().parse_args(["distill", "--teacher", "t", "--output-dir", "o", "--loss", "toy:2:scale=3"])
        from_flag = run_terms(_config_from_args(args, DistillConfig, "distill"))[-1]
        config = tmp_path / "run.yaml"
        config.write_text("losses:\n  - {name: toy, weight: 2, scale: 3}\n")
        args = build_parser().parse_args(["distill", "--teacher", "t", "--output-dir", "o", "--config", str(config)])
        from_file = run_terms(_config_from_args(args, DistillConfig, "distill"))[-1]
        assert (from_flag.name, from_flag.weight, from_flag.options) == ("toy", 2.0, {"scale": 3})
        assert (from_file.name, from_file.weight, from_file.options) == ("toy", 2.0, {"scale": 3})
    finally:
        TERMS.pop("toy", None)
        TERMS.pop("toy_padding", None)


def test_a_toy_method_declares_its_options_once(tmp_path, capsys):
    """A method registered in a test with its options class (the KD part and one setting of its own): `fsdkit
    methods` prints its default, `fsdkit distill` takes it as a flag and a config key, the range check refuses a bad
    value, the config holds it typed, and other methods refuse it — no edit of DistillConfig, the CLI or the
    validation."""
    from dataclasses import dataclass

    from fsdkit.cli import _config_from_args, build_parser
    from fsdkit.cli import main as cli_main
    from fsdkit.config import DistillConfig, make_config
    from fsdkit.errors import ConfigError
    from fsdkit.methods import KD, Method, TermSpec, register_method, run_terms, unregister_method, vkd_terms
    from fsdkit.settings import setting

    @dataclass
    class ToyOptions(KD):
        lambda_toy: float = setting(2.5, "toy: weight of the toy term", low=0, low_open=True)

    register_method(
        Method(
            "toy-method",
            "VKD + the toy term",
            ToyOptions,
            lambda o, c: vkd_terms(o) + [TermSpec("kd", o.lambda_toy, {"temperature": 1.0}, "toy")],
        )
    )
    try:
        assert cli_main(["methods"]) == 0
        out = capsys.readouterr().out
        assert "toy-method" in out and "--lambda-toy 2.5; > 0: toy: weight of the toy term" in out
        args = build_parser().parse_args(["distill", "--method", "toy-method", "--lambda-toy", "4"])
        assert run_terms(_config_from_args(args, DistillConfig, "distill"))[-1].weight == 4.0
        config_file = tmp_path / "run.yaml"
        config_file.write_text("method: toy-method\nlambda-toy: 0.5\n")
        args = build_parser().parse_args(["distill", "--config", str(config_file)])
        config = _config_from_args(args, DistillConfig, "distill")
        assert config.method_options.lambda_toy == 0.5 and run_terms(config)[-1].weight == 0.5
        assert make_config(DistillConfig, method="toy-method").method_options.lambda_toy == 2.5  # the default
        with pytest.raises(ConfigError, match="--lambda-toy must be > 0, got 0.0"):
            make_config(DistillConfig, method="toy-method", lambda_toy=0)
        with pytest.raises(ConfigError, match="--lambda-toy is not a setting of --method vkd; it is one of toy-method"):
            make_config(DistillConfig, method="vkd", lambda_toy=1.0)
    finally:
        unregister_method("toy-method")
    with pytest.raises(ConfigError, match="unknown option"):
        make_config(DistillConfig, lambda_toy=1.0)
