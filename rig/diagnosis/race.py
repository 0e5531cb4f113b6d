"""Race or real growth: concurrent make_shard calls of the relay's worker threads.

Every make_shard call logs how many shards the pool had, how many of them were full and how
many had space (the model relay logs after inserting its shard, rtpengine's instrumentation
line before; both count the shards other than the new one as `space`). A call that saw more
shards with space than the call before it saw a shard another thread had just added: it did
not need its own. (Space already there before does not count: the stock model relay keeps
every phantom shard in the pool with its space unused, so after the first race every later
call sees some.) Calls close together in time (each within `window_ms` of the previous one)
form a cluster; a cluster from two or more threads is concurrent. Within a concurrent
cluster, calls that saw the same number of full shards were answering the same fill cliff:
only one of them was needed. A concurrent cluster with a call of either kind is racing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from pydantic import Field

from rig.checks import Params, RunWindow, Verdict, register
from rig.series import Event, Series

RACE: Final = "race"
GROWTH: Final = "growth"


@dataclass(frozen=True)
class ShardCall:
    """One make_shard line: when, which thread, and what the pool looked like."""

    t: float
    thread: str
    num: int
    full: int
    space: int
    new_space: int = 0  # shards with space beyond what the previous call saw

    def describe(self) -> str:
        return f"{self.thread} num={self.num} full={self.full} space={self.space}"


@dataclass(frozen=True)
class Cluster:
    calls: tuple[ShardCall, ...]

    @property
    def threads(self) -> list[str]:
        return list(dict.fromkeys(c.thread for c in self.calls))

    @property
    def concurrent(self) -> bool:
        return len(self.threads) >= 2

    @property
    def extra(self) -> list[ShardCall]:
        """Calls that did not need their shard: they saw new space, or repeat a fill level."""
        levels: set[int] = set()
        extra = []
        for call in self.calls:
            if call.new_space > 0 or call.full in levels:
                extra.append(call)
            else:
                levels.add(call.full)
        return extra

    @property
    def racing(self) -> bool:
        return self.concurrent and bool(self.extra)


def shard_calls(events: Sequence[Event]) -> list[ShardCall]:
    """The make_shard events as calls, in time order; events lacking a field are skipped."""
    calls = []
    for e in events:
        if e.kind != "make_shard":
            continue
        try:
            calls.append(ShardCall(e.t, str(e.data["thread"]), int(e.data["num"]),
                                   int(e.data["full"]), int(e.data["space"])))
        except (KeyError, TypeError, ValueError):
            continue
    calls.sort(key=lambda c: c.t)
    spaces = [0, *(c.space for c in calls)]
    return [replace(c, new_space=max(0, c.space - before))
            for c, before in zip(calls, spaces, strict=False)]


def clusters(calls: Sequence[ShardCall], window_ms: float) -> list[Cluster]:
    """Consecutive calls no more than window_ms apart, chained into clusters."""
    groups: list[list[ShardCall]] = []
    for call in calls:
        if groups and (call.t - groups[-1][-1].t) * 1000.0 <= window_ms:
            groups[-1].append(call)
        else:
            groups.append([call])
    return [Cluster(tuple(g)) for g in groups]


def classify(calls: Sequence[ShardCall], window_ms: float) -> tuple[list[Cluster], list[Cluster]]:
    """(concurrent clusters, the racing ones among them)."""
    concurrent = [c for c in clusters(calls, window_ms) if c.concurrent]
    return concurrent, [c for c in concurrent if c.racing]


def phantom_calls(calls: Sequence[ShardCall], window_ms: float) -> set[ShardCall]:
    """The calls that did not need their shard: the extra calls of racing clusters, and lone
    calls that saw new space (a racer further away than the window)."""
    phantoms = {c for c in calls if c.new_space > 0}
    for cluster in classify(calls, window_ms)[1]:
        phantoms.update(cluster.extra)
    return phantoms


class RaceParams(Params):
    window_ms: float = Field(default=1.0, gt=0, le=1000,
                             description="make_shard calls this close form a cluster")


@register(RaceParams)
def make_shard_race(
    series: Series, events: Sequence[Event], window: RunWindow, *, window_ms: float
) -> Verdict:
    """No concurrent make_shard calls made a shard that was not needed (race vs growth)."""
    name = "make_shard_race"
    calls = shard_calls(events)
    if not calls:
        nothing = "no samples at all and " if not series.samples else ""
        return Verdict(name, False, None, 0,
                       f"{nothing}no make_shard line in the relay's log (for rtpengine, add "
                       "the bufferpool_make_shard instrumentation line)")
    concurrent, racing = classify(calls, window_ms)
    if not racing:
        lone = sum(1 for c in calls if c.new_space > 0)
        detail = (f"growth: {len(calls)} make_shard call(s), {len(concurrent)} concurrent "
                  f"cluster(s) within {window_ms:g} ms, every shard was needed")
        if lone:
            detail += (f" ({lone} lone call(s) saw new space: no other thread within "
                       f"{window_ms:g} ms)")
        return Verdict(name, True, 0, 0, detail, diagnosis=GROWTH)
    first = racing[0]
    phantoms = sum(len(c.extra) for c in racing)
    detail = (f"race: {len(racing)} of {len(concurrent)} concurrent cluster(s) made "
              f"{phantoms} shard(s) nobody needed; first at t={first.calls[0].t:.4f} s, "
              f"threads {', '.join(first.threads)}: "
              + "; ".join(c.describe() for c in first.calls))
    return Verdict(name, False, len(racing), 0, detail, diagnosis=RACE)
