"""One error hierarchy; the CLI maps each class to a documented exit code."""

from __future__ import annotations

import reprlib


class RigError(Exception):
    """Base of every error the rig raises on purpose."""

    exit_code = 3


class UsageError(RigError):
    """Bad input: a scenario, an argument, a patch that does not apply. Exit 2."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario file that does not validate; the message names file and key path."""


class InfraError(RigError):
    """A service would not build or start, a port was taken, an engine is missing. Exit 3."""

    exit_code = 3

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs

    def __reduce__(self) -> tuple[type[InfraError], tuple[str, str]]:
        """Pickled with its logs: a run in another process (`--jobs`) raises it there."""
        return type(self), (str(self), self.logs)


class UnsafeTargetError(UsageError):
    """Traffic would leave loopback and the rig's own containers."""


QUOTE_LIMIT = 100


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a value for an error message, at most about `limit` characters.

    Built by reprlib, which stops at a few items and levels, so a value of 10^8 shared
    elements costs no more to quote than a short one."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 3, limit, limit, limit
    return shorten(short.repr(value), limit)


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text`, cut to `limit` characters with "..." when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WireFormatError(RigError, ValueError):
    """Bytes from the wire (SIP, SDP, RTP) that are not the format they claim to be. A
    ValueError too, so code that catches ValueError from the parsers keeps working."""
