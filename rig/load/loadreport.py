"""What a load run did, as a value that adds up: one process's LoadReport, or N merged.

Every field merges exactly (counters add, maxima take the max, histograms add bucket by
bucket, bursts of the same index join their shots), so a run of N generator processes has
the same summary shape as a run of one, and the numbers of the one that saw all the calls.
Pure: no socket, process or asyncio code, so a Ray actor's result can be merged anywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rig.load.bursts import BurstResult
from rig.load.histogram import Histogram, merge_named
from rig.wire.rtpstats import RtpStats


@dataclass(frozen=True)
class LoadReport:
    calls_attempted: int
    calls_completed: int
    calls_failed: int
    outcomes: Mapping[str, int]  # completed calls per outcome
    cps_achieved: float  # calls attempted per second of load
    rtp_sent: int
    rtp_received: int
    rtp_lost: int
    jitter_ms_max: float
    bursts: tuple[BurstResult, ...]  # one per burst fired
    seconds: float = 0.0  # how long the load ran
    latency: Mapping[str, Histogram] = field(default_factory=dict)  # e.g. invite_200
    failures: Mapping[str, int] = field(default_factory=dict)  # failed calls per reason
    # every RTP counter (duplicates, reordering, jitter mean, ...); the rtp_* fields above
    # are the same numbers under the names summaries have always had
    rtp: RtpStats = field(default_factory=RtpStats)


def merge_reports(reports: Sequence[LoadReport]) -> LoadReport:
    """The report of N processes that ran side by side: cps over the longest of them."""
    if not reports:
        raise ValueError("no load reports to merge")
    seconds = max(r.seconds for r in reports)
    attempted = sum(r.calls_attempted for r in reports)
    return LoadReport(
        calls_attempted=attempted,
        calls_completed=sum(r.calls_completed for r in reports),
        calls_failed=sum(r.calls_failed for r in reports),
        outcomes=dict(_added(r.outcomes for r in reports)),
        cps_achieved=attempted / seconds if seconds > 0 else sum(r.cps_achieved
                                                                 for r in reports),
        rtp_sent=sum(r.rtp_sent for r in reports),
        rtp_received=sum(r.rtp_received for r in reports),
        rtp_lost=sum(r.rtp_lost for r in reports),
        jitter_ms_max=max(r.jitter_ms_max for r in reports),
        bursts=merge_bursts([r.bursts for r in reports]),
        seconds=seconds,
        latency=merge_named(r.latency for r in reports),
        failures=dict(_added(r.failures for r in reports)),
        rtp=RtpStats.merged(r.rtp for r in reports),
    )


def merge_bursts(per_process: Sequence[Sequence[BurstResult]]) -> tuple[BurstResult, ...]:
    """One result per burst index: the shares every process fired at that burst's instant."""
    by_index: dict[int, list[BurstResult]] = {}
    for results in per_process:
        for result in results:
            by_index.setdefault(result.index, []).append(result)
    return tuple(merge_burst(by_index[i]) for i in sorted(by_index))


def merge_burst(shares: Sequence[BurstResult]) -> BurstResult:
    """One burst from its shares (same index): the earliest deadline, all the shots."""
    if not shares or len({s.index for s in shares}) != 1:
        raise ValueError("a burst merges from shares of one index")
    if len(shares) == 1:
        return shares[0]
    return BurstResult(
        index=shares[0].index,
        deadline=min((s.deadline for s in shares), key=lambda d: d.monotonic),
        send_times=tuple(t for s in shares for t in s.send_times),
        arrivals=tuple(t for s in shares for t in s.arrivals),
        errors=sum(s.errors for s in shares),
        lost=sum(s.lost for s in shares),
        processes=sum(s.processes for s in shares),
    )


def merge_snapshots(snapshots: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The live counters of several processes (LoadDriver.snapshot) summed by name."""
    out: dict[str, float] = {}
    for snapshot in snapshots:
        for name, value in snapshot.items():
            out[name] = out.get(name, 0.0) + value
    return out


def _added(parts: Iterable[Mapping[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return total
