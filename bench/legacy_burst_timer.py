"""The thread-per-worker burst engine the rig used before rig/load/burstsender.py, kept
here only as the baseline bench_bursts.py and the time-to-reproduce bench compare against.

W pre-started threads each sleep until the burst's monotonic deadline by themselves and
run their action (start their streams) when they wake; the fire time of a worker is read
just before its action. SCHED_FIFO when allowed, else the timer slack lowered to 1 ns.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

REALTIME_PRIORITY = 10
PR_SET_TIMERSLACK = 29
ACTION_TIMEOUT_S = 30.0


def _tune_thread(realtime: bool) -> None:
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
            return
        except (OSError, AttributeError):
            pass
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@dataclass
class _Burst:
    deadline: float
    actions: Sequence[Callable[[], None]]
    fire_times: list[float]
    done: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    errors: list[BaseException] = field(default_factory=list)


class LegacyBurstTimer:
    """W worker threads wait for one monotonic deadline, each on its own timer."""

    def __init__(self, workers: int, realtime: bool = True) -> None:
        self.workers = workers
        self._inboxes: list[queue.SimpleQueue[_Burst | None]] = [
            queue.SimpleQueue() for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(i, realtime), daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def fire(self, deadline: float, actions: Sequence[Callable[[], None]]) -> list[float]:
        """Run actions[i] on worker i at the deadline; returns each worker's fire time."""
        burst = _Burst(deadline, actions, [0.0] * self.workers)
        for inbox in self._inboxes:
            inbox.put(burst)
        for _ in range(self.workers):
            if not burst.done.acquire(timeout=max(0.0, deadline - time.monotonic())
                                      + ACTION_TIMEOUT_S):
                raise RuntimeError("legacy burst workers still busy")
        if burst.errors:
            raise RuntimeError(f"a legacy burst action failed: {burst.errors[0]!r}")
        return burst.fire_times

    def _work(self, i: int, realtime: bool) -> None:
        _tune_thread(realtime)
        inbox = self._inboxes[i]
        while (burst := inbox.get()) is not None:
            while (left := burst.deadline - time.monotonic()) > 0:
                time.sleep(left)
            burst.fire_times[i] = time.monotonic()
            try:
                burst.actions[i]()
            except BaseException as exc:  # reported by fire()
                burst.errors.append(exc)
            finally:
                burst.done.release()

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> LegacyBurstTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
