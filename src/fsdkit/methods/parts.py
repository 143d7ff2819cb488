"""The parts a method's typed options are composed of, each setting declared once (:func:`fsdkit.settings.setting`).

A method's options class inherits the parts of its terms: FSD's is :class:`KD` + :class:`Intra` + :class:`Local` +
:class:`Global` + :class:`Similarity`; PKD's is :class:`KD` + :class:`PKD`. A setting two methods share (``alpha``,
``lambda_intra``, ``similarity``) is then one declaration, with one default, range and help. Python lists a
dataclass's inherited fields from the last base to the first, so an options class names its parts in reverse.
Config example (``fsdkit distill --config``; FSD's options beside the run settings)::

    method: fsd
    alpha: 0.2
    lambda-intra: 9.1
    lambda-global: 0.9
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdkit.settings import setting

#: learning-rate schedules of a staged method (``stage_lr``): a linear warm-up and decay per stage, or one for the run
STAGE_LR_SCHEDULES = ("restart", "global")


@dataclass
class KD:
    """Vanilla KD: ``α·task + (1−α)·T²·KL(p_T^τ ‖ p_S^τ)`` (Hinton et al. 2015)."""

    alpha: float = setting(
        0.5, "weight of the task loss in vanilla KD; the soft-label KD gets 1 - alpha", low=0, high=1
    )
    temperature: float = setting(5.0, "softmax temperature of vanilla KD", low=0, low_open=True)


@dataclass
class Similarity:
    """The similarity every FSD structure term of the method compares its views with."""

    similarity: str = setting(
        "linear_cka", "similarity of the FSD structure losses (linear_cka, rbf_cka, debiased_cka, procrustes, gram)"
    )


@dataclass
class Intra:
    """FSD's intra-feature term (eq. 6): tokens within a sample."""

    lambda_intra: float = setting(30.0, "weight of the intra-feature structure loss (FSDI)", low=0)


@dataclass
class LocalPooling:
    """The rows of the local (batch) view."""

    local_pooling: str = setting("flatten", "rows of the local (batch) view: flatten, cls or mean")


@dataclass
class Local(LocalPooling):
    """FSD's local inter-feature term (eq. 7): samples within a batch."""

    lambda_local: float = setting(30.0, "weight of the local inter-feature structure loss (FSDL)", low=0)


@dataclass
class Global:
    """FSD's global inter-feature term (eq. 8-10): samples against the k-means memory of teacher centroids."""

    lambda_global: float = setting(
        1.0, "weight of the global inter-feature memory loss (FSDG; the paper used 1e-3 with its raw distances)", low=0
    )
    memory: str | None = setting(None, "teacher memory folder for FSDG (built into OUTPUT_DIR/memory when absent)")
    memory_clusters: int = setting(100, "K of the teacher memory when it is built automatically", low=1)
    gamma: float = setting(0.5, "FSDG: weight of distances vs cosines in the feature-to-centroid loss", low=0, high=1)
    memory_distances: str = setting(
        "normalized",
        "FSDG: feature-to-centroid distances divided by their batch mean (normalized) or the paper's raw ones",
        choices=("normalized", "raw"),
    )
    memory_lr: float | None = setting(
        1e-1,
        "FSDG: learning rate of the student memory (its own optimizer group; null = the student's)",
        low=0,
        low_open=True,
    )


@dataclass
class PKD:
    """Patient KD (Sun et al. 2019): normalised [CLS] vectors of matched layers."""

    beta_pkd: float = setting(100.0, "PKD: weight beta of the patient loss on normalised [CLS] vectors", low=0)
    pkd_layers: str | list[list[int]] = setting(
        "skip", "PKD layer map: skip, last, or 1-based student:teacher pairs, e.g. 1:2,2:4"
    )


@dataclass
class RKD:
    """Relational KD (Park et al. 2019): distance and angle structure of the batch's [CLS] rows."""

    lambda_rkd_distance: float = setting(25.0, "RKD: weight of the distance term", low=0)
    lambda_rkd_angle: float = setting(50.0, "RKD: weight of the angle term", low=0)


@dataclass
class MiniLM:
    """MiniLM (Wang et al. 2020): attention and value-relation KL on the last layer."""

    lambda_minilm: float = setting(1.0, "MiniLM: weight of the attention + value-relation KL", low=0)


@dataclass
class Internal:
    """Internal-representation KD (Aguilar et al. 2020): one term per matched layer pair."""

    lambda_internal: float = setting(1.0, "internal-representation KD: weight of each matched layer's loss", low=0)
    internal_layers: str | list[list[int]] = setting(
        "skip", "internal-representation KD layer map: skip, last, or 1-based student:teacher pairs"
    )


@dataclass
class Staged:
    """The learning-rate schedule of a method trained in stages."""

    stage_lr: str = setting(
        "restart",
        "staged methods (internal-pid, internal-sid): 'restart' gives each stage its own linear warm-up and decay, as "
        "if each stage were its own run; 'global' keeps one schedule over the whole run",
        choices=STAGE_LR_SCHEDULES,
    )


@dataclass
class Geometry:
    """Geometry losses (Bhattarai et al. 2025): one weight on the intra and the local view."""

    lambda_geometry: float = setting(
        30.0, "geometry-procrustes/-gram: weight alpha of each distance (intra and local views)", low=0
    )


@dataclass
class RelationCKA:
    """Relation-CKA (Zhou et al. 2024)."""

    lambda_relation_cka: float = setting(15.0, "relation-cka: weight of the relation CKA term", low=0)
