"""Methods are presets: named lists of weighted loss terms built from a :class:`DistillConfig`.

This module defines the pieces (:class:`TermSpec`, :class:`Method`, the ``--loss`` parser) and FSD's own
methods; :mod:`fsdkit.training.baselines` the baselines; :mod:`fsdkit.training.presets` puts all of them under
their names (dependencies in one direction: methods → baselines → presets).

``vkd`` = ``α·task + (1−α)·kd``; FSD's variants add structure terms with weights λ:
``fsd = vkd + λ_I·intra + λ_L·local + λ_G·memory`` (FSD eq. 3, 11). Extra terms from ``--loss`` /
``losses:`` are appended, so any method can be combined with any registered loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fsdkit.coercion import parse_loss_flag
from fsdkit.errors import ConfigError
from fsdkit.options import Option


@dataclass
class TermSpec:
    """One weighted term of a run: registry ``name``, ``weight``, constructor ``options`` and a log ``label``.

    ``stages``: the training stages (0-based) in which the term is active; None = all stages.
    """

    name: str
    weight: float
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    stages: frozenset[int] | None = None

    def __post_init__(self):
        self.label = self.label or self.name


@dataclass(frozen=True)
class Method:
    """A preset: ``build(config)`` gives its weighted terms. ``options``: the settings its terms read beyond
    DistillConfig's fields (weights, layer maps), declared once (:class:`fsdkit.options.Option`); they become
    ``fsdkit distill`` flags, config keys and attributes of the config (``config.beta_pkd``)."""

    name: str
    description: str
    build: Callable[[Any], list[TermSpec]]
    needs_memory: bool = False
    #: number of training stages the method's schedule has (1 = a single stage)
    stages: Callable[[Any], int] = lambda config: 1
    options: tuple[Option, ...] = ()


#: learning-rate schedules of a staged method (``stage_lr``): a linear warm-up and decay per stage, or one for the run
STAGE_LR_SCHEDULES = ("restart", "global")


LAMBDA_INTRA = Option("lambda_intra", float, 30.0, "weight of the intra-feature structure loss (FSDI)", low=0)
LAMBDA_LOCAL = Option("lambda_local", float, 30.0, "weight of the local inter-feature structure loss (FSDL)", low=0)
LAMBDA_GLOBAL = Option(
    "lambda_global",
    float,
    1.0,
    "weight of the global inter-feature memory loss (FSDG; the paper used 1e-3 with its raw distances)",
    low=0,
)
SIMILARITY = Option(
    "similarity",
    str,
    "linear_cka",
    "similarity of the FSD structure losses (linear_cka, rbf_cka, debiased_cka, procrustes, gram)",
)
LOCAL_POOLING = Option("local_pooling", str, "flatten", "rows of the local (batch) view: flatten, cls or mean")
MEMORY = Option("memory", str | None, None, "teacher memory folder for FSDG (built into OUTPUT_DIR/memory when absent)")
MEMORY_CLUSTERS = Option("memory_clusters", int, 100, "K of the teacher memory when it is built automatically", low=1)
GAMMA = Option(
    "gamma", float, 0.5, "FSDG: weight of distances vs cosines in the feature-to-centroid loss", low=0, high=1
)
MEMORY_DISTANCES = Option(
    "memory_distances",
    str,
    "normalized",
    "FSDG: feature-to-centroid distances divided by their batch mean (normalized) or the paper's raw ones",
    choices=("normalized", "raw"),
)
MEMORY_LR = Option(
    "memory_lr",
    float | None,
    1e-1,
    "FSDG: learning rate of the student memory (its own optimizer group; null = the student's)",
    low=0,
    low_open=True,
)
#: the options each FSD structure term reads (a method declares those of its terms)
INTRA_OPTIONS = (LAMBDA_INTRA, SIMILARITY)
LOCAL_OPTIONS = (LAMBDA_LOCAL, SIMILARITY, LOCAL_POOLING)
GLOBAL_OPTIONS = (LAMBDA_GLOBAL, SIMILARITY, MEMORY, MEMORY_CLUSTERS, GAMMA, MEMORY_DISTANCES, MEMORY_LR)


def options_of(*groups: tuple[Option, ...], without: tuple[Option, ...] = ()) -> tuple[Option, ...]:
    """The options of several terms, each once, in order (``without``: those a preset fixes itself)."""
    return tuple(dict.fromkeys(o for group in groups for o in group if o not in without))


def vkd_terms(c) -> list[TermSpec]:
    return [TermSpec("task", c.alpha), TermSpec("kd", 1.0 - c.alpha, {"temperature": c.temperature})]


def intra_term(c) -> TermSpec:
    return TermSpec("structure", c.lambda_intra, {"view": "intra", "similarity": c.similarity}, "intra")


def local_term(c) -> TermSpec:
    options = {"view": "local", "similarity": c.similarity, "pooling": c.local_pooling}
    return TermSpec("structure", c.lambda_local, options, "local")


def global_term(c) -> TermSpec:
    options = {
        "memory": c.memory,
        "gamma": c.gamma,
        "similarity": c.similarity,
        "distances": c.memory_distances,
        "memory_lr": c.memory_lr,
    }
    return TermSpec("memory", c.lambda_global, options, "global")


def fsd_terms(c) -> list[TermSpec]:
    """FSD (eq. 11): VKD + intra + local + global structure."""
    return vkd_terms(c) + [intra_term(c), local_term(c), global_term(c)]


#: FSD's methods and its ablations (the baselines are in :mod:`fsdkit.training.baselines`; all of them by name in
#: :mod:`fsdkit.training.presets`)
FSD_METHODS = (
    Method(
        "nds", "student fine-tuned on the task alone, no teacher (the paper's nDS)", lambda c: [TermSpec("task", 1.0)]
    ),
    Method("vkd", "vanilla KD (Hinton et al. 2015): alpha * task + (1 - alpha) * T^2 KL", vkd_terms),
    Method(
        "fsdi",
        "VKD + intra-feature (token) structure, FSD eq. 6",
        lambda c: vkd_terms(c) + [intra_term(c)],
        options=INTRA_OPTIONS,
    ),
    Method(
        "fsdl",
        "VKD + local inter-feature (batch) structure, FSD eq. 7",
        lambda c: vkd_terms(c) + [local_term(c)],
        options=LOCAL_OPTIONS,
    ),
    Method(
        "fsdg",
        "VKD + global inter-feature structure via the k-means memory, FSD eq. 8-10",
        lambda c: vkd_terms(c) + [global_term(c)],
        needs_memory=True,
        options=GLOBAL_OPTIONS,
    ),
    Method(
        "fsdil",
        "VKD + intra + local structure",
        lambda c: vkd_terms(c) + [intra_term(c), local_term(c)],
        options=options_of(INTRA_OPTIONS, LOCAL_OPTIONS),
    ),
    Method(
        "fsd",
        "VKD + intra + local + global structure (FSD eq. 11)",
        fsd_terms,
        needs_memory=True,
        options=options_of(INTRA_OPTIONS, LOCAL_OPTIONS, GLOBAL_OPTIONS),
    ),
)


def extra_term_specs(entries: list[dict] | None, taken: set[str]) -> list[TermSpec]:
    """Term specs from ``losses`` config entries ({name, weight, label?, ...options})."""
    specs = []
    for i, entry in enumerate(entries or []):
        entry = parse_loss_flag(entry) if isinstance(entry, str) else dict(entry)
        if "name" not in entry or "weight" not in entry:
            raise ConfigError(f"losses[{i}]: each extra loss needs 'name' and 'weight', got {entry}")
        name = entry.pop("name")
        try:
            weight = float(entry.pop("weight"))
        except (TypeError, ValueError):
            raise ConfigError(f"losses[{i}] ({name}): weight must be a number") from None
        label = str(entry.pop("label", name))
        base, n = label, 2
        while label in taken:
            label, n = f"{base}_{n}", n + 1
        taken.add(label)
        specs.append(TermSpec(name, weight, entry, label))
    return specs
