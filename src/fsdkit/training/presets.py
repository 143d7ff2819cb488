"""Every method by name: FSD's (:mod:`fsdkit.training.methods`) and the baselines' (:mod:`fsdkit.training.baselines`).

``--method NAME`` is looked up here; ``run_terms`` adds the ``--loss`` / ``losses:`` extra terms to a method's.
"""

from __future__ import annotations

from fsdkit.errors import ConfigError
from fsdkit.training.baselines import BASELINE_METHODS
from fsdkit.training.methods import FSD_METHODS, Method, TermSpec, extra_term_specs

METHODS: dict[str, Method] = {}
for _method in (*FSD_METHODS, *BASELINE_METHODS):
    if _method.name in METHODS:
        raise ValueError(f"method {_method.name!r} is defined twice")
    METHODS[_method.name] = _method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def run_terms(config) -> list[TermSpec]:
    """All term specs of a distillation run: the method's terms then the extra ``losses``."""
    specs = get_method(config.method).build(config)
    return specs + extra_term_specs(config.losses, {s.label for s in specs})
