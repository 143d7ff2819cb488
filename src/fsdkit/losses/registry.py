"""Name → loss-term class: the registry the term modules register themselves in (``@register_term``).

Building a term by name is :func:`fsdkit.losses.catalog.build_term`, which imports every built-in term first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from fsdkit.losses.base import LossTerm

TERMS: dict[str, type[LossTerm]] = {}


def register_term(name: str) -> Callable[[type[LossTerm]], type[LossTerm]]:
    """Class decorator: make a :class:`LossTerm` available to configs under ``name``."""

    def decorate(cls: type[LossTerm]) -> type[LossTerm]:
        if name in TERMS:
            raise ValueError(f"loss term {name!r} is registered twice")
        cls.name = name
        TERMS[name] = cls
        return cls

    return decorate


def term_options(cls: type[LossTerm]) -> list[str]:
    """The options a term accepts in a config (its constructor's keyword arguments)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, ctx
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
