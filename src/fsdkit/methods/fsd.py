"""FSD's methods and its ablations, each with its options class (see docs/methods.md).

``vkd`` = ``α·task + (1−α)·kd``; FSD's variants add structure terms with weights λ:
``fsd = vkd + λ_I·intra + λ_L·local + λ_G·memory`` (FSD eq. 3, 11). A method's options class names the parts of
its terms (:mod:`fsdkit.methods.parts`; in reverse, see there). Config example::

    method: fsdil
    lambda-intra: 9.1
    lambda-local: 7.3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsdkit.methods.base import Method, TermSpec
from fsdkit.methods.parts import KD, Global, Intra, Local, Similarity


@dataclass
class NDSOptions:
    """nDS has no options of its own: the student trains on the task alone."""


@dataclass
class VKDOptions(KD):
    """Vanilla KD."""


@dataclass
class FSDIOptions(Similarity, Intra, KD):
    """VKD + the intra-feature term."""


@dataclass
class FSDLOptions(Similarity, Local, KD):
    """VKD + the local inter-feature term."""


@dataclass
class FSDGOptions(Similarity, Global, KD):
    """VKD + the global inter-feature term."""


@dataclass
class FSDILOptions(Similarity, Local, Intra, KD):
    """VKD + the intra- and local inter-feature terms."""


@dataclass
class FSDOptions(Similarity, Global, Local, Intra, KD):
    """VKD + all three structure terms (FSD eq. 11)."""


def vkd_terms(o: KD) -> list[TermSpec]:
    return [TermSpec("task", o.alpha), TermSpec("kd", 1.0 - o.alpha, {"temperature": o.temperature})]


def intra_term(weight: float, similarity: str) -> TermSpec:
    return TermSpec("structure", weight, {"view": "intra", "similarity": similarity}, "intra")


def local_term(weight: float, similarity: str, pooling: str) -> TermSpec:
    return TermSpec("structure", weight, {"view": "local", "similarity": similarity, "pooling": pooling}, "local")


def global_term(o: Global, similarity: str) -> TermSpec:
    options = {
        "memory": o.memory,
        "gamma": o.gamma,
        "similarity": similarity,
        "distances": o.memory_distances,
        "memory_lr": o.memory_lr,
    }
    return TermSpec("memory", o.lambda_global, options, "global")


def structure_terms(o: Any, similarity: str) -> list[TermSpec]:
    """The FSD structure terms of the parts ``o`` has, in the order intra, local, global, compared by ``similarity``."""
    terms = []
    if isinstance(o, Intra):
        terms.append(intra_term(o.lambda_intra, similarity))
    if isinstance(o, Local):
        terms.append(local_term(o.lambda_local, similarity, o.local_pooling))
    if isinstance(o, Global):
        terms.append(global_term(o, similarity))
    return terms


def fsd_family_terms(o: Any, config: Any) -> list[TermSpec]:
    """VKD + the structure terms of the method's parts, with its similarity."""
    return vkd_terms(o) + structure_terms(o, o.similarity)


FSD_METHODS = (
    Method(
        "nds",
        "student fine-tuned on the task alone, no teacher (the paper's nDS)",
        NDSOptions,
        lambda o, c: [TermSpec("task", 1.0)],
    ),
    Method(
        "vkd",
        "vanilla KD (Hinton et al. 2015): alpha * task + (1 - alpha) * T^2 KL",
        VKDOptions,
        lambda o, c: vkd_terms(o),
    ),
    Method("fsdi", "VKD + intra-feature (token) structure, FSD eq. 6", FSDIOptions, fsd_family_terms),
    Method("fsdl", "VKD + local inter-feature (batch) structure, FSD eq. 7", FSDLOptions, fsd_family_terms),
    Method(
        "fsdg",
        "VKD + global inter-feature structure via the k-means memory, FSD eq. 8-10",
        FSDGOptions,
        fsd_family_terms,
        needs_memory=True,
    ),
    Method("fsdil", "VKD + intra + local structure", FSDILOptions, fsd_family_terms),
    Method(
        "fsd", "VKD + intra + local + global structure (FSD eq. 11)", FSDOptions, fsd_family_terms, needs_memory=True
    ),
)
