"""Many runs at once: one after the other in this process, in a local pool of processes, or
as Ray tasks on a cluster.

A pool runs a run function over a list of RunRequests and yields each `Done` as it ends;
the caller files the results in its own (deterministic) order. Every pool is a context
manager: leaving it, on an error or Ctrl-C, stops every run it started and waits until each
has cleaned up after itself.

The serial pool is what a plain command uses. The local pool starts one spawned process per
run (a fresh interpreter: no forked threads, locks or loopback block of the parent's), at
most `jobs` at a time. Ray is imported only by the Ray pool (`--cluster`): a plain command
starts no Ray and pays nothing for it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol

from rig.clock import Clock, SystemClock
from rig.errors import InfraError, UsageError

RunFn = Callable[[Any], Any]  # RunRequest -> RunOutcome
LOCAL_CLUSTER = "local"  # `--cluster local`: an embedded Ray on this machine, on 127.0.0.1
STOP_GRACE_S = 60.0  # how long an interrupted run may take to stop its services


@dataclass(frozen=True)
class Done:
    """One run that ended: its outcome, or the error it raised (a RigError, mostly)."""

    index: int
    outcome: Any | None
    error: Exception | None
    seconds: float

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.outcome


@dataclass(frozen=True)
class Dispatch:
    """How many runs at once, and where: `cluster` None is this machine without Ray."""

    jobs: int | None = None  # None: 1 without a cluster, as many as Ray schedules with one
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if self.cluster is not None and not self.cluster.strip():
            raise UsageError("--cluster needs an address (host:port, ray://..., or local)")

    @property
    def width(self) -> int | None:
        """Runs at once; None: as many as the cluster schedules."""
        return self.jobs if self.jobs is not None or self.cluster is not None else 1

    @property
    def serial(self) -> bool:
        return self.cluster is None and (self.jobs or 1) == 1


SERIAL = Dispatch()


class Pool(Protocol):
    def each(self, run: RunFn, requests: Sequence[Any]) -> Iterator[Done]: ...

    def __enter__(self) -> Pool: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


def open_pool(dispatch: Dispatch, clock: Clock | None = None) -> Pool:
    """The pool `dispatch` asks for; only the Ray pool imports Ray."""
    if dispatch.cluster is not None:
        from rig.distribute_ray import RayPool

        return RayPool(dispatch.cluster, dispatch.jobs)
    if dispatch.serial:
        return SerialPool(clock)
    return ProcessPool(dispatch.jobs or 1)


def timed(run: RunFn, index: int, request: Any, clock: Clock) -> Done:
    """Run one request; a RigError (or any Exception) is the result, Ctrl-C is not."""
    started = clock.monotonic()
    try:
        outcome = run(request)
    except Exception as exc:  # noqa: BLE001 - the caller decides what each error means
        return Done(index, None, exc, clock.monotonic() - started)
    return Done(index, outcome, None, clock.monotonic() - started)


def quiet(request: Any) -> Any:
    """A request as a child runs it: no progress bar (several would tear the terminal)."""
    return replace(request, progress=False) if hasattr(request, "progress") else request


class SerialPool:
    """One run after the other, in this process: exactly the path without --jobs."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()

    def each(self, run: RunFn, requests: Sequence[Any]) -> Iterator[Done]:
        for index, request in enumerate(requests):
            yield timed(run, index, request, self.clock)

    def __enter__(self) -> SerialPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


# -- the local pool ------------------------------------------------------------------------

def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _child(run: RunFn, index: int, request: Any, conn: Any) -> None:
    """A spawned run, in a process group of its own: the terminal's Ctrl-C reaches only the
    parent, which passes one SIGINT on to each child, so a run and what it started stop
    exactly as `rig run` does on Ctrl-C (once, never cut short by a second signal)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # asyncio.run relies on it
    signal.signal(signal.SIGTERM, _terminate)
    try:
        done = timed(run, index, request, SystemClock())
    except KeyboardInterrupt:
        return  # the run has cleaned up; the parent knows it asked
    try:
        conn.send(done)
    except Exception as exc:  # noqa: BLE001 - an outcome that does not pickle
        conn.send(Done(index, None, InfraError(f"run result could not be sent back: {exc}"),
                       done.seconds))
    finally:
        conn.close()


@dataclass
class _Running:
    index: int
    process: Any  # multiprocessing.Process
    conn: Any  # the parent's end of the pipe


class ProcessPool:
    """At most `jobs` runs at once, each in a spawned process of its own."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[int, _Running] = {}

    def each(self, run: RunFn, requests: Sequence[Any]) -> Iterator[Done]:
        waiting = list(enumerate(requests))
        while waiting or self.running:
            while waiting and len(self.running) < self.jobs:
                index, request = waiting.pop(0)
                self._start(run, index, quiet(request))
            yield self._next_done()

    def _start(self, run: RunFn, index: int, request: Any) -> None:
        ours, theirs = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_child, args=(run, index, request, theirs),
                                       name=f"rig-run-{index}", daemon=False)
        process.start()
        theirs.close()
        self.running[index] = _Running(index, process, ours)

    def _next_done(self) -> Done:
        by_sentinel = {r.process.sentinel: r for r in self.running.values()}
        by_conn = {r.conn: r for r in self.running.values()}
        ready = multiprocessing.connection.wait([*by_conn, *by_sentinel])
        item = by_conn.get(ready[0]) or by_sentinel[ready[0]]  # type: ignore[index]
        try:
            done: Done = item.conn.recv()
        except (EOFError, OSError):
            item.process.join()
            done = Done(item.index, None, InfraError(
                f"the process of run {item.index} ended without a result "
                f"(exit code {item.process.exitcode})"), 0.0)
        item.process.join()  # it returns right after sending
        item.conn.close()
        del self.running[item.index]
        return done

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Runs still going when the pool is left (Ctrl-C, or the caller stopped on an
        error) get one Ctrl-C and are waited for; one that hangs is killed."""
        running, self.running = list(self.running.values()), {}
        for item in running:
            if item.process.is_alive() and item.process.pid is not None:
                os.kill(item.process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for item in running:
            item.process.join(max(0.0, deadline - time.monotonic()))
            if item.process.is_alive():
                item.process.kill()
                item.process.join()
            item.conn.close()


def absolute(request: Any) -> Any:
    """Paths a worker elsewhere (another cwd, another host) reads the same way."""
    fields: dict[str, Any] = {"scenario_path": request.scenario_path.resolve(),
                              "patches": tuple(p.resolve() for p in request.patches),
                              "results_root": request.results_root.resolve()}
    if request.out is not None:
        fields["out"] = request.out.resolve()
    if request.repo is not None:
        fields["repo"] = request.repo.resolve()
    return replace(request, **fields)


def private_temp_dir(prefix: str) -> str:
    """A short folder of our own (Ray puts unix sockets in it, at most 107 bytes a path)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None)


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
