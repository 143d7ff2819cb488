"""Layer maps (fsdkit.losses.layer_maps): named maps, explicit pairs, and their errors."""

from __future__ import annotations

import pytest

from baseline_helpers import ctx
from fsdkit.errors import ConfigError
from fsdkit.losses import build_term
from fsdkit.losses.layer_maps import count_layer_pairs, resolve_layer_map


def test_named_layer_maps():
    assert resolve_layer_map("skip", 3, 6, include_last=False) == [(1, 2), (2, 4)]
    assert resolve_layer_map("skip", 6, 12, include_last=False) == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    assert resolve_layer_map("last", 6, 12, include_last=False) == [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert resolve_layer_map("last", 3, 6, include_last=False) == [(1, 4), (2, 5)]
    assert resolve_layer_map("skip", 3, 6, include_last=True) == [(1, 2), (2, 4), (3, 6)]
    assert (
        count_layer_pairs("skip", 3, include_last=True) == 3 and count_layer_pairs("last", 3, include_last=False) == 2
    )


@pytest.mark.parametrize("spec", ["1:2,2:4", "1:2;2:4", " 1:2  2:4 ", [[1, 2], [2, 4]], [(1, 2), (2, 4)]])
def test_explicit_layer_maps(spec):
    assert resolve_layer_map(spec, 3, 6, include_last=False) == [(1, 2), (2, 4)]
    assert count_layer_pairs(spec, 3, include_last=False) == 2


@pytest.mark.parametrize(
    "spec, match",
    [
        ("1:7", r"out of range.*teacher layers 1\.\.6"),
        ([[4, 2]], r"out of range: student layers are 1\.\.3"),
        ([[0, 2]], "out of range"),
        ("1-2", "not a pair of integers"),
        (62, "not a pair of integers"),  # what YAML makes of an unquoted 1:2 (base 60)
        ("", "no layer pairs"),
    ],
)
def test_bad_layer_maps(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_layer_map(spec, 3, 6, include_last=False)


def test_named_map_needs_a_deep_enough_teacher_and_an_intermediate_layer():
    with pytest.raises(ConfigError, match="at least as deep"):
        resolve_layer_map("skip", 6, 3, include_last=False)
    with pytest.raises(ConfigError, match="no intermediate layer"):
        build_term("pkd", ctx(layers=1, teacher_layers=6), {})
