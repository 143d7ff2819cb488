"""The exceptions fsdkit raises for bad input: each message names the file, line, option or value at fault."""


class FsdkitError(Exception):
    """Base class: an input or configuration problem the user can fix."""


class DataError(FsdkitError, ValueError):
    """A data file is missing, malformed or has values outside the task's label space."""


class ConfigError(FsdkitError, ValueError):
    """An option, config key or combination of options is invalid."""


class ModelError(FsdkitError, ValueError):
    """A model path is missing or two models are incompatible for the requested losses."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when the message is empty), for one-line errors."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]
