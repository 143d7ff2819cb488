"""``fsdkit export --quantize int8``: ONNX Runtime's int8 model beside the float one, measured on the evaluation
split (metric, size, latency at batch 1 and 32), flagged past the tolerance — on a model trained on the shipped
tickets data, its data taken from its run record."""

from __future__ import annotations

import json

import pytest

from fsdkit.cli import main as cli_main
from fsdkit.errors import ConfigError


def test_int8_export_reports_both_models_and_flags_a_drop(tickets_teacher, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert (
        cli_main(
            [
                "export",
                str(tickets_teacher),
                "--output-dir",
                str(out),
                "--quantize",
                "int8",
                "--quantize-tolerance",
                "0",
                "--calibration-samples",
                "8",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "quantization.json").read_text())
    assert printed["quantization"] == report
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert not list(out.glob("model.int8-*.onnx"))  # the candidate not chosen is removed
    assert report["split"] == "validation" and report["n_examples"] == 6 and report["metric"] == "accuracy"
    for model in ("float", "int8"):
        assert set(report[model]) == {"file", "size_mb", "metrics", "latency_ms_batch1", "latency_ms_batch32"}
        assert report[model]["latency_ms_batch1"] > 0 and report[model]["latency_ms_batch32"] > 0
    assert report["int8"]["size_mb"] < report["float"]["size_mb"] / 2  # int8 weights: under half the float file
    assert report["quantization"] in report["candidates"]
    assert report["slower_than_float"] == (report["int8"]["latency_ms_batch1"] >= report["float"]["latency_ms_batch1"])
    assert report["flagged"] == (report["drop_points"] > 0 or report["slower_than_float"])
    card = (out / "README.md").read_text()
    assert "## int8 (ONNX Runtime)" in card and ("**Flagged**" in card) == report["flagged"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model.int8.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits"]
    from fsdkit.artifacts import current_umask

    mode = 0o666 & ~current_umask()  # every file as any other the user makes (safetensors writes 0600)
    assert {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()} == {f.name: mode for f in out.iterdir()}
    # exported again without --quantize: the int8 model of the replaced float model goes, and its card section
    assert cli_main(["export", str(tickets_teacher), "--output-dir", str(out)]) == 0
    assert not (out / "model.int8.onnx").exists() and not (out / "quantization.json").exists()
    assert "## int8" not in (out / "README.md").read_text()
    from fsdkit.export import export

    with pytest.raises(ConfigError, match="--metric chooses the int8 model: it needs --quantize int8"):
        export(model=str(tickets_teacher), output_dir=str(out), metric="accuracy")


def test_quantize_is_checked_before_the_export(tickets_teacher, tmp_path):
    from fsdkit.export import export

    with pytest.raises(ConfigError, match="--quantize must be one of int8"):
        export(model=str(tickets_teacher), output_dir=str(tmp_path / "x"), quantize="int4")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("candidates", "kept"),
    [
        # MRPC's export: static scored higher but ran at twice the float model's latency — dynamic is kept
        ({"dynamic": (0.8480, 9.0), "static": (0.8495, 23.2)}, "dynamic"),
        # both faster: the better metric within the tolerance
        ({"dynamic": (0.840, 6.0), "static": (0.845, 8.0)}, "static"),
        # both faster, static past the tolerance, dynamic within it: dynamic
        ({"dynamic": (0.842, 8.0), "static": (0.830, 6.0)}, "dynamic"),
        # both faster and past the tolerance: the better metric (it is flagged)
        ({"dynamic": (0.800, 8.0), "static": (0.820, 9.0)}, "static"),
        # same metric: the faster
        ({"dynamic": (0.845, 8.0), "static": (0.845, 6.0)}, "static"),
        # neither faster than float: the better metric, then the faster (it is flagged)
        ({"dynamic": (0.845, 12.0), "static": (0.845, 13.0)}, "dynamic"),
        # one candidate (the other failed to quantize)
        ({"static": (0.70, 30.0)}, "static"),
    ],
)
def test_the_kept_quantization_is_faster_than_float_first_then_within_the_tolerance(candidates, kept):
    from fsdkit.quantize import choose

    assert choose(candidates, (0.848, 11.6), tolerance=1.0) == kept
