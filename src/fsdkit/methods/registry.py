"""Every method by name: FSD's (:mod:`fsdkit.methods.fsd`) and the baselines' (:mod:`fsdkit.methods.baselines`).

``--method NAME`` is looked up here; :func:`method_options` turns the values a run gives into the method's typed
options (refusing a setting the method does not have); :func:`run_terms` adds the ``--loss`` / ``losses:`` extra
terms to a method's; :func:`register_method` adds a method of your own (its options class's settings become flags
and config keys at once); :func:`all_settings` is the table of every method's settings (torch-free: ``fsdkit
methods`` and the CLI read it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fsdkit.errors import ConfigError
from fsdkit.methods.base import Method, TermSpec, extra_term_specs
from fsdkit.methods.baselines import BASELINE_METHODS
from fsdkit.methods.fsd import FSD_METHODS
from fsdkit.settings import Setting, merge_settings

METHODS: dict[str, Method] = {}
_SETTINGS: dict[str, Setting] = {}


def _set_methods(methods: list[Method]) -> None:
    """Make ``methods`` the registry, with their settings' table (checked first: nothing changes if it fails)."""
    table = merge_settings([(f"method {m.name!r}", m.settings()) for m in methods])
    METHODS.clear()
    METHODS.update((m.name, m) for m in methods)
    _SETTINGS.clear()
    _SETTINGS.update(table)


def register_method(method: Method) -> Method:
    """Make ``method`` available as ``--method NAME``; its options' settings become ``fsdkit distill`` flags and config
    keys (a setting another method declares too must be the same declaration: compose the shared parts)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is defined twice")
    if not dataclasses.is_dataclass(method.options):
        raise ValueError(f"method {method.name!r}: its options must be a dataclass of fsdkit.settings.setting fields")
    _set_methods([*METHODS.values(), method])
    return method


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method` (and the settings only it declared)."""
    _set_methods([m for m in METHODS.values() if m.name != name])


def all_settings() -> dict[str, Setting]:
    """Name → :class:`~fsdkit.settings.Setting` of every registered method's settings."""
    return _SETTINGS


def methods_with(name: str) -> list[str]:
    """The registered methods whose options have the setting ``name``."""
    return [m.name for m in METHODS.values() if name in m.settings()]


for _method in (*FSD_METHODS, *BASELINE_METHODS):
    register_method(_method)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_options(name: str, given: Any = None, where: str = "") -> Any:
    """The typed options of method ``name``: ``given`` (an instance of its options class, a mapping of setting names
    to values, or None for the defaults), each value checked against its declared range. A setting of another
    method is refused, naming the methods that have it."""
    method = get_method(name)
    if isinstance(given, method.options):
        return given
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        given = dataclasses.asdict(given)
    if given is not None and not isinstance(given, Mapping):
        raise ConfigError(
            f"options of method {name!r}: expected a mapping of setting names, got {type(given).__name__}"
        )
    own = method.settings()
    values = {}
    for key, value in (given or {}).items():
        if key not in own:
            raise not_a_setting(name, key, where)
        values[key] = own[key].check(value, where)
    return method.options(**values)


def not_a_setting(name: str, key: str, where: str = "") -> ConfigError:
    """The error for a setting ``key`` that method ``name`` does not have: which methods have it, and its own."""
    own = get_method(name).settings()
    others = methods_with(key)
    return ConfigError(
        (f"{where}: " if where else "")
        + f"--{str(key).replace('_', '-')} is not a setting of --method {name}"
        + (f"; it is one of {', '.join(others)}" if others else "")
        + (f"; {name}'s settings: {', '.join(s.flag for s in own.values())}" if own else f"; {name} has none")
    )


def run_terms(config: Any) -> list[TermSpec]:
    """All term specs of a distillation run: the method's terms then the extra ``losses``."""
    specs = get_method(config.method).build(config.method_options, config)
    return specs + extra_term_specs(config.losses, {s.label for s in specs})
