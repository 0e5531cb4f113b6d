"""One heap of deadlines for every call of an agent: retransmissions, give-ups, holds.

Pure: it is told the time. An agent keeps one event-loop timer armed at `next_at` and,
when it fires, runs what `pop_due(now)` returns; thousands of calls then cost one loop
timer instead of one each. A cancelled entry stays in the heap, marked dead, until it
reaches the top (cancelling is O(1); the heap never has to be searched).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

# [when, order, callback, argument]; a cancelled entry has callback None
Entry = list[Any]
Callback = Callable[..., None]  # run by the owner of the heap, with what it passes


class TimerHeap:
    """Deadlines as (when, callback, argument); equal deadlines run in the order pushed."""

    __slots__ = ("_heap", "_order", "_live")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._order = itertools.count()
        self._live = 0

    def __len__(self) -> int:
        """Deadlines pushed and neither cancelled nor popped yet."""
        return self._live

    def push(self, when: float, callback: Callback, argument: Any = None) -> Entry:
        """Add a deadline; the returned entry is the handle `cancel` takes."""
        entry = [when, next(self._order), callback, argument]
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def cancel(self, entry: Entry | None) -> None:
        """Forget a deadline (None, popped or cancelled ones are ignored)."""
        if entry is not None and entry[2] is not None:
            entry[2] = entry[3] = None
            self._live -= 1

    @property
    def next_at(self) -> float:
        """The earliest live deadline, math.inf when there is none."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def pop_due(self, now: float) -> list[tuple[Callback, Any]]:
        """Remove and return, earliest first, every live deadline at or before `now`."""
        heap, due = self._heap, []
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            entry = pop(heap)
            callback = entry[2]
            if callback is not None:
                due.append((callback, entry[3]))
                entry[2] = entry[3] = None
                self._live -= 1
        return due
