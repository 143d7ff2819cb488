"""Declared options: a method's settings, each declared once (name, type, default, help, valid range).

A method preset (:class:`fsdkit.training.methods.Method`) lists the options its terms read — PKD's ``beta_pkd`` and
``pkd_layers``, RKD's two weights, … — as :class:`Option` objects. From those declarations alone come
``fsdkit distill``'s flags, the keys a config file may hold, the defaults ``fsdkit methods`` prints and the range
checks: adding a method (or a loss with a method around it) is one class and one registration, with no edit of
:class:`~fsdkit.config.DistillConfig`, the CLI or the validation. Config example (a YAML file for ``fsdkit distill
--config``; the keys are the flag names)::

    method: pkd
    beta-pkd: 33.3
    pkd-layers: "1:2,2:4"

Torch-free, so that the CLI's help and ``fsdkit methods`` answer without importing the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsdkit.coercion import coerce_value
from fsdkit.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One setting of a method: its ``name`` (snake_case; the flag is ``--name-with-dashes``), annotated ``type``
    (``float``, ``int``, ``str``, ``float | None``, ``str | list[list[int]]``, …), ``default``, ``help`` and
    valid values: ``low`` / ``high`` bounds (inclusive; ``low_open`` makes the lower one strict) or ``choices``."""

    name: str
    type: Any
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def valid_range(self) -> str:
        """The valid values in words (``> 0``, ``in [0, 1]``, ``one of restart, global``), or ``""``."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        lower = None if self.low is None else ("> " if self.low_open else "≥ ") + f"{self.low:g}"
        upper = None if self.high is None else f"≤ {self.high:g}"
        return " and ".join(filter(None, (lower, upper)))

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` coerced to the option's type and checked against its range; :class:`ConfigError` naming the
        option (and ``where`` it came from: a config file, a sweep space) otherwise."""
        prefix = f"{where}: " if where else ""
        try:
            value = coerce_value(self.type, value)
        except ValueError as exc:
            raise ConfigError(f"{prefix}{self.flag}: {exc}") from None
        if value is None or isinstance(value, (list, dict)):
            return value
        bad = (
            (self.choices is not None and value not in self.choices)
            or (self.low is not None and (value < self.low or (self.low_open and value == self.low)))
            or (self.high is not None and value > self.high)
        )
        if bad:
            raise ConfigError(f"{prefix}{self.flag} must be {self.valid_range()}, got {value!r}")
        return value


def merge_options(groups: list[tuple[str, tuple[Option, ...]]]) -> dict[str, Option]:
    """One name → :class:`Option` table from the options of several declarers (``(owner, options)`` pairs). An option
    shared by several methods must be the same declaration in each (declared once, referred to by all)."""
    table: dict[str, Option] = {}
    owners: dict[str, str] = {}
    for owner, options in groups:
        for option in options:
            if option.name in table and table[option.name] != option:
                raise ValueError(
                    f"option {option.name!r} of {owner} differs from the one {owners[option.name]} declares; "
                    f"declare it once and refer to that declaration"
                )
            table.setdefault(option.name, option)
            owners.setdefault(option.name, owner)
    return table
