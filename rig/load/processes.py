"""Several generator processes on one host: each runs a LoadDriver on its GeneratorShare.

The parent (ProcessDriver, the same face as LoadDriver: `run`, `snapshot`,
`ended_call_ids`) starts `python -m rig.load.processes FD` once per share, hands each its
share over a socket pair, waits until all are set up (sockets bound, burst senders
started) and ready, then gives all of them one start
instant on CLOCK_MONOTONIC (shared by the processes of a host), so the call schedules and
the bursts count from the same origin. While they run, each child sends its live counters
and the Call-IDs that ended; its bursts go to the parent, which joins the shares of one
burst into one `burst` event. At the end each child sends its LoadReport and the parent
merges them (rig/load/loadreport.py).

Subprocesses, not multiprocessing's fork: forking an asyncio program copies its loop and
threads. A child ignores SIGINT (a Ctrl-C at the terminal reaches the whole process group;
the parent decides), stops on SIGTERM or on the parent's `stop`, and dies with the parent
(PR_SET_PDEATHSIG). Whatever happens, the parent terminates, then kills, every child it
started before `run` returns. A child that exits before its report raises GeneratorError
naming the process and its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from rig.errors import InfraError
from rig.load.bursts import BurstResult
from rig.load.loadreport import LoadReport, merge_burst, merge_reports, merge_snapshots
from rig.load.shares import GeneratorShare

START_TIMEOUT_S = 30.0  # a child imports the rig and binds its sockets within this
START_MARGIN_S = 0.25  # the start instant is this far after the last child said ready
PROGRESS_S = 0.1  # a child reports its counters this often
ENDED_EVERY = 10  # ... and the Call-IDs that ended every 10th time (1 s): finding the new
# ones walks the driver's window of up to 100,000 (~6 ms here), 6% of a core at every tick
STOP_GRACE_S = 6.0  # after `stop` a child has this long to end its calls and exit
REPORT_GRACE_S = 20.0  # after the duration, the children's wind-down and report
PR_SET_PDEATHSIG = 1


class GeneratorError(InfraError):
    """A generator process died or did not answer; the run's verdict is error."""


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    conn: Connection
    snapshot: dict[str, float] = field(default_factory=dict)
    report: LoadReport | None = None
    ready: bool = False
    error: str | None = None  # what the child said went wrong


class ProcessDriver:
    """Runs the shares in one child process each; `run` returns their merged LoadReport."""

    def __init__(
        self,
        shares: Sequence[GeneratorShare],
        on_event: Callable[[str, dict], None],
        *,
        on_process: Callable[[str, int], None] | None = None,
        env: Mapping[str, str] | None = None,
        workers: int | None = None,
    ) -> None:
        if not shares:
            raise ValueError("no generator shares")
        self.shares = list(shares)
        self.on_event = on_event
        self.on_process = on_process
        self.env = dict(env or {})
        self.workers = workers  # the scenario's bursts.workers, for the merged burst event
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._ended: set[str] = set()
        self._bursts: dict[int, list[BurstResult]] = {}
        self._with_bursts = sum(1 for s in self.shares if s.bursts is not None)

    # ---- what the runner reads -------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return merge_snapshots(c.snapshot for c in self._children)

    def ended_call_ids(self) -> set[str]:
        with self._lock:
            return set(self._ended)

    # ---- the run ---------------------------------------------------------------------

    async def run(self, duration: float) -> LoadReport:
        if duration <= 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        try:
            self._start_children(duration)
            await self._until(lambda c: not c.ready, time.monotonic() + START_TIMEOUT_S,
                              "did not start")
            origin = time.monotonic() + START_MARGIN_S
            for child in self._children:
                child.conn.send(("start", origin))
            self.on_event("load_start", {"cps": sum(s.calls.cps for s in self.shares),
                                         "duration": duration, "seed": self.shares[0].seed,
                                         "processes": len(self.shares)})
            await self._until(lambda c: c.report is None, origin + duration + REPORT_GRACE_S,
                              "sent no report")
            self._flush_bursts()
            report = merge_reports([c.report for c in self._children if c.report])
            self.on_event("load_stop", {
                "attempted": report.calls_attempted, "completed": report.calls_completed,
                "failed": report.calls_failed, "failures": dict(report.failures),
                "processes": [{"process": c.index, "attempted": c.report.calls_attempted,
                               "completed": c.report.calls_completed,
                               "failed": c.report.calls_failed}
                              for c in self._children if c.report is not None]})
            return report
        finally:
            await self._stop_children()

    def _start_children(self, duration: float) -> None:
        loop = asyncio.get_running_loop()
        for share in self.shares:
            child = _spawn(share, self.env)
            self._children.append(child)
            if self.on_process is not None:
                self.on_process(f"generator-{share.index}", child.process.pid)
            loop.add_reader(child.conn.fileno(), self._on_readable, child)
            child.conn.send(("share", share, duration))

    async def _until(self, pending: Callable[[_Child], bool], deadline: float,
                     what: str) -> None:
        """Poll until no child is `pending`, failing with the first child that exited or
        at the deadline."""
        while late := [c for c in self._children if pending(c)]:
            for child in self._children:
                self._check_alive(child)
            if time.monotonic() > deadline:
                raise GeneratorError(f"generator process {late[0].index} of "
                                     f"{len(self._children)} {what} in time")
            await asyncio.sleep(0.02)

    def _check_alive(self, child: _Child) -> None:
        """Raise for a child that said what went wrong, or exited before its report."""
        code = child.process.poll()
        if code is not None and child.report is None:
            self._drain(child)  # its last words (an error, its report) may still be queued
        of = f"generator process {child.index} of {len(self._children)}"
        if child.error is not None:
            raise GeneratorError(f"{of}: {child.error}")
        if code is not None and child.report is None:
            raise GeneratorError(f"{of} (pid {child.process.pid}) exited with code {code} "
                                 "before its report")

    def _on_readable(self, child: _Child) -> None:
        if not self._drain(child):
            asyncio.get_running_loop().remove_reader(child.conn.fileno())

    def _drain(self, child: _Child) -> bool:
        """Handle what the child sent; False once it closed its end."""
        try:
            while child.conn.poll():
                self._handle(child, child.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, child: _Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            child.ready = True
        elif kind == "progress":
            with self._lock:
                child.snapshot = message[1]
                self._ended.update(message[2])
        elif kind == "burst":
            self._burst(message[1])
        elif kind == "event":
            self.on_event(message[1], {**message[2], "process": child.index})
        elif kind == "report":
            with self._lock:
                child.snapshot, child.report = message[1], message[3]
                self._ended.update(message[2])
        elif kind == "error":
            child.error = str(message[1])

    def _burst(self, result: BurstResult) -> None:
        shares = self._bursts.setdefault(result.index, [])
        shares.append(result)
        if len(shares) >= self._with_bursts:
            self._emit_burst(self._bursts.pop(result.index))

    def _flush_bursts(self) -> None:
        """Bursts some process never fired (its burst_error says why): what was fired."""
        for index in sorted(self._bursts):
            self._emit_burst(self._bursts.pop(index))

    def _emit_burst(self, shares: list[BurstResult]) -> None:
        merged = merge_burst(shares)
        self.on_event("burst", {**merged.event(), "workers": self.workers or merged.streams})

    async def _stop_children(self) -> None:
        """Ask every child still running to stop; terminate, then kill the slow ones."""
        loop = asyncio.get_running_loop()
        for child in self._children:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(child.conn.fileno())
            if child.process.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    child.conn.send(("stop",))
        await asyncio.shield(loop.run_in_executor(None, reap, self._children))


def reap(children: Sequence[_Child], grace: float = STOP_GRACE_S) -> None:
    """Wait for the children to exit; SIGTERM, then SIGKILL, the ones that do not."""
    deadline = time.monotonic() + grace
    for child in children:
        _wait(child.process, deadline - time.monotonic(), signal.SIGTERM)
    for child in children:
        _wait(child.process, 1.0, signal.SIGKILL)
        child.process.wait()
        child.conn.close()


def _wait(process: subprocess.Popen[bytes], timeout: float, then: signal.Signals) -> None:
    try:
        process.wait(max(0.0, timeout))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(then)


def _spawn(share: GeneratorShare, env: Mapping[str, str]) -> _Child:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rig.load.processes", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
    except OSError as exc:
        ours.close()
        raise GeneratorError(f"cannot start generator process {share.index}: {exc}") from exc
    finally:
        theirs.close()
    return _Child(share.index, process, Connection(ours.detach()))


# ---- the child ---------------------------------------------------------------------------


class _Reporter:
    """The child's side of the socket: messages to the parent from any thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.sent: set[str] = set()

    def send(self, *message: Any) -> None:
        with self.lock:
            self.conn.send(message)

    def ended_since_last(self, ended: set[str]) -> list[str]:
        """Call-IDs that ended since the last progress message (the driver keeps a bounded
        window of them, so the ones it forgot are forgotten here too)."""
        new = ended - self.sent
        self.sent = ended
        return list(new)


class _Stopped(Exception):
    """The parent said stop (or SIGTERM came) before the start instant."""


def child_main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    conn = Connection(fd)
    reporter = _Reporter(conn)
    try:
        kind, share, duration = conn.recv()
        if kind != "share":
            raise ValueError(f"expected a share, got {kind!r}")
        asyncio.run(_child_run(share, duration, conn, reporter))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return 1  # the parent went away
    except Exception as exc:
        with contextlib.suppress(OSError):
            reporter.send("error", f"{type(exc).__name__}: {exc}".split("\n")[0][:300])
        return 1
    return 0


async def _child_run(share: GeneratorShare, duration: float, conn: Connection,
                     reporter: _Reporter) -> None:
    """Set the share's driver up, say ready, run from the parent's instant, report."""
    from rig.load.driver import LoadDriver
    from rig.topology.destinations import Destinations, parse_networks

    loop = asyncio.get_running_loop()
    driver: LoadDriver | None = None

    def on_event(kind: str, data: dict) -> None:
        if kind in ("load_start", "load_stop"):
            return  # the parent tells the run's start and stop, once
        if kind == "burst" and driver is not None and driver.fired_bursts:
            reporter.send("burst", driver.fired_bursts[-1])
            return
        reporter.send("event", kind, data)

    driver = LoadDriver(share.calls, share.bursts, share.targets, on_event, seed=share.seed,
                        destinations=Destinations(allowed=parse_networks(list(share.allow))),
                        call_id_prefix=share.call_id_prefix)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    origin: asyncio.Future[float] = loop.create_future()
    loop.add_reader(conn.fileno(), _on_command, conn, origin, stop)
    progress: list[asyncio.Task[None]] = []

    async def ready() -> float:
        reporter.send("ready")
        stopped = asyncio.ensure_future(stop.wait())
        waits: set[asyncio.Future[Any]] = {origin, stopped}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not origin.done():
            raise _Stopped
        progress.append(asyncio.ensure_future(_progress(driver, reporter)))
        return origin.result()

    task = asyncio.ensure_future(driver.run(duration, ready=ready))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(conn.fileno())
        for job in (*progress, stopper, task):
            job.cancel()
        await asyncio.gather(task, stopper, *progress, return_exceptions=True)
    if task.cancelled() or isinstance(task.exception(), _Stopped):
        return
    report = task.result()
    reporter.send("report", driver.snapshot(), reporter.ended_since_last(driver.ended_call_ids()),
                  report)


def _on_command(conn: Connection, origin: asyncio.Future[float], stop: asyncio.Event) -> None:
    """The parent's commands: `start` gives the instant, `stop` (or its going away) stops."""
    try:
        while conn.poll():
            message = conn.recv()
            if message[0] == "start" and not origin.done():
                origin.set_result(float(message[1]))
            elif message[0] == "stop":
                stop.set()
    except (EOFError, OSError):
        stop.set()
        asyncio.get_running_loop().remove_reader(conn.fileno())


async def _progress(driver: Any, reporter: _Reporter) -> None:
    tick = 0
    while True:
        await asyncio.sleep(PROGRESS_S)
        tick += 1
        ended = reporter.ended_since_last(driver.ended_call_ids()) if (
            tick % ENDED_EVERY == 0) else []
        reporter.send("progress", driver.snapshot(), ended)


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
