"""fsdkit touches only what it writes, never runs a model folder's code, and reads bounded config files.

Each case is one a security review found (issue "Touch nothing it does not own", items 1-3); they run on the
shipped tickets data and a tiny random model, no ../shared needed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_paths import TICKETS, TICKETS_DEV
from fsdkit.cli import main as cli_main
from fsdkit.errors import ConfigError, ModelError


def tiny_classifier():
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from fsdkit.models import resolve_model_path

    config = BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    return BertForSequenceClassification(config), AutoTokenizer.from_pretrained(resolve_model_path("minilm"))


def test_saving_a_model_changes_the_mode_of_no_file_it_did_not_write(tmp_path):
    """[1] A private key beside the output folder's files, a link to a private file outside it and an executable
    script keep their modes; only the model's own files follow the umask (safetensors writes 0600)."""
    from fsdkit.artifacts import current_umask
    from fsdkit.models import save_model

    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    key = out / "id_rsa"
    key.write_text("secret")
    key.chmod(0o600)
    target = outside / "private"
    target.write_text("secret")
    target.chmod(0o600)
    (out / "link").symlink_to(target)
    script = out / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    model, tokenizer = tiny_classifier()
    save_model(model, tokenizer, out)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o666 & ~current_umask()


def test_follow_umask_never_follows_a_link(tmp_path):
    from fsdkit.artifacts import follow_umask

    target = tmp_path / "private"
    target.write_text("x")
    target.chmod(0o600)
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "link").symlink_to(target)
    follow_umask(folder, folder / "link")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def remote_code_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose config points at its own Python (auto_map); importing it would write ``marker``."""
    model, tokenizer = tiny_classifier()
    folder = tmp_path / "remote"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertForSequenceClassification as EvilModel\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_a_model_folders_own_code_is_never_run(tmp_path):
    """[2] Refused before loading, naming trust_remote_code; loading past the check does not run it either (no
    terminal prompt: trust_remote_code=False is passed, and transformers falls back to its own class)."""
    from transformers import AutoModelForSequenceClassification

    from fsdkit.models import check_model_folder
    from fsdkit.models.loading import _from_pretrained

    folder, marker = remote_code_folder(tmp_path)
    with pytest.raises(ModelError, match=r"ships its own Python code .*trust_remote_code=False"):
        check_model_folder(folder, option="teacher")
    try:  # transformers either loads its own class for the model type or refuses; the folder's code never runs
        _from_pretrained(AutoModelForSequenceClassification, str(folder))
    except (ValueError, ModelError):
        pass
    assert not marker.exists()


def test_the_cli_refuses_remote_code_without_a_terminal(tmp_path):
    folder, marker = remote_code_folder(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsdkit.cli",
            "evaluate",
            str(folder),
            "--train-file",
            str(TICKETS),
            "--validation-file",
            str(TICKETS_DEV),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2 and "trust_remote_code=False" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


@pytest.mark.parametrize(
    "command, key", [("distill", "text-columns"), ("distill", "learning-rate"), ("sweep", "space"), ("sweep", "base")]
)
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys, command, key):
    """[3] 9^8 values behind a few hundred bytes, under a known key: refused in well under a second, and the error
    is one short line (it printed 312 MB before)."""
    config = tmp_path / "bomb.yaml"
    config.write_text(BOMB.replace("h: &h", f"{key}: &h"))
    start = time.perf_counter()
    assert cli_main([command, "--config", str(config)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "more than 100,000 values once its YAML aliases are expanded" in err and len(err) < 400


def test_config_files_are_size_bounded_and_utf8(tmp_path):
    from fsdkit.config import DistillConfig, read_config_file

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\nepochs: 1\n")
    with pytest.raises(ConfigError, match=r"big.yaml is 1,048,589 bytes; a config file may hold at most 1,048,576"):
        read_config_file(big, DistillConfig, "distill")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# caf\xe9\nepochs: 1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: line 1: byte 0xe9 is not UTF-8"):
        read_config_file(latin, DistillConfig, "distill")
    assert read_config_file(_write(tmp_path / "ok.yaml", "loss: ['minilm:1']\n"), DistillConfig, "distill") == {
        "losses": [{"name": "minilm", "weight": "1"}]
    }  # the flag's name and form (--loss NAME:WEIGHT) as a key


def test_an_error_never_prints_a_huge_value(tmp_path):
    from fsdkit.config import DistillConfig, read_config_file

    config = _write(tmp_path / "long.yaml", "epochs: " + "9" * 5000 + "x\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(config, DistillConfig, "distill")
    assert len(str(info.value)) < 300 and "characters)" in str(info.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
