"""What a method is: a name, a typed options class, and a builder of weighted loss terms.

A :class:`Method` builds its :class:`TermSpec` list from its options (an instance of its own options class, composed
of :mod:`fsdkit.methods.parts`) and the run's config (for what the run decides: the student's depth). Extra terms
from ``--loss`` / ``losses:`` are appended by :func:`extra_term_specs`, so any method combines with any registered
loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fsdkit.coercion import parse_loss_flag
from fsdkit.errors import ConfigError
from fsdkit.settings import Setting, settings_of


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


def in_use(specs: list[TermSpec]) -> list[TermSpec]:
    """The terms a run builds and computes: those of weight ≠ 0. A term at weight 0 (a sweep's "off") is not built:
    it asks for no features, no teacher-cache entries, no batch size and no attention implementation, so the run is
    exactly the method without it (MiniLM at weight 0 is VKD, FSD with λ_L = λ_G = 0 is FSDI). The run record still
    lists it, at weight 0."""
    return [spec for spec in specs if spec.weight != 0]


def one_stage(options: Any, config: Any) -> int:
    return 1


@dataclass(frozen=True)
class Method:
    """A preset: ``build(options, config)`` gives its weighted terms. ``options``: the method's options class (a
    dataclass of :func:`fsdkit.settings.setting` fields, composed of :mod:`fsdkit.methods.parts`); its settings
    are ``fsdkit distill`` flags and config keys, and a run's ``config.method_options`` is an instance of it.
    ``stages(options, config)``: the number of training stages of the method's schedule."""

    name: str
    description: str
    options: type
    build: Callable[[Any, Any], list[TermSpec]]
    needs_memory: bool = False
    stages: Callable[[Any, Any], int] = one_stage

    def settings(self) -> dict[str, Setting]:
        """Name → :class:`~fsdkit.settings.Setting` of the method's options."""
        return settings_of(self.options)


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
