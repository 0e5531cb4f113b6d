"""A mergeable latency histogram: log-linear buckets over integer nanoseconds.

Generator processes (and later Ray actors on other hosts) each fill their own histogram;
the coordinator adds them. Adding is exact: the count, sum, min and max are integers, and
a value's bucket depends only on the value, so the merge of N histograms equals the one
histogram that saw every sample, in any order of merging.

Buckets are HdrHistogram's layout: values below 2 * 2**SUB_BITS nanoseconds each have a
bucket of their own; above that, every power of two is cut into 2**SUB_BITS equal buckets.
A bucket is then never wider than 1 / 2**SUB_BITS of its lower bound, and a percentile,
read as its bucket's midpoint (clamped to the exact min and max), is within
RELATIVE_ERROR of the sample at that rank. With SUB_BITS = 7 that is 1/256 (0.39%), and a
histogram of values up to 100 s holds at most ~3,900 buckets (stored sparsely).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUB_BITS = 7
SUB_BUCKETS = 1 << SUB_BITS
RELATIVE_ERROR = 1 / (2 * SUB_BUCKETS)  # a percentile's distance from the true sample
NS = 1_000_000_000


def bucket_of(value_ns: int) -> int:
    """The bucket index of a value in nanoseconds (>= 0); indices grow with the value."""
    if value_ns < 2 * SUB_BUCKETS:
        return value_ns
    shift = value_ns.bit_length() - SUB_BITS - 1
    return shift * SUB_BUCKETS + (value_ns >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) in nanoseconds of a bucket index."""
    if index < 2 * SUB_BUCKETS:
        return index, index + 1
    shift = index // SUB_BUCKETS - 1
    low = (index - shift * SUB_BUCKETS) << shift
    return low, low + (1 << shift)


def to_ns(seconds: float) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a latency must be a finite number >= 0, got {seconds!r}")
    return round(seconds * NS)


@dataclass
class Histogram:
    """Counts per bucket plus the exact count, sum, min and max (all in nanoseconds)."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0

    def record(self, seconds: float) -> None:
        self.record_ns(to_ns(seconds))

    def record_ns(self, value: int, times: int = 1) -> None:
        if value < 0 or times < 1:
            raise ValueError(f"bad sample {value} x {times}")
        index = bucket_of(value)
        self.buckets[index] = self.buckets.get(index, 0) + times
        self.min_ns = value if self.count == 0 else min(self.min_ns, value)
        self.max_ns = max(self.max_ns, value)
        self.count += times
        self.total_ns += value * times

    def add(self, other: Histogram) -> None:
        """Fold `other` into this one (exact)."""
        if other.count == 0:
            return
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.min_ns = other.min_ns if self.count == 0 else min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns

    def percentile_ns(self, q: float) -> int | None:
        """The nearest-rank q-th percentile (the sample at rank ceil(q/100 * count)), read
        from its bucket (the first and last rank exactly); None when empty."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        if rank == 1 or rank == self.count:  # the extremes are known exactly
            return self.min_ns if rank == 1 else self.max_ns
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                middle = (low + high - 1) // 2 if high - low > 1 else low
                return min(max(middle, self.min_ns), self.max_ns)
        return self.max_ns  # unreachable while buckets and count agree

    def percentile(self, q: float) -> float | None:
        value = self.percentile_ns(q)
        return None if value is None else value / NS

    @property
    def mean(self) -> float | None:
        return self.total_ns / self.count / NS if self.count else None

    def summary_ms(self) -> dict[str, Any]:
        """The numbers a summary prints: count, mean, p50/p90/p99, min and max, in ms."""
        def ms(ns: int | None) -> float | None:
            return None if ns is None else round(ns / 1e6, 3)

        empty = self.count == 0
        return {
            "count": self.count,
            "mean_ms": None if empty else round(self.total_ns / self.count / 1e6, 3),
            "p50_ms": ms(self.percentile_ns(50)),
            "p90_ms": ms(self.percentile_ns(90)),
            "p99_ms": ms(self.percentile_ns(99)),
            "min_ms": None if empty else ms(self.min_ns),
            "max_ms": None if empty else ms(self.max_ns),
        }

    def to_json(self) -> dict[str, Any]:
        """A plain, versionless form (the bucket layout is in `sub_bits`)."""
        return {"sub_bits": SUB_BITS, "count": self.count, "total_ns": self.total_ns,
                "min_ns": self.min_ns, "max_ns": self.max_ns,
                "buckets": {str(k): v for k, v in sorted(self.buckets.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        if data.get("sub_bits") != SUB_BITS:
            raise ValueError(f"histogram of sub_bits {data.get('sub_bits')} (allowed: {SUB_BITS})")
        return cls({int(k): int(v) for k, v in data["buckets"].items()}, int(data["count"]),
                   int(data["total_ns"]), int(data["min_ns"]), int(data["max_ns"]))

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Histogram:
        histogram = cls()
        for value in seconds:
            histogram.record(value)
        return histogram


def merged(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for histogram in histograms:
        out.add(histogram)
    return out


def merge_named(parts: Iterable[Mapping[str, Histogram]]) -> dict[str, Histogram]:
    """Histograms by name over several processes: each name's histograms added."""
    out: dict[str, Histogram] = {}
    for part in parts:
        for name, histogram in part.items():
            out.setdefault(name, Histogram()).add(histogram)
    return out
