"""Physical against logical counters: the numerics behind the `tracks` check.

A physical counter (objects the kernel or the module holds: pins, forwarding targets, slab
objects, conntrack entries) should follow a logical one (what needs them: shards, streams,
flows). The gap `physical - ratio x logical` is the drift; a leak shows as a gap that stays,
or as physical growth while the logical side is flat. Pure functions on (t, value) pairs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rig.series import Series


@dataclass(frozen=True)
class Point:
    """One sample of the pair: t in run seconds, both sides and the gap between them."""

    t: float
    physical: float
    logical: float
    gap: float


@dataclass(frozen=True)
class Growth:
    """The steepest physical growth over a window in which the logical side was flat."""

    per_minute: float
    start: float
    stop: float


def pair_points(
    series: Series, physical: str, logical: Sequence[str], ratio: float,
    offset_at: float | None = None,
) -> list[Point]:
    """The samples that carry the physical counter and every logical one (summed).

    With `offset_at`, the gap is measured from its value at that instant (or the first
    sample after it), for a physical counter that starts with objects the run did not make.
    """
    wanted = (physical, *logical)
    points = []
    for sample in series.samples:
        if not all(c in sample.values for c in wanted):
            continue
        phys = sample.values[physical]
        logi = sum(sample.values[c] for c in logical)
        points.append(Point(sample.t, phys, logi, phys - ratio * logi))
    if offset_at is None or not points:
        return points
    base = next((p for p in reversed(points) if p.t <= offset_at), points[0])
    return [Point(p.t, p.physical, p.logical, p.gap - base.gap) for p in points]


def persisting_peak(values: Sequence[float], persist: int) -> tuple[float, int]:
    """The highest level held for `persist` consecutive values, and where that run starts.

    A change in flight (a pin made, not yet inserted; a target not yet removed) shows for
    less than one sample, so one sample's excess is noise; `persist` samples in a row are real.
    """
    best, where = 0.0, -1
    for i in range(len(values) - persist + 1):
        level = min(values[i : i + persist])
        if level > best:
            best, where = level, i
    return best, where


def growth_while_flat(points: Sequence[Point], window: float, flat: float) -> Growth | None:
    """The steepest growth of the physical side, per minute, over any span of at least
    `window` seconds in which the logical side moved by no more than `flat`.

    Each span starts at a sample and ends at the first sample `window` seconds later; the
    logical side's range over it is kept with two monotonic queues, so this is linear.
    """
    best: Growth | None = None
    lows: deque[int] = deque()
    highs: deque[int] = deque()
    end = -1
    for start in range(len(points)):
        while lows and lows[0] < start:
            lows.popleft()
        while highs and highs[0] < start:
            highs.popleft()
        while end + 1 < len(points) and (end < start or points[end].t - points[start].t < window):
            end += 1
            _push(lows, points, end, keep_lower=True)
            _push(highs, points, end, keep_lower=False)
        span = points[end].t - points[start].t
        if span < window or span <= 0:
            break
        if points[highs[0]].logical - points[lows[0]].logical > flat:
            continue
        rate = (points[end].physical - points[start].physical) / span * 60.0
        if best is None or rate > best.per_minute:
            best = Growth(rate, points[start].t, points[end].t)
    return best


def _push(queue: deque[int], points: Sequence[Point], index: int, keep_lower: bool) -> None:
    """Append index, first dropping the indices that can no longer be the window's min
    (keep_lower) or max."""
    value = points[index].logical
    while queue:
        last = points[queue[-1]].logical
        if (last <= value) if keep_lower else (last >= value):
            break
        queue.pop()
    queue.append(index)


def slope_per_minute(pairs: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of (t, value) pairs, per minute; None for fewer than two
    distinct instants."""
    if len(pairs) < 2:
        return None
    mean_t = sum(t for t, _ in pairs) / len(pairs)
    mean_v = sum(v for _, v in pairs) / len(pairs)
    spread = sum((t - mean_t) ** 2 for t, _ in pairs)
    if spread <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in pairs) / spread * 60.0


def seconds_to_ceiling(current: float, ceiling: float, per_minute: float | None) -> float | None:
    """Seconds until `current` reaches `ceiling` growing at `per_minute`: 0 when already
    there, None when it does not grow."""
    if current >= ceiling:
        return 0.0
    if per_minute is None or per_minute <= 0:
        return None
    return (ceiling - current) / per_minute * 60.0
