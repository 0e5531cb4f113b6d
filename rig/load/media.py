"""The rig's RTP endpoints: many UDP sockets on one host, paced G.711-style streams.

One I/O thread does all the sending and receiving. Running streams sit on a wheel of 1 ms
slots, each in the slot of its phase, and are sent once per turn of the wheel: a slot's
packets go out in one pass over their pre-built packets, in which only the sequence number
and the timestamp are patched in place. Ticks follow absolute deadlines (start + n * slot),
so pacing does not drift however late a tick runs. Between slots the thread waits on epoll
over every socket (the wait is its pacing sleep) and keeps RFC 3550 statistics, duplicates
and reordering per endpoint (rig.wire.rtpstats).

Why one thread and not a sender and a receiver: both are bound by system calls that hold
the GIL between them, and two threads spend a measured ~half of their CPU handing it over
(bench/bench_rtp.py). Why not sendmmsg, as the burst floor uses: each stream sends from its
own port, and sendmmsg sends from one socket; one packet per socket per tick leaves nothing
to batch on the receive side either.

start_streams() sends each stream's first packet from the calling thread. For a burst,
first_packets() builds them instead and a burst sender process (rig/load/burstsender.py)
sends them from the streams' own sockets at the deadline; run_streams() then paces the rest.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from rig.errors import InfraError
from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.rtp import (
    HEADER,
    HEADER_SIZE,
    MARKER,
    RTP_VERSION,
    SEQUENCE_TIMESTAMP,
    SILENCE_BYTE,
    clock_rate,
    packet_template,
    samples_per_packet,
)
from rig.wire.rtpplay import Recording
from rig.wire.rtpstats import ReceiverStats, RtpStats, SourceStats

SLOT_S = 0.001
RECV_BUFFER = 2048
IDLE_WAIT_S = 0.1
CATCH_UP_SLOTS = 4  # slots sent in one go by a late I/O thread before it receives again
SOCKET_BUFFER_BYTES = 1 << 18


@dataclass(eq=False, slots=True)
class _Stream:
    remote: tuple[str, int]
    ssrc: int
    sequence: int  # of the next packet
    timestamp: int
    packet: bytearray  # the template: header with this stream's SSRC, then the payload
    running: bool = False
    played: int = 0  # packets of a recording sent so far
    started: float = 0.0  # monotonic time of a played stream's first packet


@dataclass(eq=False, slots=True)
class _Endpoint:
    port: int
    sock: socket.socket
    stats: ReceiverStats
    stream: _Stream | None = None
    sent: int = 0
    next_tick: int = 0  # the wheel's bookkeeping while the stream runs
    ssrc: int = -1  # the last source heard, and its statistics: one lookup fewer a packet
    source: SourceStats | None = None

    def rtp_stats(self) -> RtpStats:
        return RtpStats.of_sources(list(self.stats.sources.values()), sent=self.sent)


class Paced(Protocol):
    next_tick: int


P = TypeVar("P", bound=Paced)


class PacingWheel(Generic[P]):
    """Which streams send at which tick: pure bookkeeping, ticks are plain numbers.

    A stream sits in the slot of its phase (first_tick modulo the turn) and is due once
    per turn. Processing the ticks one after another, however late, every stream comes
    due exactly once per turn: late ticks delay packets but never drop or add any.
    """

    def __init__(self, slots_per_turn: int) -> None:
        if slots_per_turn < 1:
            raise ValueError(f"a pacing wheel needs at least one slot, got {slots_per_turn}")
        self.turn = slots_per_turn
        self._slots: list[list[P]] = [[] for _ in range(slots_per_turn)]
        self._count = 0

    def add(self, item: P, first_tick: int) -> None:
        item.next_tick = first_tick
        self._slots[first_tick % self.turn].append(item)
        self._count += 1

    def remove(self, item: P) -> None:
        slot = self._slots[item.next_tick % self.turn]
        if any(x is item for x in slot):
            slot.remove(item)
            self._count -= 1

    def due(self, tick: int) -> list[P]:
        """The items due at this tick; each is then scheduled one turn later."""
        ready = [item for item in self._slots[tick % self.turn] if item.next_tick <= tick]
        for item in ready:
            item.next_tick += self.turn
        return ready

    def __len__(self) -> int:
        return self._count


def tick_at_or_after(t: float, t0: float, tick_s: float) -> int:
    """Number of the first tick (at t0 + n * tick_s) not before t."""
    return math.ceil((t - t0) / tick_s - 1e-9)


class MediaEngine:
    """RTP endpoints in a port range; sends every ptime for each running stream."""

    def __init__(
        self, host: str, port_range: tuple[int, int], ptime_ms: int = 20,
        payload_type: int = 0, seed: int = 0, destinations: Destinations = LOOPBACK_ONLY,
        recording: Recording | None = None,
    ) -> None:
        lo, hi = port_range
        if not 1024 <= lo <= hi <= 65535:
            raise ValueError(f"RTP port range must be within 1024..65535, got {lo}-{hi}")
        self.host = host
        self.port_range = (lo, hi)
        self.destinations = destinations
        self.ptime_ms = ptime_ms
        self.payload_type = payload_type
        self._step = samples_per_packet(payload_type, ptime_ms)
        self._payload = bytes([SILENCE_BYTE.get(payload_type, 0)]) * self._step
        self._clock_rate = clock_rate(payload_type)
        self._slots_per_turn = max(1, round(ptime_ms / 1000 / SLOT_S))
        self._slot_s = ptime_ms / 1000 / self._slots_per_turn
        self._wheel: PacingWheel[_Endpoint] = PacingWheel(self._slots_per_turn)
        self._rng = random.Random(seed)
        self._endpoints: dict[int, _Endpoint] = {}
        self._by_fd: dict[int, _Endpoint] = {}
        self._closed = RtpStats()  # what closed endpoints leave behind in the totals
        self._next_port = lo + (lo % 2)
        self.send_errors = 0
        self.invalid_packets = 0
        # endpoints, the wheel, one slot's sending, one receive batch vs (un)registering
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._epoll = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._rx_buffer = bytearray(RECV_BUFFER)  # only the I/O thread touches it
        self._t0 = time.monotonic()
        self._tick = 0  # the next slot to send
        self._thread: threading.Thread | None = None
        # with a recording, every stream plays it (rig.wire.rtpplay) from a heap of
        # (due time, tie-break, endpoint) instead of sitting on the pacing wheel
        self.recording = recording
        self._due: list[tuple[float, int, _Endpoint]] = []
        self._due_seq = 0

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._io_loop, name="rig-rtp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
        for port in list(self._endpoints):
            self.close_endpoint(port)
        self._epoll.close()
        os.close(self._wake_fd)

    def __enter__(self) -> MediaEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wake(self) -> None:
        os.eventfd_write(self._wake_fd, 1)

    # --- endpoints and streams ----------------------------------------------------------

    def open_endpoint(self) -> int:
        """Bind the next free even port of the range on host and start receiving on it."""
        with self._lock:
            sock, port = self._bind_free_port()
            endpoint = _Endpoint(port, sock, ReceiverStats(self._clock_rate))
            self._endpoints[port] = endpoint
            self._by_fd[sock.fileno()] = endpoint
            self._epoll.register(sock.fileno(), select.EPOLLIN)
        return port

    def _bind_free_port(self) -> tuple[socket.socket, int]:
        lo, hi = self.port_range
        first = lo + (lo % 2)
        candidates = (hi - first) // 2 + 1
        for _ in range(max(candidates, 0)):
            port = self._next_port
            self._next_port = port + 2 if port + 2 <= hi else first
            if port in self._endpoints:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            return sock, port
        raise InfraError(f"no free even RTP port in {lo}-{hi} on {self.host}")

    def prepare_stream(self, local_port: int, remote: tuple[str, int],
                       origin: str = "the peer's SDP") -> None:
        """Give an endpoint its target; it sends nothing until start_streams().

        Every packet of the stream goes to `remote`, so the destination guard sees it here
        (`origin` names where it came from) and a refused target raises UnsafeDestination.
        """
        self.destinations.check(remote[0], int(remote[1]), origin)
        with self._lock:
            endpoint = self._endpoint(local_port)
            if endpoint.stream is not None and endpoint.stream.running:
                raise ValueError(f"RTP port {local_port}: stream already running")
            ssrc = self._rng.getrandbits(32)
            endpoint.stream = _Stream(
                remote=(remote[0], int(remote[1])),
                ssrc=ssrc,
                sequence=self._rng.getrandbits(16),
                timestamp=self._rng.getrandbits(32),
                packet=packet_template(self.payload_type, ssrc, self._payload),
            )

    def start_streams(self, local_ports: Sequence[int]) -> None:
        """Send each stream's first packet now, from this thread; the engine sends the rest."""
        endpoints = [self._prepared(port) for port in local_ports]
        started = time.monotonic()
        for endpoint in endpoints:
            self._send_first(endpoint)
        first_tick = tick_at_or_after(started, self._t0, self._slot_s) + self._slots_per_turn
        with self._lock:
            for endpoint in endpoints:
                stream = endpoint.stream
                if stream is None or stream.running or endpoint.port not in self._endpoints:
                    continue  # closed or started meanwhile by another thread
                stream.running = True
                self._pace(endpoint, first_tick, started)
        self._wake()

    def first_packets(
        self, local_ports: Sequence[int]
    ) -> list[tuple[int, socket.socket, bytes, tuple[str, int]]]:
        """(port, socket, first packet with the marker set, target) of each stream that is
        prepared and not running (a call may have ended meanwhile), for a burst sender.

        The streams move on as if the packets were sent; run_streams() starts their pacing
        once the sender is done, so the engine never sends ahead of the first packet.
        """
        out = []
        with self._lock:
            for port in local_ports:
                endpoint = self._endpoints.get(port)
                stream = endpoint.stream if endpoint is not None else None
                if endpoint is None or stream is None or stream.running:
                    continue
                out.append((port, endpoint.sock, self._next_packet(stream, marker=True),
                            stream.remote))
        return out

    def run_streams(self, local_ports: Sequence[int], sent_at: float,
                    refused: Sequence[int] = ()) -> None:
        """Pace the streams whose first packets a burst sender sent at `sent_at` (monotonic);
        ports in `refused` had theirs dropped by the kernel."""
        first_tick = tick_at_or_after(sent_at, self._t0, self._slot_s) + self._slots_per_turn
        dropped = set(refused)
        with self._lock:
            for port in local_ports:
                endpoint = self._endpoints.get(port)
                stream = endpoint.stream if endpoint is not None else None
                if endpoint is None or stream is None or stream.running:
                    continue  # closed meanwhile, or started by another thread
                if port in dropped:
                    self.send_errors += 1
                else:
                    endpoint.sent += 1
                stream.running = True
                self._pace(endpoint, first_tick, sent_at)
        self._wake()

    def _pace(self, endpoint: _Endpoint, first_tick: int, first_sent: float) -> None:
        """From its second packet on: the wheel, or the recording's own timing."""
        stream = endpoint.stream
        if self.recording is None or stream is None:
            if not self._wheel:
                self._tick = first_tick - self._slots_per_turn  # nothing to catch up on
            self._wheel.add(endpoint, first_tick)
            return
        stream.started = first_sent
        self._push(endpoint, first_sent + self.recording.packet(stream.played).at)

    def _push(self, endpoint: _Endpoint, due: float) -> None:
        self._due_seq += 1
        heapq.heappush(self._due, (due, self._due_seq, endpoint))

    def _prepared(self, port: int) -> _Endpoint:
        endpoint = self._endpoint(port)
        if endpoint.stream is None:
            raise ValueError(f"RTP port {port}: prepare_stream() before start_streams()")
        if endpoint.stream.running:
            raise ValueError(f"RTP port {port}: stream already running")
        return endpoint

    def _endpoint(self, port: int) -> _Endpoint:
        try:
            return self._endpoints[port]
        except KeyError:
            raise ValueError(f"RTP port {port} is not an open endpoint of this engine") from None

    def close_endpoint(self, local_port: int) -> None:
        """Stop sending and receiving on the port; its counts stay in totals()."""
        with self._lock:
            endpoint = self._endpoints.pop(local_port, None)
            if endpoint is None:
                return
            if endpoint.stream is not None and endpoint.stream.running:
                self._wheel.remove(endpoint)
                endpoint.stream.running = False
            fd = endpoint.sock.fileno()
            self._by_fd.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # the engine is stopping and the epoll is already closed
            endpoint.sock.close()
            self._closed = self._closed.merge(endpoint.rtp_stats())

    # --- what it counted ----------------------------------------------------------------

    def stats(self) -> RtpStats:
        """Every endpoint's counts, open and closed, merged, with the engine's own errors."""
        with self._lock:
            endpoints, closed = list(self._endpoints.values()), self._closed
            errors, invalid = self.send_errors, self.invalid_packets
        # counted outside the lock, so that the I/O thread does not wait for thousands of
        # endpoints; one closing meanwhile is in `endpoints`, not yet in `closed`
        sources = [s for e in endpoints for s in list(e.stats.sources.values())]
        sent = sum(e.sent for e in endpoints)
        return closed.merge(RtpStats.of_sources(sources, sent).merge(
            RtpStats(send_errors=errors, invalid=invalid)))

    def totals(self) -> dict[str, float]:
        """rtp_sent, rtp_received, rtp_lost, jitter_ms_max over open and closed endpoints."""
        return _totals(self.stats())

    def endpoint_totals(self, local_port: int) -> dict[str, float]:
        """The same counters for one open endpoint."""
        with self._lock:
            stats = self._endpoint(local_port).rtp_stats()
        return _totals(stats)

    @property
    def running_streams(self) -> int:
        if self.recording is not None:
            return sum(1 for e in self._endpoints.values() if e.stream and e.stream.running)
        return len(self._wheel)

    # --- sending ------------------------------------------------------------------------

    def _next_packet(self, stream: _Stream, marker: bool = False) -> bytes:
        """The stream's next packet as a copy, the stream moved on (first packets)."""
        if self.recording is not None:
            return bytes(self._played_packet(stream, self.recording))
        packet = bytearray(stream.packet)
        SEQUENCE_TIMESTAMP.pack_into(packet, 2, stream.sequence, stream.timestamp)
        if marker:
            packet[1] |= MARKER
        stream.sequence = (stream.sequence + 1) & 0xFFFF
        stream.timestamp = (stream.timestamp + self._step) & 0xFFFFFFFF
        return bytes(packet)

    def _played_packet(self, stream: _Stream, recording: Recording) -> bytearray:
        """The recording's next packet, on the stream's own sequence and timestamp bases."""
        played = recording.packet(stream.played)
        second = played.payload_type | (MARKER if played.marker else 0)
        packet = bytearray(HEADER_SIZE + len(played.payload))
        HEADER.pack_into(packet, 0, RTP_VERSION << 6, second,
                         (stream.sequence + played.sequence_offset) & 0xFFFF,
                         (stream.timestamp + played.ts_offset) & 0xFFFFFFFF, stream.ssrc)
        packet[HEADER_SIZE:] = played.payload
        stream.played += 1
        return packet

    def _send_first(self, endpoint: _Endpoint) -> None:
        stream = endpoint.stream
        assert stream is not None
        self._sendto(endpoint, self._next_packet(stream, marker=True), stream.remote)

    def _sendto(self, endpoint: _Endpoint, packet: bytes | bytearray,
                remote: tuple[str, int]) -> None:
        try:
            endpoint.sock.sendto(packet, remote)
        except OSError:
            self.send_errors += 1  # a full socket buffer drops the packet, as a network would
        else:
            endpoint.sent += 1

    def _send_slot(self, tick: int) -> None:
        """One pass over the slot's streams: patch sequence and timestamp, send, move on."""
        pack_into, step, errors = SEQUENCE_TIMESTAMP.pack_into, self._step, 0
        for endpoint in self._wheel.due(tick):
            stream = endpoint.stream
            assert stream is not None
            packet = stream.packet
            pack_into(packet, 2, stream.sequence, stream.timestamp)
            try:
                endpoint.sock.sendto(packet, stream.remote)
            except OSError:
                errors += 1  # a full socket buffer drops the packet, as a network would
            else:
                endpoint.sent += 1
            stream.sequence = (stream.sequence + 1) & 0xFFFF
            stream.timestamp = (stream.timestamp + step) & 0xFFFFFFFF
        self.send_errors += errors

    def _send_due(self, now: float) -> float | None:
        """Send the slots due by `now` (a few at a time when late, so that receiving keeps
        up); returns when the next one is due, None when no stream runs."""
        if self.recording is not None:
            return self._play_due(now, self.recording)
        if not self._wheel:
            return None
        for _ in range(CATCH_UP_SLOTS):
            if self._t0 + self._tick * self._slot_s > now:
                break
            self._send_slot(self._tick)
            self._tick += 1
        return self._t0 + self._tick * self._slot_s

    def _play_due(self, now: float, recording: Recording) -> float | None:
        """Send each played stream's packets at their times, however many streams."""
        due = self._due
        while due and due[0][0] <= now:
            _, _, endpoint = heapq.heappop(due)
            stream = endpoint.stream
            if stream is None or not stream.running or endpoint.port not in self._endpoints:
                continue  # closed meanwhile: it leaves the heap here
            self._sendto(endpoint, self._played_packet(stream, recording), stream.remote)
            self._push(endpoint, stream.started + recording.packet(stream.played).at)
        return due[0][0] if due else None

    # --- the I/O thread -----------------------------------------------------------------

    def _io_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                next_due = self._send_due(time.monotonic())
            timeout = IDLE_WAIT_S if next_due is None else max(0.0, next_due - time.monotonic())
            try:
                # room for every socket: one read each per wait keeps receiving level
                events = self._epoll.poll(timeout, len(self._by_fd) + 1)
            except OSError:
                return
            if events:
                with self._lock:
                    self._receive(events, time.monotonic())

    def _receive(self, events: list[tuple[int, int]], arrival: float) -> None:
        """One datagram from each ready socket: epoll is level-triggered, so a socket with
        more queued is ready again at once, and no read ends in a raised EAGAIN."""
        by_fd, buffer, unpack = self._by_fd, self._rx_buffer, HEADER.unpack_from
        for fd, _ in events:
            endpoint = by_fd.get(fd)
            if endpoint is None:
                if fd == self._wake_fd:
                    os.eventfd_read(fd)
                continue  # closed meanwhile
            try:
                size = endpoint.sock.recv_into(buffer)
            except OSError:
                continue  # BlockingIOError: another read took it
            if size < HEADER_SIZE or buffer[0] >> 6 != RTP_VERSION:
                self.invalid_packets += 1
                continue
            _, _, sequence, timestamp, ssrc = unpack(buffer)
            source = endpoint.source
            if source is None or endpoint.ssrc != ssrc:  # a new or another source
                source = endpoint.source = endpoint.stats.source(ssrc)
                endpoint.ssrc = ssrc
            source.update(sequence, timestamp, arrival)


def _totals(stats: RtpStats) -> dict[str, float]:
    return {"rtp_sent": float(stats.sent), "rtp_received": float(stats.received),
            "rtp_lost": float(stats.lost), "jitter_ms_max": stats.jitter_ms_max}
