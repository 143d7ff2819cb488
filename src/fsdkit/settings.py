"""One declaration per setting: its name, type, default, help and valid values, read by every consumer.

A setting is a field of a settings dataclass declared with :func:`setting` — a command's config
(:class:`fsdkit.config.RunConfig` and its subclasses) or a method's options (:mod:`fsdkit.methods.parts`). From that
one declaration come the command's flag (``--name-with-dashes``) and its help text, the config-file key, the range
check of a value given by a flag, a config file, the Python API or a sweep space (:meth:`Setting.check`), and the
defaults ``fsdkit methods`` prints. Config example (a YAML file for ``fsdkit distill --config``; keys are flag
names)::

    method: pkd
    batch-size: 32        # a run setting: checked against its declared range (≥ 1)
    beta-pkd: 33.3        # a method setting: PKD's own options class declares it

Torch-free, so that the CLI's help and ``fsdkit methods`` answer without importing the training stack.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any

from fsdkit.coercion import coerce_value
from fsdkit.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One setting: its ``name`` (snake_case; the flag is ``--name-with-dashes``), annotated ``type`` (``float``,
    ``int``, ``str``, ``float | None``, ``str | list[list[int]]``, …), ``default``, ``help`` and valid values:
    ``low`` / ``high`` bounds (inclusive; ``low_open`` / ``high_open`` make them strict) or ``choices``."""

    name: str
    type: Any
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def valid_range(self) -> str:
        """The valid values in words (``> 0``, ``≥ 0 and ≤ 1``, ``one of restart, global``), or ``""``."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        lower = None if self.low is None else ("> " if self.low_open else "≥ ") + f"{self.low:g}"
        upper = None if self.high is None else ("< " if self.high_open else "≤ ") + f"{self.high:g}"
        return " and ".join(filter(None, (lower, upper)))

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` coerced to the setting's type and checked against its range; :class:`ConfigError` naming the
        flag (and ``where`` the value came from: a config file, a sweep space) otherwise."""
        prefix = f"{where}: " if where else ""
        try:
            value = coerce_value(self.type, value)
        except ValueError as exc:
            raise ConfigError(f"{prefix}{self.flag}: {exc}") from None
        if value is None or isinstance(value, (list, dict, bool)):
            return value
        if not self.accepts(value):
            raise ConfigError(f"{prefix}{self.flag} must be {self.valid_range()}, got {value!r}")
        return value

    def accepts(self, value: Any) -> bool:
        """Whether a value of the setting's type lies in its range."""
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    **cli: Any,
) -> Any:
    """A dataclass field declaring a setting (see :class:`Setting`). ``cli``: how the command line spells it —
    ``positional=True``, ``nargs="+"``, ``repeat="loss"`` (a repeatable flag of another name), ``hidden=True``."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices}
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds, **cli})


@functools.cache
def settings_of(cls: type) -> dict[str, Setting]:
    """Name → :class:`Setting` of every visible field of the settings dataclass ``cls``, in field order."""
    types = typing.get_type_hints(cls)
    table = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("hidden"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        bounds = f.metadata.get("bounds") or {}
        table[f.name] = Setting(f.name, types[f.name], default, f.metadata.get("help", ""), **bounds)
    return table


def merge_settings(groups: list[tuple[str, dict[str, Setting]]]) -> dict[str, Setting]:
    """One name → :class:`Setting` table from the settings of several declarers (``(owner, settings)`` pairs). A
    setting shared by several declarers must be the same declaration in each (declared once, referred to by all)."""
    table: dict[str, Setting] = {}
    owners: dict[str, str] = {}
    for owner, settings in groups:
        for name, declared in settings.items():
            if name in table and table[name] != declared:
                raise ValueError(
                    f"setting {name!r} of {owner} differs from the one {owners[name]} declares; "
                    f"declare it once and refer to that declaration"
                )
            table.setdefault(name, declared)
            owners.setdefault(name, owner)
    return table
