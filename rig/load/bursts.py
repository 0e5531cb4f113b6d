"""Synchronised bursts as plain values: which stream sends, in which order, at which instant,
and how well a burst met its deadline.

A burst is a set of first packets of new streams, not a set of threads. The plan says, for
every stream, its place in the sending order, which sender process sends it, and its
instant: the burst's deadline plus the stream's jitter (zero unless a bench asks for some).
The deadline is an absolute instant on two clocks: CLOCK_MONOTONIC for the processes of one
host, and CLOCK_REALTIME so that generator processes (and, later, hosts) agree on it.

The I/O side (pre-bound sockets, pre-built packets, the spin and the send loop) is in
rig/load/burstsender.py; this module imports no socket, thread or process code.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Address = tuple[str, int]


class WallClock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


@dataclass(frozen=True)
class Deadline:
    """One instant on both clocks, in seconds."""

    monotonic: float
    realtime: float

    @classmethod
    def at(cls, monotonic: float, clock: WallClock) -> Deadline:
        """The monotonic instant with its CLOCK_REALTIME twin, read from one clock pair."""
        return cls(monotonic, clock.wall() + (monotonic - clock.monotonic()))


@dataclass(frozen=True)
class Shot:
    """One stream's first packet in a burst: `stream` indexes the caller's streams."""

    stream: int
    target: Address
    process: int  # which sender process sends it
    offset: float = 0.0  # seconds after the deadline (deliberate jitter)


@dataclass(frozen=True)
class ShotPlan:
    index: int
    deadline: Deadline
    shots: tuple[Shot, ...]  # in sending order

    def share(self, process: int) -> tuple[Shot, ...]:
        """The shots one sender process fires, in their sending order."""
        return tuple(s for s in self.shots if s.process == process)


def interleave(targets: Sequence[Address], lanes: int) -> list[int]:
    """Sending order of the streams (indices into `targets`): round-robin over `lanes`.

    A target's lane is its port / 2 modulo `lanes` (RTP ports are even, and a relay that
    hands ports to its worker threads in turn puts neighbours on different threads);
    consecutive packets then go to different lanes while every lane has some left. Within
    a lane the order is by port. One lane keeps the caller's order.
    """
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    if lanes == 1:
        return list(range(len(targets)))
    by_lane: list[list[int]] = [[] for _ in range(lanes)]
    for i in sorted(range(len(targets)), key=lambda i: (targets[i][1], targets[i][0], i)):
        by_lane[(targets[i][1] // 2) % lanes].append(i)
    order: list[int] = []
    for turn in range(max((len(lane) for lane in by_lane), default=0)):
        order += [lane[turn] for lane in by_lane if turn < len(lane)]
    return order


def jitter_offsets(count: int, jitter: float, rng: random.Random) -> list[float]:
    """Per-stream delays after the deadline, uniform in [0, jitter] seconds (all 0 for 0)."""
    if jitter < 0:
        raise ValueError(f"jitter must not be negative, got {jitter}")
    if jitter == 0:
        return [0.0] * count
    return [rng.uniform(0.0, jitter) for _ in range(count)]


def plan_burst(
    index: int,
    deadline: Deadline,
    targets: Sequence[Address],
    *,
    lanes: int = 1,
    processes: int = 1,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> ShotPlan:
    """The burst's shots: interleaved over `lanes`, dealt in turn to `processes` senders
    (so each sender's share is interleaved too), sorted by instant when jittered."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    order = interleave(targets, lanes)
    offsets = jitter_offsets(len(order), jitter, rng or random.Random(index))
    shots = [Shot(stream, targets[stream], rank % processes, offset)
             for rank, (stream, offset) in enumerate(zip(order, offsets, strict=True))]
    shots.sort(key=lambda s: s.offset)  # stable: unjittered bursts keep the interleave
    return ShotPlan(index, deadline, tuple(shots))


@dataclass(frozen=True)
class BurstResult:
    """What one burst did. Send times are CLOCK_MONOTONIC, one per shot of the plan in its
    order (NaN where the kernel refused the packet); arrivals are the sink's kernel
    receive times (CLOCK_REALTIME), when the burst was sent to a sink."""

    index: int
    deadline: Deadline
    send_times: tuple[float, ...]
    arrivals: tuple[float, ...] = ()
    errors: int = 0
    lost: int = 0  # shots sent to a sink that never arrived there
    processes: int = 1

    @property
    def streams(self) -> int:
        return len(self.send_times)

    @property
    def spread_us(self) -> float:
        """Last send minus first send."""
        return _span_us(self.send_times)

    @property
    def lateness_us(self) -> float:
        """First send minus the deadline (negative never: a sender does not fire early)."""
        sent = _finite(self.send_times)
        return (min(sent) - self.deadline.monotonic) * 1e6 if sent else math.nan

    @property
    def arrival_spread_us(self) -> float | None:
        """Last arrival minus first arrival, where the packets landed; None unmeasured."""
        return _span_us(self.arrivals) if self.arrivals else None

    @property
    def arrival_lateness_us(self) -> float | None:
        """First arrival minus the deadline's CLOCK_REALTIME instant; None unmeasured."""
        landed = _finite(self.arrivals)
        return (min(landed) - self.deadline.realtime) * 1e6 if landed else None

    def event(self) -> dict[str, float | int | None]:
        """The `burst` event's data (events.jsonl)."""
        return {"index": self.index, "streams": self.streams, "processes": self.processes,
                "spread_us": _round(self.spread_us), "lateness_us": _round(self.lateness_us),
                "arrival_spread_us": _round(self.arrival_spread_us),
                "send_errors": self.errors, "lost": self.lost}


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _span_us(values: Sequence[float]) -> float:
    finite = _finite(values)
    return (max(finite) - min(finite)) * 1e6 if finite else math.nan


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile of the finite values (numpy's default); NaN for none.

    Written out so that the sender processes, which import this module, start without numpy.
    """
    finite = sorted(_finite(values))
    if not finite:
        return math.nan
    rank = (len(finite) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(finite) - 1)
    return finite[low] + (finite[high] - finite[low]) * (rank - low)


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        finite = _finite(values)
        return cls(percentile(finite, 50), percentile(finite, 99), max(finite, default=math.nan))


@dataclass(frozen=True)
class BurstSummary:
    """Per-burst spread, lateness and arrival spread over many bursts (µs)."""

    bursts: int
    streams: int  # shots over all bursts
    spread: Percentiles
    lateness: Percentiles
    arrival_spread: Percentiles | None
    errors: int = 0
    lost: int = 0

    def row(self) -> dict[str, float]:
        """Flat numbers for a table or JSON."""
        out = {"bursts": float(self.bursts), "streams": float(self.streams),
               "errors": float(self.errors), "lost": float(self.lost)}
        parts = {"spread": self.spread, "lateness": self.lateness,
                 "arrival_spread": self.arrival_spread}
        for name, p in parts.items():
            for stat in ("p50", "p99", "max"):
                out[f"{name}_{stat}_us"] = getattr(p, stat) if p is not None else math.nan
        return out


def summarize(results: Sequence[BurstResult]) -> BurstSummary:
    """Percentiles over bursts of each burst's spread, lateness and arrival spread."""
    arrivals = [s for r in results if (s := r.arrival_spread_us) is not None]
    return BurstSummary(
        bursts=len(results),
        streams=sum(r.streams for r in results),
        spread=Percentiles.of([r.spread_us for r in results]),
        lateness=Percentiles.of([r.lateness_us for r in results]),
        arrival_spread=Percentiles.of(arrivals) if arrivals else None,
        errors=sum(r.errors for r in results),
        lost=sum(r.lost for r in results),
    )
