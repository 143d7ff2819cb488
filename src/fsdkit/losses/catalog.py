"""The loss-term catalog: every built-in term registered, and building a term by name from a config entry.

Dependencies run one way: the term modules register themselves with :mod:`fsdkit.losses.registry` (they import
it); this module imports them all, so that once it is imported :data:`TERMS` holds every built-in term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsdkit.losses.terms  # noqa: F401  (each term module registers its terms)
from fsdkit.errors import ConfigError
from fsdkit.losses.base import LossTerm, TermContext
from fsdkit.losses.registry import TERMS, term_options

__all__ = ["TERMS", "build_term", "term_class", "term_options"]


def term_class(name: str, options: Mapping[str, Any] | None = None) -> type[LossTerm]:
    """The term class registered as ``name``, once ``options`` are known to be its constructor keywords."""
    if name not in TERMS:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(TERMS))}")
    cls = TERMS[name]
    allowed = term_options(cls)
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ConfigError(f"loss {name!r}: unknown option(s) {unknown}; accepted: {', '.join(allowed) or 'none'}")
    return cls


def build_term(name: str, ctx: TermContext, options: Mapping[str, Any] | None = None) -> LossTerm:
    """Instantiate the term registered as ``name`` with ``options`` (its constructor keywords)."""
    return term_class(name, options)(ctx, **dict(options or {}))
