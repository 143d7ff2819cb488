"""Every method by name: FSD's (:mod:`fsdkit.training.methods`) and the baselines' (:mod:`fsdkit.training.baselines`).

``--method NAME`` is looked up here; ``run_terms`` adds the ``--loss`` / ``losses:`` extra terms to a method's;
:func:`register_method` adds a method of your own (its declared options become flags and config keys at once);
:func:`declared_options` is the table of every method's options (torch-free: ``fsdkit methods`` reads it).
"""

from __future__ import annotations

from fsdkit.errors import ConfigError
from fsdkit.options import Option, merge_options
from fsdkit.training.baselines import BASELINE_METHODS
from fsdkit.training.methods import FSD_METHODS, Method, TermSpec, extra_term_specs

METHODS: dict[str, Method] = {}
_OPTIONS: dict[str, Option] = {}


def _set_methods(methods: list[Method]) -> None:
    """Make ``methods`` the registry, with their options' table (checked first: nothing changes if it fails)."""
    table = merge_options([(f"method {m.name!r}", m.options) for m in methods])
    METHODS.clear()
    METHODS.update((m.name, m) for m in methods)
    _OPTIONS.clear()
    _OPTIONS.update(table)


def register_method(method: Method) -> Method:
    """Make ``method`` available as ``--method NAME``; its declared options become ``fsdkit distill`` flags and config
    keys (an option another method declares too must be the same declaration)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is defined twice")
    _set_methods([*METHODS.values(), method])
    return method


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method` (and the options only it declared)."""
    _set_methods([m for m in METHODS.values() if m.name != name])


def declared_options() -> dict[str, Option]:
    """Name → :class:`Option` of every registered method's options."""
    return _OPTIONS


for _method in (*FSD_METHODS, *BASELINE_METHODS):
    register_method(_method)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def run_terms(config) -> list[TermSpec]:
    """All term specs of a distillation run: the method's terms then the extra ``losses``."""
    specs = get_method(config.method).build(config)
    return specs + extra_term_specs(config.losses, {s.label for s in specs})
