"""Values from config files and flags coerced to the annotated types of the settings, and the ``--loss`` flag's
``NAME:WEIGHT[:key=value,...]`` form: the parsing every settings module shares (config, method settings, method
presets), so that none of them imports another to parse a value."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import yaml

from fsdkit.errors import ConfigError, short_repr


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def coerce_value(tp, value: Any) -> Any:
    """Convert ``value`` (from YAML/JSON or a flag string) to the annotated type ``tp``; ValueError if it can't."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce_value(arg, value)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors))
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            if item is dict:
                raise ValueError(f"expected a list of mappings, got {short_repr(value)}")
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {short_repr(value)}")
        return [coerce_value(item, v) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"expected true or false, got {short_repr(value)}")
    if tp in (int, float):
        what = "an integer" if tp is int else "a number"
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected {what}, got {short_repr(value)}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {what}, got {short_repr(value)}") from None
    if tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {short_repr(value)}")
        return value
    if tp is str:
        if isinstance(value, bool):  # never meant as the text 'True' (a folder named so, a method 'False')
            raise ValueError(f"expected a string, got {value} (in YAML, quote yes/no/on/off/true/false to mean text)")
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a string, got {short_repr(value)}")
        return str(value)
    raise TypeError(f"unsupported config type {_type_name(tp)}")


_LOSS_FLAG = re.compile(r"^(?P<name>[A-Za-z_][\w-]*):(?P<weight>[^:]+)(?::(?P<options>.*))?$")


def parse_loss_flag(text: str) -> dict[str, Any]:
    """``NAME:WEIGHT[:key=value,...]`` → ``{"name", "weight", **options}`` (values parsed as YAML scalars)."""
    match = _LOSS_FLAG.match(text.strip())
    if not match:
        raise ConfigError(
            f"loss {short_repr(text)}: expected NAME:WEIGHT[:key=value,...], e.g. "
            f"structure:10:view=local,similarity=procrustes"
        )
    entry: dict[str, Any] = {"name": match["name"], "weight": match["weight"]}
    for item in filter(None, (match["options"] or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"loss {short_repr(text)}: option {short_repr(item)} is not key=value")
        try:
            entry[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"loss {short_repr(text)}: option {short_repr(item)}: the value is not a YAML scalar"
            ) from None
    return entry
