"""A node's clock offset to the coordinator from NTP-style exchanges (plain values).

One exchange: the coordinator sends at t0 (its wall clock), the node receives at t1 and
replies at t2 (the node's wall clock), the coordinator receives at t3. With a symmetric
path the node's clock is ahead by ((t1 - t0) + (t2 - t3)) / 2; the round trip less the
node's own time, (t3 - t0) - (t2 - t1), bounds the error. Of a few exchanges the one with
the least delay is kept (RFC 5905's clock filter, in its simplest form).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Exchange:
    t0: float  # coordinator sends
    t1: float  # node receives
    t2: float  # node replies
    t3: float  # coordinator receives

    @property
    def offset(self) -> float:
        """How far the node's clock is ahead of the coordinator's, in seconds."""
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2

    @property
    def delay(self) -> float:
        """The round trip, without the time the node held the request."""
        return (self.t3 - self.t0) - (self.t2 - self.t1)


@dataclass(frozen=True)
class Offset:
    offset_s: float
    delay_s: float
    exchanges: int


def best_offset(exchanges: Sequence[Exchange]) -> Offset:
    """The offset of the exchange with the least delay."""
    if not exchanges:
        raise ValueError("no clock exchanges")
    best = min(exchanges, key=lambda e: e.delay)
    return Offset(offset_s=best.offset, delay_s=best.delay, exchanges=len(exchanges))


def to_node_clock(instant: float, offset_s: float) -> float:
    """A coordinator wall-clock instant on the node's wall clock."""
    return instant + offset_s
