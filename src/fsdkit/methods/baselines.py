"""The baselines' methods, each VKD plus the baseline's loss terms, with its options class (see docs/methods.md).

- ``pkd``: ``L_VKD + β · L_PT`` (Sun et al. 2019), β = ``beta_pkd`` (100; the paper's grid is {10, 100, 500, 1000}).
- ``rkd``: ``L_VKD + λ_D · L_D + λ_A · L_A`` (Park et al. 2019); λ_D = 25, λ_A = 50 are options of the one term.
- ``minilm``: ``L_VKD + λ · (KL_att + KL_val)`` on the last layers (Wang et al. 2020).
- ``internal-all`` / ``internal-pid`` / ``internal-sid``: internal-representation KD (Aguilar et al. 2020) with
  one ``internal`` term per matched layer pair (labels ``internal_1``, ``internal_2``, …). ``all`` trains
  every pair and VKD together in one stage; the progressive (PID) and stacked (SID) schedules split training
  into P + 1 equal stages for P pairs: stage k < P trains pair k + 1 only (PID) or pairs 1..k + 1 (SID), the
  last stage trains the classifier with VKD only.
- ``relation-cka``: ``L_VKD + λ · L_RCKA`` (Zhou et al. 2024).
- ``geometry-procrustes`` / ``geometry-gram``: ``L_VKD + α · D`` (Bhattarai et al. 2025) with D the Procrustes or
  Gram distance on FSD's intra (tokens) and local (batch) views, α = ``lambda_geometry`` on each.
- ``fsd-procrustes``: FSD with the Procrustes distance in place of CKA everywhere (intra, local and the memory's
  centroid structure).

Config example::

    method: rkd
    lambda-rkd-distance: 3.2
    lambda-rkd-angle: 7.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsdkit.losses.layer_maps import count_layer_pairs
from fsdkit.methods.base import Method, TermSpec
from fsdkit.methods.fsd import intra_term, local_term, structure_terms, vkd_terms
from fsdkit.methods.parts import (
    KD,
    PKD,
    RKD,
    Geometry,
    Global,
    Internal,
    Intra,
    Local,
    LocalPooling,
    MiniLM,
    RelationCKA,
    Staged,
)


@dataclass
class PKDOptions(PKD, KD):
    """VKD + patient KD."""


@dataclass
class RKDOptions(RKD, KD):
    """VKD + relational KD."""


@dataclass
class MiniLMOptions(MiniLM, KD):
    """VKD + MiniLM's attention and value relations."""


@dataclass
class InternalOptions(Internal, KD):
    """VKD + internal-representation KD of all matched layers at once."""


@dataclass
class StagedInternalOptions(Staged, Internal, KD):
    """Internal-representation KD trained in stages."""


@dataclass
class RelationCKAOptions(RelationCKA, KD):
    """VKD + relation CKA."""


@dataclass
class GeometryOptions(LocalPooling, Geometry, KD):
    """VKD + one distance on the intra and the local view."""


@dataclass
class FSDProcrustesOptions(Global, Local, Intra, KD):
    """FSD's parts without a similarity (Procrustes everywhere)."""


def student_depth(c: Any) -> int:
    """Number of transformer layers of the student a config builds (``student_layers``: k or a list)."""
    return c.student_layers if isinstance(c.student_layers, int) else len(c.student_layers)


def internal_pair_count(o: Internal, c: Any) -> int:
    return count_layer_pairs(o.internal_layers, student_depth(c), include_last=True)


def internal_terms(o: Internal, c: Any, stages: Callable[[int, int], frozenset[int] | None]) -> list[TermSpec]:
    """One ``internal`` term per matched pair k (0-based), active in ``stages(k, n_pairs)`` (None = always)."""
    n = internal_pair_count(o, c)
    return [
        TermSpec(
            "internal",
            o.lambda_internal,
            {"layers": o.internal_layers, "pairs": [k + 1]},
            f"internal_{k + 1}",
            stages(k, n),
        )
        for k in range(n)
    ]


def scheduled_internal(stages: Callable[[int, int], frozenset[int]]) -> Callable[[Any, Any], list[TermSpec]]:
    """Builder of a staged schedule: the internal terms in ``stages``, then VKD alone in the last stage."""

    def build(o: StagedInternalOptions, c: Any) -> list[TermSpec]:
        last = frozenset({internal_pair_count(o, c)})
        return internal_terms(o, c, stages) + [dataclasses.replace(spec, stages=last) for spec in vkd_terms(o)]

    return build


def _staged(o: StagedInternalOptions, c: Any) -> int:
    return internal_pair_count(o, c) + 1


def geometry_terms(similarity: str) -> Callable[[GeometryOptions, Any], list[TermSpec]]:
    """Builder of a geometry method: VKD + ``lambda_geometry`` · the ``similarity`` distance on the intra and the
    local view."""

    def build(o: GeometryOptions, c: Any) -> list[TermSpec]:
        weight = o.lambda_geometry
        return vkd_terms(o) + [intra_term(weight, similarity), local_term(weight, similarity, o.local_pooling)]

    return build


def rkd_terms(o: RKDOptions, c: Any) -> list[TermSpec]:
    """VKD + RKD; with both of its weights at 0 (a sweep that switched both parts off) the RKD term is left out."""
    if o.lambda_rkd_distance == 0 and o.lambda_rkd_angle == 0:
        return vkd_terms(o)
    weights = {"distance_weight": o.lambda_rkd_distance, "angle_weight": o.lambda_rkd_angle}
    return vkd_terms(o) + [TermSpec("rkd", 1.0, weights)]


BASELINE_METHODS = (
    Method(
        "pkd",
        "VKD + beta * patient KD on normalised [CLS] vectors of matched layers (Sun et al. 2019)",
        PKDOptions,
        lambda o, c: vkd_terms(o) + [TermSpec("pkd", o.beta_pkd, {"layers": o.pkd_layers})],
    ),
    Method(
        "rkd",
        "VKD + relational KD: distance and angle structure of the batch's [CLS] rows (Park et al. 2019)",
        RKDOptions,
        rkd_terms,
    ),
    Method(
        "minilm",
        "VKD + MiniLM attention and value-relation KL on the last layer (Wang et al. 2020)",
        MiniLMOptions,
        lambda o, c: vkd_terms(o) + [TermSpec("minilm", o.lambda_minilm)],
    ),
    Method(
        "internal-all",
        "VKD + internal-representation KD of all matched layers at once (Aguilar et al. 2020)",
        InternalOptions,
        lambda o, c: vkd_terms(o) + internal_terms(o, c, lambda k, n: None),
    ),
    Method(
        "internal-pid",
        "progressive internal KD: one matched layer per stage, then VKD alone (Aguilar et al. 2020)",
        StagedInternalOptions,
        scheduled_internal(lambda k, n: frozenset({k})),
        stages=_staged,
    ),
    Method(
        "internal-sid",
        "stacked internal KD: layers 1..k in stage k, then VKD alone (Aguilar et al. 2020)",
        StagedInternalOptions,
        scheduled_internal(lambda k, n: frozenset(range(k, n))),
        stages=_staged,
    ),
    Method(
        "relation-cka",
        "VKD + uncentred CKA of feature and logit Gram matrices (Zhou et al. 2024)",
        RelationCKAOptions,
        lambda o, c: vkd_terms(o) + [TermSpec("relation_cka", o.lambda_relation_cka)],
    ),
    Method(
        "geometry-procrustes",
        "VKD + alpha * Procrustes distance, intra and local views (Bhattarai et al. 2025)",
        GeometryOptions,
        geometry_terms("procrustes"),
    ),
    Method(
        "geometry-gram",
        "VKD + alpha * feature Gram distance, intra and local views (Bhattarai et al. 2025)",
        GeometryOptions,
        geometry_terms("gram"),
    ),
    Method(
        "fsd-procrustes",
        "FSD (intra + local + global) with the Procrustes distance in place of CKA",
        FSDProcrustesOptions,
        lambda o, c: vkd_terms(o) + structure_terms(o, "procrustes"),
        needs_memory=True,
    ),
)
