"""The command line: flags and config files map onto the same options; bad input exits 2 with a clear message."""

from __future__ import annotations

import json

import pytest

from fsdkit.cli import build_parser, main
from fsdkit.config import DistillConfig, make_config, read_config_file
from fsdkit.errors import ConfigError


def test_config_file_keys_match_flags_and_flags_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: fsd\nstudent-layers: [0, 2, 4]\nlambda_intra: 10\nepochs: 2\nlosss:\n")
    with pytest.raises(ConfigError, match=r"unknown key 'losss' for 'fsdkit distill'; known keys: .*losses"):
        read_config_file(cfg, DistillConfig, "distill")
    cfg.write_text(
        "method: fsd\nstudent-layers: [0, 2, 4]\nlambda_intra: 10\nepochs: 2\n"
        "losses:\n  - {name: structure, weight: 5, view: local, similarity: procrustes}\n"
    )
    args = build_parser().parse_args(
        [
            "distill",
            "--config",
            str(cfg),
            "--epochs",
            "3",
            "--teacher",
            "t",
            "--output-dir",
            "o",
            "--loss",
            "rkd:1:distance_weight=2",
        ]
    )
    from fsdkit.cli import _config_from_args

    config = _config_from_args(args, DistillConfig, "distill")
    assert config.method == "fsd" and config.student_layers == [0, 2, 4] and config.method_options.lambda_intra == 10.0
    assert config.epochs == 3.0  # the flag wins over the file
    assert config.losses == [{"name": "rkd", "weight": "1", "distance_weight": 2}]


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: three\n", "--epochs: expected a number, got 'three'"),
        ("resume: maybe\n", "--resume: expected true or false"),
        ("batch-size: 2.5\n", "--batch-size: expected an integer"),
        ("teacher-cache: yes\n", "--teacher-cache: expected a string, got True"),
        ("- a\n- b\n", "expected a mapping"),
        ("epochs: [\n", "not valid YAML"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_config_file(cfg, DistillConfig, "distill")


def test_json_config_and_missing_file(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"task": "rte", "max-steps": 10}))
    assert read_config_file(cfg, DistillConfig, "distill") == {"task": "rte", "max_steps": 10}
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml", DistillConfig, "distill")


def test_make_config_rejects_unknown_options():
    with pytest.raises(ConfigError, match="unknown option"):
        make_config(DistillConfig, lr=1)


def test_a_flag_taking_text_refuses_a_bool():
    """``teacher_cache=True`` from Python is not a folder named 'True' (nor is a YAML ``output-dir: no``)."""
    with pytest.raises(ConfigError, match="--teacher-cache: expected a string, got True"):
        make_config(DistillConfig, teacher_cache=True)


def test_methods_lists_methods_and_losses(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("vkd", "fsdi", "fsdl", "fsdg", "fsdil", "fsd", "nds", "structure", "memory", "kd", "task"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--task", "squad", "--output-dir", "{tmp}/o"], "unknown task 'squad'"),
        (["distill", "--teacher", "{tmp}/no/teacher", "--output-dir", "{tmp}/o", "--task", "mrpc"], "does not exist"),
        (["distill", "--output-dir", "{tmp}/o"], "--teacher is required"),
        (
            ["finetune", "--task", "mrpc", "--data-dir", "{tmp}/noglue", "--output-dir", "{tmp}/o", "--max-steps", "1"],
            "MRPC",
        ),
        (["evaluate", "{tmp}/missing-model", "--task", "mrpc"], "does not exist"),
        (["finetune", "--epochs", "0", "--output-dir", "{tmp}/o"], "--epochs > 0 or --max-steps > 0"),
        (
            ["distill", "--teacher", "x", "--output-dir", "{tmp}/o", "--alpha", "2"],
            "--alpha must be ≥ 0 and ≤ 1, got 2.0",
        ),
        (["distill", "--teacher", "x", "--output-dir", "{tmp}/o", "--loss", "structure"], "expected NAME:WEIGHT"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_every_command_takes_the_common_flags():
    parser = build_parser()
    for command in (["finetune"], ["distill"], ["demo"]):
        args = parser.parse_args(
            command
            + [
                "--data-dir",
                "d",
                "--output-dir",
                "o",
                "--seed",
                "3",
                "--max-steps",
                "5",
                "--epochs",
                "2",
                "--config",
                "c.yaml",
            ]
        )
        assert args.data_dir == "d" and args.seed == "3" and args.config == "c.yaml"
    args = parser.parse_args(
        ["memory", "build", "--data-dir", "d", "--output-dir", "o", "--seed", "1", "--config", "c.json"]
    )
    assert args.output_dir == "o"
    args = parser.parse_args(["evaluate", "model", "--task", "rte", "--output", "m.json", "--data-dir", "d"])
    assert args.model == "model" and args.output == "m.json"


def test_shipped_configs_are_valid():
    from pathlib import Path

    from fsdkit.config import FinetuneConfig, MemoryConfig

    classes = {
        "finetune": (FinetuneConfig, "finetune"),
        "memory": (MemoryConfig, "memory build"),
        "distill": (DistillConfig, "distill"),
    }
    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert files
    for path in files:
        cls, command = classes[path.name.split("-")[0]]
        make_config(cls, read_config_file(path, cls, command))


def test_repeatable_loss_flag_is_spelled_loss_in_help():
    distill = build_parser()._subparsers._group_actions[0].choices["distill"]
    flags = {s for action in distill._actions for s in action.option_strings}
    assert "--loss" in flags and "--losse" not in flags
    assert "--loss SPEC" in distill.format_help()


def test_help_version_and_methods_import_neither_torch_nor_transformers():
    """`fsdkit --help`, `--version` and `fsdkit methods` answer at once: the package namespace is lazy and the method
    presets with their declared options are torch-free, so building the parser (every command's flags, the methods'
    options included) and listing the methods load no torch, transformers or matplotlib, and the similarities load
    no Trainer or matplotlib."""
    import subprocess
    import sys

    probe = (
        "import sys, io, contextlib; from fsdkit.cli import build_parser, main; build_parser(); import fsdkit; "
        "fsdkit.__version__; contextlib.redirect_stdout(io.StringIO()).__enter__(); main(['methods']); "
        "sys.stdout = sys.__stdout__; "
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules)); "
        "from fsdkit import linear_cka; "
        "print(sorted(m for m in ('transformers', 'matplotlib', 'fsdkit.training.trainer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"], out


def test_every_command_prints_its_help(capsys):
    """`fsdkit COMMAND --help` renders for every command (a literal % in a help text once broke `fsdkit demo --help`)."""
    from fsdkit.cli import build_parser

    parser = build_parser()
    commands = [name for action in parser._subparsers._group_actions for name in action.choices]
    assert {"finetune", "distill", "demo", "memory", "methods", "sweep"} <= set(commands)
    for command in [*commands, "memory build"]:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([*command.split(), "--help"])
        assert exit_info.value.code == 0, command
        assert "usage: fsdkit" in capsys.readouterr().out


def test_a_kill_unwinds_like_ctrl_c():
    """Once installed, SIGTERM raises KeyboardInterrupt: staged artifacts are removed and checkpoints kept."""
    import os
    import signal

    from fsdkit.cli import unwind_on_termination

    previous = signal.getsignal(signal.SIGTERM)
    try:
        unwind_on_termination()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 1)  # the handler runs before this returns
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    "module, function, cls",
    [
        ("fsdkit.training.run", "finetune", "FinetuneConfig"),
        ("fsdkit.training.run", "distill", "DistillConfig"),
        ("fsdkit.training.teacher_memory", "build_memory", "MemoryConfig"),
        ("fsdkit.evaluation", "evaluate", "EvaluateConfig"),
        ("fsdkit.prediction", "predict", "PredictConfig"),
        ("fsdkit.export", "export", "ExportConfig"),
        ("fsdkit.sweep", "sweep", "SweepConfig"),
        ("fsdkit.compress", "compress", "CompressConfig"),
        ("fsdkit.analysis.run", "analyze", "AnalyzeConfig"),
    ],
)
def test_every_entry_point_applies_and_checks_its_overrides(module, function, cls, monkeypatch):
    """``entry(config_object, **overrides)``: the overrides apply on top of a config object as on top of a mapping,
    and are checked (an unknown name or a bad value is refused) — they were dropped silently by some."""
    import importlib

    import fsdkit.config as config_module

    entry = getattr(importlib.import_module(module), function)
    config_cls = getattr(config_module, cls)
    seen = []

    class Stop(Exception):
        pass

    original = config_module.as_config

    def spy(cls_, config=None, overrides=None):
        result = original(cls_, config, overrides)
        seen.append(result)
        raise Stop

    for name in ("fsdkit.config", module):
        monkeypatch.setattr(importlib.import_module(name), "as_config", spy, raising=False)
    import dataclasses

    name = next(n for n in ("seed", "batch_size", "opset") if n in {f.name for f in dataclasses.fields(config_cls)})
    with pytest.raises(Stop):
        entry(config_cls(), **{name: 7})
    assert getattr(seen[-1], name) == 7
    with pytest.raises(ConfigError, match="unknown option"):
        original(config_cls, config_cls(), {"no_such_option": 1})
    with pytest.raises(ConfigError):
        original(config_cls, config_cls(), {name: "seven"})
