"""The exceptions fsdkit raises for bad input: each message names the file, line, option or value at fault."""


class FsdkitError(Exception):
    """Base class: an input or configuration problem the user can fix."""


class DataError(FsdkitError, ValueError):
    """A data file is missing, malformed or has values outside the task's label space."""


class ConfigError(FsdkitError, ValueError):
    """An option, config key or combination of options is invalid."""


class ModelError(FsdkitError, ValueError):
    """A model path is missing or two models are incompatible for the requested losses."""


class NonFiniteError(ValueError):
    """A similarity's input holds non-finite values (a diverged run's features); the trainer turns it into its stop
    naming the loss term (a :class:`FloatingPointError`)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when the message is empty), for one-line errors."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never prints a (possibly huge) value in full."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def decode_utf8(raw: bytes, where: str, error: type[Exception]) -> str:
    """``raw`` as UTF-8 text (a byte-order mark dropped); ``error`` naming ``where``, the line and the byte
    otherwise."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(
            f"{where}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8; save it as UTF-8 (e.g. "
            f"iconv -f latin1 -t utf-8)"
        ) from None
