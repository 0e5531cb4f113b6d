"""Wire formats and protocol state machines as pure code: SIP, SDP, RTP, the NG codec.

Nothing here opens a socket, starts a thread or touches asyncio; callers pass bytes and
the time in and get bytes, values and deadlines back, so every piece is tested on plain
values. The I/O around them lives in rig.load (generators) and rig.probes (one-shot
requests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rig.errors import WireFormatError

P = ParamSpec("P")
T = TypeVar("T")


def wire_errors(parse: Callable[P, T]) -> Callable[P, T]:
    """`parse`, raising WireFormatError, never a bare ValueError, for malformed input."""

    @functools.wraps(parse)
    def strict(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return parse(*args, **kwargs)
        except WireFormatError:
            raise
        except ValueError as exc:  # int() of a digit Python will not convert, and the like
            raise WireFormatError(str(exc)) from None

    return strict
