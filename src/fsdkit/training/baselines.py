"""Method presets of the baselines: each is VKD plus the baseline's loss terms (see docs/methods.md).

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
- ``fsd-procrustes``: the ``fsd`` preset with the Procrustes distance in place of CKA everywhere (intra, local
  and the memory's centroid structure).

Each method declares the options its terms read (:class:`~fsdkit.options.Option`, below): they are ``fsdkit distill``
flags and config keys, with the defaults and ranges stated here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fsdkit.losses.layer_maps import count_layer_pairs
from fsdkit.options import Option
from fsdkit.training.methods import (
    GLOBAL_OPTIONS,
    INTRA_OPTIONS,
    LOCAL_OPTIONS,
    LOCAL_POOLING,
    SIMILARITY,
    STAGE_LR_SCHEDULES,
    Method,
    TermSpec,
    fsd_terms,
    intra_term,
    local_term,
    options_of,
    vkd_terms,
)

BETA_PKD = Option("beta_pkd", float, 100.0, "PKD: weight beta of the patient loss on normalised [CLS] vectors", low=0)
PKD_LAYERS = Option(
    "pkd_layers",
    str | list[list[int]],
    "skip",
    "PKD layer map: skip, last, or 1-based student:teacher pairs, e.g. 1:2,2:4",
)
LAMBDA_RKD_DISTANCE = Option("lambda_rkd_distance", float, 25.0, "RKD: weight of the distance term", low=0)
LAMBDA_RKD_ANGLE = Option("lambda_rkd_angle", float, 50.0, "RKD: weight of the angle term", low=0)
LAMBDA_MINILM = Option("lambda_minilm", float, 1.0, "MiniLM: weight of the attention + value-relation KL", low=0)
LAMBDA_INTERNAL = Option(
    "lambda_internal", float, 1.0, "internal-representation KD: weight of each matched layer's loss", low=0
)
INTERNAL_LAYERS = Option(
    "internal_layers",
    str | list[list[int]],
    "skip",
    "internal-representation KD layer map: skip, last, or 1-based student:teacher pairs",
)
STAGE_LR = Option(
    "stage_lr",
    str,
    "restart",
    "staged methods (internal-pid, internal-sid): 'restart' gives each stage its own linear warm-up and "
    "decay, as if each stage were its own run; 'global' keeps one schedule over the whole run",
    choices=STAGE_LR_SCHEDULES,
)
LAMBDA_GEOMETRY = Option(
    "lambda_geometry",
    float,
    30.0,
    "geometry-procrustes/-gram: weight alpha of each distance (intra and local views)",
    low=0,
)
LAMBDA_RELATION_CKA = Option("lambda_relation_cka", float, 15.0, "relation-cka: weight of the relation CKA term", low=0)


def student_depth(c) -> int:
    """Number of transformer layers of the student a config builds (``student_layers``: k or a list)."""
    return c.student_layers if isinstance(c.student_layers, int) else len(c.student_layers)


def internal_pair_count(c) -> int:
    return count_layer_pairs(c.internal_layers, student_depth(c), include_last=True)


def internal_terms(c, stages: Callable[[int, int], frozenset[int] | None]) -> list[TermSpec]:
    """One ``internal`` term per matched pair k (0-based), active in ``stages(k, n_pairs)`` (None = always)."""
    n = internal_pair_count(c)
    return [
        TermSpec(
            "internal",
            c.lambda_internal,
            {"layers": c.internal_layers, "pairs": [k + 1]},
            f"internal_{k + 1}",
            stages(k, n),
        )
        for k in range(n)
    ]


def scheduled_internal(stages: Callable[[int, int], frozenset[int]]) -> Callable[[object], list[TermSpec]]:
    """Builder of a staged schedule: the internal terms in ``stages``, then VKD alone in the last stage."""

    def build(c) -> list[TermSpec]:
        last = frozenset({internal_pair_count(c)})
        return internal_terms(c, stages) + [dataclasses.replace(spec, stages=last) for spec in vkd_terms(c)]

    return build


def geometry_terms(c, similarity: str) -> list[TermSpec]:
    g = c.replace(similarity=similarity, lambda_intra=c.lambda_geometry, lambda_local=c.lambda_geometry)
    return vkd_terms(c) + [intra_term(g), local_term(g)]


def _staged(c) -> int:
    return internal_pair_count(c) + 1


def rkd_terms(c) -> list[TermSpec]:
    """VKD + RKD; with both of its weights at 0 (a sweep that switched both parts off) the RKD term is left out."""
    if c.lambda_rkd_distance == 0 and c.lambda_rkd_angle == 0:
        return vkd_terms(c)
    return vkd_terms(c) + [
        TermSpec("rkd", 1.0, {"distance_weight": c.lambda_rkd_distance, "angle_weight": c.lambda_rkd_angle})
    ]


BASELINE_METHODS = (
    Method(
        "pkd",
        "VKD + beta * patient KD on normalised [CLS] vectors of matched layers (Sun et al. 2019)",
        lambda c: vkd_terms(c) + [TermSpec("pkd", c.beta_pkd, {"layers": c.pkd_layers})],
        options=(BETA_PKD, PKD_LAYERS),
    ),
    Method(
        "rkd",
        "VKD + relational KD: distance and angle structure of the batch's [CLS] rows (Park et al. 2019)",
        rkd_terms,
        options=(LAMBDA_RKD_DISTANCE, LAMBDA_RKD_ANGLE),
    ),
    Method(
        "minilm",
        "VKD + MiniLM attention and value-relation KL on the last layer (Wang et al. 2020)",
        lambda c: vkd_terms(c) + [TermSpec("minilm", c.lambda_minilm)],
        options=(LAMBDA_MINILM,),
    ),
    Method(
        "internal-all",
        "VKD + internal-representation KD of all matched layers at once (Aguilar et al. 2020)",
        lambda c: vkd_terms(c) + internal_terms(c, lambda k, n: None),
        options=(LAMBDA_INTERNAL, INTERNAL_LAYERS),
    ),
    Method(
        "internal-pid",
        "progressive internal KD: one matched layer per stage, then VKD alone (Aguilar et al. 2020)",
        scheduled_internal(lambda k, n: frozenset({k})),
        stages=_staged,
        options=(LAMBDA_INTERNAL, INTERNAL_LAYERS, STAGE_LR),
    ),
    Method(
        "internal-sid",
        "stacked internal KD: layers 1..k in stage k, then VKD alone (Aguilar et al. 2020)",
        scheduled_internal(lambda k, n: frozenset(range(k, n))),
        stages=_staged,
        options=(LAMBDA_INTERNAL, INTERNAL_LAYERS, STAGE_LR),
    ),
    Method(
        "relation-cka",
        "VKD + uncentred CKA of feature and logit Gram matrices (Zhou et al. 2024)",
        lambda c: vkd_terms(c) + [TermSpec("relation_cka", c.lambda_relation_cka)],
        options=(LAMBDA_RELATION_CKA,),
    ),
    Method(
        "geometry-procrustes",
        "VKD + alpha * Procrustes distance, intra and local views (Bhattarai et al. 2025)",
        lambda c: geometry_terms(c, "procrustes"),
        options=(LAMBDA_GEOMETRY, LOCAL_POOLING),
    ),
    Method(
        "geometry-gram",
        "VKD + alpha * feature Gram distance, intra and local views (Bhattarai et al. 2025)",
        lambda c: geometry_terms(c, "gram"),
        options=(LAMBDA_GEOMETRY, LOCAL_POOLING),
    ),
    Method(
        "fsd-procrustes",
        "FSD (intra + local + global) with the Procrustes distance in place of CKA",
        lambda c: fsd_terms(c.replace(similarity="procrustes")),
        needs_memory=True,
        options=options_of(INTRA_OPTIONS, LOCAL_OPTIONS, GLOBAL_OPTIONS, without=(SIMILARITY,)),
    ),
)
