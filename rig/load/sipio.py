"""The I/O under the SIP agents: one UDP socket read from the selector, one loop timer.

Both are thin: the socket hands raw datagrams on (the agent peeks at what it needs), and
LoopTimers runs a rig.wire.timerheap.TimerHeap from a single event-loop timer armed at
its earliest deadline, so thousands of calls cost one asyncio handle, not one each.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from typing import Any, Self

from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.timerheap import Entry, TimerHeap

Address = tuple[str, int]
SOCKET_BUFFER = 4 * 1024 * 1024
READ_BATCH = 64
MAX_DATAGRAM = 65535
DatagramHandler = Callable[[bytes, Address], None]
TimerCallback = Callable[[Any, float], None]  # (argument, now)


class Endpoint:
    """One UDP socket read straight from the event loop's selector.

    Each readiness event drains up to READ_BATCH datagrams (asyncio's datagram transport
    reads one per loop turn, which caps the call rate). ICMP errors and full send buffers
    are counted, not raised: retransmission covers a lost datagram and a transaction
    timeout a dead peer. `malformed` is counted by the agent that could not read one.
    """

    def __init__(self, sock: socket.socket, on_datagram: DatagramHandler,
                 destinations: Destinations = LOOPBACK_ONLY):
        self.sock = sock
        self.on_datagram = on_datagram
        self.destinations = destinations
        self.loop = asyncio.get_running_loop()
        self.malformed = self.errors = self.dropped = 0
        self._outbox: list[tuple[bytes, Address]] = []
        self.loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        receive, handle = self.sock.recvfrom, self.on_datagram
        for _ in range(READ_BATCH):
            try:
                data, addr = receive(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1  # e.g. ICMP port unreachable from a peer that went away
                return
            handle(data, addr)

    def send(self, data: bytes, addr: Address, origin: str) -> None:
        """Queue a datagram; the queue goes out once this turn of the event loop is done.

        `origin` says where `addr` came from; an address the destination guard refuses
        raises UnsafeDestination and nothing is queued. On loopback each sendto
        wakes the peer at once; sending a turn's datagrams together lets the peer take
        them in one batch instead of one wake-up each.
        """
        self.destinations.check(addr[0], addr[1], origin)
        if not self._outbox:
            self.loop.call_soon(self._flush)
        self._outbox.append((data, addr))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        send = self.sock.sendto
        for data, addr in outbox:
            try:
                send(data, addr)
            except (BlockingIOError, InterruptedError):
                self.dropped += 1
            except OSError:
                self.errors += 1

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._flush()
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def open_endpoint(local: Address, on_datagram: DatagramHandler,
                        destinations: Destinations = LOOPBACK_ONLY) -> Endpoint:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(local)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind SIP UDP socket {local[0]}:{local[1]}: {exc}") from exc
    return Endpoint(sock, on_datagram, destinations)


class LoopTimers:
    """A TimerHeap run by one event-loop timer; callbacks get (argument, now)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap = TimerHeap()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def at(self, when: float, callback: TimerCallback, argument: Any) -> Entry:
        entry = self.heap.push(when, callback, argument)
        if when < self._armed_at:
            self._arm(when)
        return entry

    def cancel(self, entry: Entry | None) -> None:
        self.heap.cancel(entry)

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        # asyncio may run a timer a clock tick early; the deadline it was set for is now
        now = max(self.loop.time(), self._armed_at)
        self._handle, self._armed_at = None, math.inf
        for callback, argument in self.heap.pop_due(now):
            callback(argument, now)
        following = self.heap.next_at
        if following < self._armed_at:
            self._arm(following)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._armed_at = None, math.inf


class Agent:
    """What a UAC and a UAS share: one endpoint and one loop timer, opened by `start` (or
    `async with`) and closed by `close`. A subclass sets `local` and `destinations` and
    handles each datagram in `_on_datagram`."""

    local: Address
    destinations: Destinations
    _endpoint: Endpoint | None = None
    _clock: LoopTimers | None = None

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._clock = LoopTimers(asyncio.get_running_loop())
        self._endpoint = await open_endpoint(self.local, self._on_datagram, self.destinations)

    def close(self) -> None:
        if self._clock is not None:
            self._clock.close()
        if self._endpoint is not None:
            self._endpoint.close()
        self._endpoint = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
