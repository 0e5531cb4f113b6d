"""The burst sender: helper processes that fire a burst's pre-built first packets at once.

Each sender is a small single-threaded process (`python -m rig.load.burstsender FD`) that
receives its share of the next burst ahead of time over a Unix socket: the streams' own
sockets (passed as file descriptors, so every packet leaves from its stream's port and the
rig's media engine keeps receiving on them) and the ready-made packets. At the deadline it
sleeps until shortly before, spins on CLOCK_MONOTONIC for the last stretch, then sends its
share in one tight loop and reports the send time of each packet.

Why processes and not a thread of the load driver: in the driver's process every send
releases the GIL, and the asyncio loop or the media threads take it; measured on 2 cores,
a sendto loop of 32 packets next to one busy thread spreads over ~100 ms at p99 instead of
~0.2 ms. A process of its own has no GIL to share, and two of them send on two cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rig.errors import InfraError, RigError
from rig.load.bursts import Address, BurstResult, Shot, ShotPlan
from rig.topology.destinations import LOOPBACK_ONLY, Destinations

SPIN_S = 0.001  # the last stretch before the deadline is spun, not slept
CHUNK = 200  # shots per message: SCM_RIGHTS carries at most 253 descriptors
MESSAGE_BYTES = 1 << 20
REALTIME_PRIORITY = 10
PR_SET_TIMERSLACK = 29
PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 10.0
REPLY_MARGIN_S = 5.0  # a sender answers this long after the deadline, or it is stuck

Send = Callable[[bytes, Address], object]


class BurstError(RigError):
    """A sender process failed or did not answer in time."""


def sleep_until(deadline: float, monotonic: Callable[[], float],
                sleep: Callable[[float], None]) -> None:
    """Sleep until the deadline (never returns early; returns at once when it is past)."""
    while (left := deadline - monotonic()) > 0:
        sleep(left)


def send_all(sends: Sequence[Send], packets: Sequence[bytes], targets: Sequence[Address],
             offsets: Sequence[float], deadline: float, monotonic: Callable[[], float],
             sleep: Callable[[float], None], spin: float = SPIN_S) -> tuple[list[float], int]:
    """Send packet i with sends[i] at deadline + offsets[i]: sleep until `spin` before the
    deadline, spin the rest, then send in one loop (spinning between jittered shots).

    Returns the send time of each packet (NaN where the kernel refused it) and the count of
    refusals. A deadline already past fires at once: late, never dropped. Everything is set
    up before the spin, so what runs after the deadline is only the loop.
    """
    count = len(sends)
    times = [0.0] * count
    errors = 0
    jittered = any(offsets)
    sleep_until(deadline - spin, monotonic, sleep)
    while monotonic() < deadline:
        pass
    for i in range(count):
        if jittered:
            due = deadline + offsets[i]
            while monotonic() < due:
                pass
        times[i] = monotonic()
        try:
            sends[i](packets[i], targets[i])
        except OSError:  # a full socket buffer drops the packet, as a network would
            times[i] = float("nan")
            errors += 1
    return times, errors


# ---- the sender process ----------------------------------------------------------------


def tune_process(realtime: bool) -> bool:
    """SCHED_FIFO when allowed (wake-ups preempt ordinary processes, no timer slack), else
    the timer slack lowered to 1 ns; and die with the parent. Returns whether realtime."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
            return True
        except (OSError, AttributeError):
            pass
    return False


def serve(control: socket.socket, realtime: bool) -> None:
    """The sender's loop: gather shots and their sockets, fire, answer; ends at EOF."""
    rt = tune_process(realtime)
    control.sendall(pickle.dumps(("ready", rt)))
    socks: list[socket.socket] = []
    shots: list[tuple[bytes, Address, float]] = []
    while True:
        data, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, CHUNK + 1)
        if not data:
            return
        message = pickle.loads(data)
        if message[0] == "shots":
            socks += [socket.socket(fileno=fd) for fd in fds]
            shots += message[1]
            continue
        _, index, deadline = message
        reply: tuple[object, ...]
        try:
            reply = ("done", index, *_fire(socks, shots, deadline))
        except Exception as exc:  # reported to the driver, which records a burst_error
            reply = ("error", index, f"{type(exc).__name__}: {exc}")
        finally:
            for sock in socks:
                sock.close()
            socks, shots = [], []
        control.sendall(pickle.dumps(reply))


def _fire(socks: Sequence[socket.socket], shots: Sequence[tuple[bytes, Address, float]],
          deadline: float) -> tuple[list[float], int]:
    sends = [sock.sendto for sock in socks]
    packets = [shot[0] for shot in shots]
    targets = [shot[1] for shot in shots]
    offsets = [shot[2] for shot in shots]
    return send_all(sends, packets, targets, offsets, deadline, time.monotonic, time.sleep)


# ---- the driver's side -----------------------------------------------------------------


@dataclass
class _Helper:
    process: subprocess.Popen[bytes]
    control: socket.socket
    realtime: bool


@dataclass(frozen=True)
class Packet:
    """A stream's first packet, ready to go: the stream's own socket and its bytes."""

    sock: socket.socket
    data: bytes


class BurstSender:
    """`processes` sender processes; fire() hands each its share and waits for the sends."""

    def __init__(self, processes: int = 1, realtime: bool = True,
                 destinations: Destinations = LOOPBACK_ONLY) -> None:
        if not 1 <= processes <= 64:
            raise ValueError(f"burst processes must be 1..64, got {processes}")
        self.processes = processes
        self.destinations = destinations
        self._helpers: list[_Helper] = []
        try:
            for _ in range(processes):
                self._helpers.append(_start_helper(realtime))
        except BaseException:
            self.close()
            raise

    @property
    def realtime(self) -> bool:
        return all(h.realtime for h in self._helpers)

    def fire(self, plan: ShotPlan, packets: Sequence[Packet]) -> BurstResult:
        """Send packets[shot.stream] for every shot of the plan at its deadline (monotonic).

        Blocks until every sender answered; a deadline already past fires at once.
        """
        if not self._helpers:
            raise BurstError("burst sender is closed")
        for shot in plan.shots:  # the senders get only targets the guard let through
            self.destinations.check(shot.target[0], shot.target[1], "a burst's first packet")
        shares = [plan.share(p) for p in range(self.processes)]
        for helper, share in zip(self._helpers, shares, strict=True):
            _hand_over(helper, share, packets)
        for helper in self._helpers:
            helper.control.sendall(pickle.dumps(("fire", plan.index, plan.deadline.monotonic)))
        times: dict[int, float] = {}
        errors = 0
        give_up = max(time.monotonic(), plan.deadline.monotonic) + REPLY_MARGIN_S
        for helper, share in zip(self._helpers, shares, strict=True):
            reply = _reply(helper, give_up, plan.index)
            sent, failed = reply
            errors += failed
            times.update((shot.stream, t) for shot, t in zip(share, sent, strict=True))
        return BurstResult(plan.index, plan.deadline,
                           tuple(times[shot.stream] for shot in plan.shots),
                           errors=errors, processes=self.processes)

    def close(self) -> None:
        helpers, self._helpers = self._helpers, []
        for helper in helpers:
            helper.control.close()  # EOF: the sender returns
        for helper in helpers:
            try:
                helper.process.wait(2.0)
            except subprocess.TimeoutExpired:
                helper.process.kill()
                helper.process.wait()

    def __enter__(self) -> BurstSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_helper(realtime: bool) -> _Helper:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rig.load.burstsender", str(theirs.fileno()),
             "realtime" if realtime else "plain"],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        ours.close()
        raise InfraError(f"cannot start a burst sender process: {exc}") from exc
    finally:
        theirs.close()
    ours.settimeout(START_TIMEOUT_S)
    try:
        kind, rt = pickle.loads(ours.recv(MESSAGE_BYTES) or pickle.dumps(("eof", False)))
    except (OSError, pickle.UnpicklingError) as exc:
        kind, rt = f"{exc}", False
    if kind != "ready":
        ours.close()
        process.kill()
        process.wait()
        raise InfraError(f"burst sender process did not start ({kind})")
    return _Helper(process, ours, bool(rt))


def _hand_over(helper: _Helper, share: Sequence[Shot], packets: Sequence[Packet]) -> None:
    for start in range(0, len(share), CHUNK):
        chunk = share[start:start + CHUNK]
        picked = [packets[shot.stream] for shot in chunk]
        body = [(p.data, shot.target, shot.offset) for p, shot in zip(picked, chunk, strict=True)]
        socket.send_fds(helper.control, [pickle.dumps(("shots", body))],
                        [p.sock.fileno() for p in picked])


def _reply(helper: _Helper, give_up: float, index: int) -> tuple[list[float], int]:
    helper.control.settimeout(max(0.01, give_up - time.monotonic()))
    try:
        data = helper.control.recv(MESSAGE_BYTES)
    except TimeoutError:
        raise BurstError(f"burst {index}: a sender process did not answer in time") from None
    if not data:
        raise BurstError(f"burst {index}: a sender process exited "
                         f"(code {helper.process.poll()})")
    message = pickle.loads(data)
    if message[0] != "done" or message[1] != index:
        raise BurstError(f"burst {index}: sender failed: {message[-1]}")
    return list(message[2]), int(message[3])


def main(argv: Sequence[str]) -> int:
    # A Ctrl-C at the terminal reaches the whole process group. The driver stops this
    # sender by closing its control socket (EOF ends serve), so the sender leaves the
    # signal to it instead of dying mid-recv with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[0]))
    try:
        serve(control, realtime=len(argv) < 2 or argv[1] == "realtime")
    except ConnectionResetError:  # the driver's process was killed: nothing left to send
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
