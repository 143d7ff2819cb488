"""Name → loss-term class, and building a term from a config entry with clear errors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from fsdkit.errors import ConfigError
from fsdkit.losses.base import LossTerm, TermContext

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


def build_term(name: str, ctx: TermContext, options: Mapping[str, Any] | None = None) -> LossTerm:
    """Instantiate the term registered as ``name`` with ``options`` (its constructor keywords)."""
    _ensure_builtin_terms()
    if name not in TERMS:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(TERMS))}")
    cls = TERMS[name]
    options = dict(options or {})
    allowed = term_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"loss {name!r}: unknown option(s) {unknown}; accepted: {', '.join(allowed) or 'none'}")
    return cls(ctx, **options)


def _ensure_builtin_terms() -> None:
    """Import the modules whose classes register themselves (idempotent)."""
    import fsdkit.losses.terms  # noqa: F401
