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


def register_method(method: Method) -> Method:
    """Make ``method`` available as ``--method NAME``; its declared options become ``fsdkit distill`` flags and config
    keys (an option another method declares too must be the same declaration)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is defined twice")
    table = merge_options([("the registered methods", tuple(_OPTIONS.values())), (f"method {method.name!r}", method.options)])
    METHODS[method.name] = method
    _OPTIONS.clear()
    _OPTIONS.update(table)
    return method


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method` (and the options only it declared)."""
    METHODS.pop(name)
    table = merge_options([(m.name, m.options) for m in METHODS.values()])
    _OPTIONS.clear()
    _OPTIONS.update(table)


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
