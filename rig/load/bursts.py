"""Synchronised bursts: W pre-started workers run their actions at one monotonic deadline.

A burst is what triggers the bufferpool race in a relay: many streams whose first packets
arrive at the same instant. The driver's actions call MediaEngine.start_streams(), so the
alignment measured here is the alignment of the first packets leaving the rig.

Two ways to wake the workers (`wake=`), both measured by bench/bench_bursts.py:
- "sleep" (default): every worker sleeps until the deadline by itself, so the kernel
  wakes them all from their own timers and nobody spins. The caller of fire() only
  waits, which keeps an asyncio loop or the media threads free of a spinning thread.
- "event": workers block on one Event; the caller of fire() sleeps until shortly before
  the deadline, spins the last stretch on the clock and sets the Event. Measured slower:
  setting the Event wakes the waiters one after another from one thread.
Workers (and the spinning caller) ask for SCHED_FIFO when the system allows it: wake-ups
then preempt ordinary processes and real-time threads have no timer slack. Without the
privilege they run as ordinary threads with the timer slack lowered to 1 ns.

The fire time of a worker is read just before it runs its action, so the spread includes
waiting for the GIL: with CPython threads the workers record their times one after
another, and the spread grows with the number of workers.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rig.errors import RigError

WAKE_MODES = ("sleep", "event")
SPIN_S = 0.0005  # the caller spins this last stretch before the deadline ("event" mode)
REALTIME_PRIORITY = 10
PR_SET_TIMERSLACK = 29
ACTION_TIMEOUT_S = 30.0


class BurstError(RigError):
    """A burst action raised, or the workers did not finish in time."""


@dataclass(frozen=True)
class BurstResult:
    index: int
    deadline: float
    fire_times: tuple[float, ...]

    @property
    def offsets_us(self) -> tuple[float, ...]:
        """Fire time minus deadline, per worker, in microseconds."""
        return tuple((t - self.deadline) * 1e6 for t in self.fire_times)

    @property
    def skew_us(self) -> tuple[float, ...]:
        """Fire time minus the burst's earliest fire time, per worker, in microseconds.

        Apart from the offsets, this leaves out how late the whole burst woke (the
        machine's timer latency), which all workers share and a relay does not notice.
        """
        first = min(self.fire_times, default=0.0)
        return tuple((t - first) * 1e6 for t in self.fire_times)

    @property
    def spread_p50_us(self) -> float:
        return percentile(self.offsets_us, 50)

    @property
    def spread_p99_us(self) -> float:
        return percentile(self.offsets_us, 99)

    @property
    def spread_max_us(self) -> float:
        return max(self.offsets_us, default=0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile; 0.0 for no values."""
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values, dtype=float), q))


def spread_summary(results: Sequence[BurstResult]) -> dict[str, float]:
    """p50/p99/max over every worker of every burst, in µs: offsets from the deadline
    (spread_*) and from the burst's earliest worker (skew_*)."""
    offsets = [o for r in results for o in r.offsets_us]
    skews = [s for r in results for s in r.skew_us]
    return {
        "bursts": float(len(results)),
        "spread_p50_us": percentile(offsets, 50),
        "spread_p99_us": percentile(offsets, 99),
        "spread_max_us": max(offsets, default=0.0),
        "skew_p50_us": percentile(skews, 50),
        "skew_p99_us": percentile(skews, 99),
        "skew_max_us": max(skews, default=0.0),
    }


def try_realtime(priority: int = REALTIME_PRIORITY) -> tuple[int, os.sched_param] | None:
    """Ask SCHED_FIFO for the calling thread; returns the old policy, or None if refused."""
    try:
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return None
    return old


def lower_timer_slack() -> None:
    """Ordinary threads may wake up to 50 µs late by default (timer slack); ask for 1 ns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: keep the default slack


def restore_scheduler(old: tuple[int, os.sched_param] | None) -> None:
    if old is not None:
        try:
            os.sched_setscheduler(0, old[0], old[1])
        except OSError:
            pass  # the thread keeps running either way; only its priority stays raised


@dataclass
class _Burst:
    deadline: float
    actions: Sequence[Callable[[], None]]
    fire_times: list[float]
    go: threading.Event = field(default_factory=threading.Event)
    done: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    errors: list[tuple[int, BaseException]] = field(default_factory=list)


class BurstTimer:
    """W workers wait for one monotonic deadline and fire together."""

    def __init__(self, workers: int, wake: str = "sleep", realtime: bool = True) -> None:
        if not 1 <= workers <= 1024:
            raise ValueError(f"burst workers must be 1..1024, got {workers}")
        if wake not in WAKE_MODES:
            raise ValueError(f"unknown burst wake mode {wake!r} (allowed: {', '.join(WAKE_MODES)})")
        self.workers = workers
        self.wake = wake
        self.realtime = realtime
        self.action_timeout = ACTION_TIMEOUT_S
        self.realtime_workers = 0
        self._count_lock = threading.Lock()
        # fire() queues a burst and close() queues the stop marker under this lock, so a
        # burst is either refused or queued ahead of the marker, never stranded behind it.
        self._queue_lock = threading.Lock()
        self._closed = False
        self._inboxes: list[queue.SimpleQueue[_Burst | None]] = [
            queue.SimpleQueue() for _ in range(workers)
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"rig-burst-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def fire(
        self, index: int, deadline: float, actions: Sequence[Callable[[], None]]
    ) -> BurstResult:
        """Run actions[i] on worker i at the deadline; blocks until every worker is done."""
        if len(actions) != self.workers:
            raise ValueError(f"burst {index}: {len(actions)} actions for {self.workers} workers")
        burst = _Burst(deadline, actions, [0.0] * self.workers)
        with self._queue_lock:
            if self._closed:
                raise BurstError("burst timer is closed")
            for inbox in self._inboxes:
                inbox.put(burst)
        if self.wake == "event":
            self._release_at_deadline(burst)
        self._wait_done(index, burst)
        return BurstResult(index, deadline, tuple(burst.fire_times))

    def _release_at_deadline(self, burst: _Burst) -> None:
        old = try_realtime() if self.realtime else None
        try:
            sleep_until(burst.deadline - SPIN_S)
            while time.monotonic() < burst.deadline:
                pass
            burst.go.set()
        finally:
            restore_scheduler(old)

    def _wait_done(self, index: int, burst: _Burst) -> None:
        give_up = max(time.monotonic(), burst.deadline) + self.action_timeout
        for _ in range(self.workers):
            if not burst.done.acquire(timeout=max(0.0, give_up - time.monotonic())):
                raise BurstError(f"burst {index}: workers still busy after "
                                 f"{self.action_timeout:g} s")
        if burst.errors:
            worker, exc = burst.errors[0]
            raise BurstError(f"burst {index}: action of worker {worker} failed: {exc!r}") from exc

    def _work(self, i: int) -> None:
        if self.realtime and try_realtime() is not None:
            with self._count_lock:
                self.realtime_workers += 1
        else:
            lower_timer_slack()
        inbox = self._inboxes[i]
        while (burst := inbox.get()) is not None:
            if self.wake == "event":
                burst.go.wait()
            else:
                sleep_until(burst.deadline)
            burst.fire_times[i] = time.monotonic()
            try:
                burst.actions[i]()
            except BaseException as exc:  # reported by fire(), never lost in a thread
                burst.errors.append((i, exc))
            finally:
                burst.done.release()

    def close(self) -> None:
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True
            for inbox in self._inboxes:
                inbox.put(None)
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def __enter__(self) -> BurstTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sleep_until(deadline: float) -> None:
    """Sleep until the monotonic deadline; never returns before it."""
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(remaining)
