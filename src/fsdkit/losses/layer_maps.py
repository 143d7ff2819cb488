"""Layer maps of the layer-matching baselines (PKD and internal-representation KD): which student layer is paired
with which teacher layer.

A layer map pairs 1-based student layers with teacher layers: ``"skip"`` (student layer j ↔ teacher layer
j·N_T/N_S), ``"last"``, or explicit pairs (``"1:2,2:4"``). Pure parsing, no torch: method presets count the pairs
of a map before any model is loaded. The [CLS] projections of paired layers are in :mod:`fsdkit.losses.cls_projection`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

from fsdkit.errors import ConfigError

LayerMapSpec = str | Sequence[Sequence[int]]
NAMED_MAPS = ("skip", "last")
_PAIR_SEPARATORS = re.compile(r"[,;\s]+")


def parse_layer_pairs(spec: LayerMapSpec) -> list[tuple[int, int]] | None:
    """Explicit pairs from ``spec`` (``"1:2,2:4"``, ``"1:2;2:4"`` or ``[[1, 2], [2, 4]]``); None for a named map."""
    if isinstance(spec, str):
        text = spec.strip()
        if text in NAMED_MAPS:
            return None
        items = [item.split(":") for item in _PAIR_SEPARATORS.split(text) if item]
    elif isinstance(spec, Sequence):
        items = [list(item) if isinstance(item, Sequence) and not isinstance(item, str) else [item] for item in spec]
    else:
        items = [[spec]]
    pairs = []
    for item in items:
        try:
            student_layer, teacher_layer = (int(v) for v in item)
        except (TypeError, ValueError):
            raise ConfigError(
                f"layer map {spec!r}: expected 'skip', 'last' or (student_layer, teacher_layer) pairs such as "
                f"'1:2;2:4' or [[1, 2], [2, 4]] (1-based transformer layers); {item!r} is not a pair of integers"
            ) from None
        pairs.append((student_layer, teacher_layer))
    if not pairs:
        raise ConfigError(f"layer map {spec!r}: no layer pairs given")
    return pairs


def count_layer_pairs(spec: LayerMapSpec, n_student: int, *, include_last: bool) -> int:
    """How many pairs :func:`resolve_layer_map` returns, knowing only the student's depth."""
    pairs = parse_layer_pairs(spec)
    if pairs is not None:
        return len(pairs)
    return n_student if include_last else n_student - 1


def resolve_layer_map(
    spec: LayerMapSpec, n_student: int, n_teacher: int, *, include_last: bool
) -> list[tuple[int, int]]:
    """(student_layer, teacher_layer) pairs of 1-based transformer layers (= ``hidden_states`` indices).

    - ``"skip"``: student layer ``j`` ↔ teacher layer ``⌊j·N_T / N_S⌋`` (PKD-skip: 12 → 6 gives
      ``{1..5} ↔ {2, 4, 6, 8, 10}``; 6 → 3 gives ``(1, 2), (2, 4)``);
    - ``"last"``: student layer ``j`` ↔ teacher layer ``N_T − N_S + j`` (PKD-last: 12 → 6 gives ``{7..11}``);
    - explicit pairs, validated against both depths.

    The named maps cover student layers ``1..N_S − 1`` (PKD: the last layer is left to the logit loss), or
    ``1..N_S`` with ``include_last`` (internal-representation KD matches the last layer too).
    """
    pairs = parse_layer_pairs(spec)
    if pairs is None:
        if n_teacher < n_student:
            raise ConfigError(
                f"layer map {spec!r} needs a teacher at least as deep as the student, got {n_teacher} teacher and "
                f"{n_student} student layers; give explicit pairs"
            )
        top = n_student if include_last else n_student - 1
        if cast(str, spec).strip() == "skip":  # no pairs: a named map
            pairs = [(j, j * n_teacher // n_student) for j in range(1, top + 1)]
        else:
            pairs = [(j, n_teacher - n_student + j) for j in range(1, top + 1)]
        if not pairs:
            raise ConfigError(f"layer map {spec!r}: a {n_student}-layer student has no intermediate layer to match")
    for student_layer, teacher_layer in pairs:
        if not (1 <= student_layer <= n_student and 1 <= teacher_layer <= n_teacher):
            raise ConfigError(
                f"layer pair ({student_layer}, {teacher_layer}) out of range: student layers are 1..{n_student}, "
                f"teacher layers 1..{n_teacher} (1-based transformer layers)"
            )
    return pairs


def model_depths(ctx) -> tuple[int, int]:
    """(N_S, N_T): the transformer depths of student and teacher of a :class:`~fsdkit.losses.base.TermContext`."""
    return ctx.student_config.num_hidden_layers, ctx.teacher_config.num_hidden_layers
