"""The rig's RTP endpoints: many UDP sockets on one host, paced G.711-style streams.

One sender thread paces every running stream on a wheel of 1 ms slots: a stream sits in
the slot of its phase and is sent once per turn of the wheel, so a whole slot's packets
go out in one batch, and ticks follow absolute deadlines (start + n * slot), so pacing
does not drift however late a tick runs. One receiver thread waits on epoll over every
socket and keeps RFC 3550 statistics per endpoint.

start_streams() sends each stream's first packet from the calling thread. For a burst,
first_packets() builds them instead and a burst sender process (rig/load/burstsender.py)
sends them from the streams' own sockets at the deadline; run_streams() then paces the rest.
"""

from __future__ import annotations

import heapq
import math
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
    RTP_VERSION,
    SILENCE_BYTE,
    ReceiverStats,
    clock_rate,
    samples_per_packet,
)
from rig.wire.rtpplay import Recording

SLOT_S = 0.001
RECV_BUFFER = 2048
POLL_TIMEOUT_S = 0.05
IDLE_WAIT_S = 0.1
SOCKET_BUFFER_BYTES = 1 << 18


@dataclass(eq=False, slots=True)
class _Stream:
    remote: tuple[str, int]
    ssrc: int
    sequence: int
    timestamp: int
    packet: bytearray
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


@dataclass
class _Closed:
    """What closed endpoints leave behind in the totals."""

    sent: int = 0
    received: int = 0
    lost: int = 0
    jitter_ms_max: float = 0.0


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
        self._closed = _Closed()
        self._next_port = lo + (lo % 2)
        self.send_errors = 0
        self.invalid_packets = 0
        self._lock = threading.Lock()  # endpoints, slots, stream registration
        self._tx_lock = threading.Lock()  # one slot's sending vs (un)registering streams
        self._rx_lock = threading.Lock()  # one receive batch vs closing endpoints
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._epoll = select.epoll()
        self._rx_buffer = bytearray(RECV_BUFFER)  # only the receiver thread touches it
        self._t0 = time.monotonic()
        self._threads: list[threading.Thread] = []
        # with a recording, every stream plays it (rig.wire.rtpplay) from a heap of
        # (due time, tie-break, endpoint) instead of sitting on the pacing wheel
        self.recording = recording
        self._due: list[tuple[float, int, _Endpoint]] = []
        self._due_seq = 0

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._send_loop, name="rig-rtp-send", daemon=True),
            threading.Thread(target=self._receive_loop, name="rig-rtp-recv", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(5)
        for port in list(self._endpoints):
            self.close_endpoint(port)
        self._epoll.close()

    def __enter__(self) -> MediaEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- endpoints and streams ----------------------------------------------------------

    def open_endpoint(self) -> int:
        """Bind the next free even port of the range on host and start receiving on it."""
        with self._lock:
            sock, port = self._bind_free_port()
            endpoint = _Endpoint(port, sock, ReceiverStats(self._clock_rate))
            self._endpoints[port] = endpoint
        with self._rx_lock:
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
            endpoint.stream = _Stream(
                remote=(remote[0], int(remote[1])),
                ssrc=self._rng.getrandbits(32),
                sequence=self._rng.getrandbits(16),
                timestamp=self._rng.getrandbits(32),
                packet=bytearray(HEADER.size) + self._payload,
            )

    def start_streams(self, local_ports: Sequence[int]) -> None:
        """Send each stream's first packet now, from this thread; the engine sends the rest."""
        endpoints = [self._prepared(port) for port in local_ports]
        started = time.monotonic()
        for endpoint in endpoints:
            self._send(endpoint, marker=True)
        first_tick = tick_at_or_after(started, self._t0, self._slot_s) + self._slots_per_turn
        with self._tx_lock, self._lock:
            for endpoint in endpoints:
                stream = endpoint.stream
                if stream is None or stream.running or endpoint.port not in self._endpoints:
                    continue  # closed or started meanwhile by another thread
                stream.running = True
                self._pace(endpoint, first_tick, started)
        self._wake.set()

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
                self._stamp(stream, marker=True)
                out.append((port, endpoint.sock, bytes(stream.packet), stream.remote))
        return out

    def run_streams(self, local_ports: Sequence[int], sent_at: float,
                    refused: Sequence[int] = ()) -> None:
        """Pace the streams whose first packets a burst sender sent at `sent_at` (monotonic);
        ports in `refused` had theirs dropped by the kernel."""
        first_tick = tick_at_or_after(sent_at, self._t0, self._slot_s) + self._slots_per_turn
        dropped = set(refused)
        with self._tx_lock, self._lock:
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
        self._wake.set()

    def _pace(self, endpoint: _Endpoint, first_tick: int, first_sent: float) -> None:
        """From its second packet on: the wheel, or the recording's own timing."""
        stream = endpoint.stream
        if self.recording is None or stream is None:
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
        with self._tx_lock, self._lock:
            endpoint = self._endpoints.pop(local_port, None)
            if endpoint is None:
                return
            if endpoint.stream is not None and endpoint.stream.running:
                self._wheel.remove(endpoint)
                endpoint.stream.running = False
        with self._rx_lock:
            fd = endpoint.sock.fileno()
            self._by_fd.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # the engine is stopping and the epoll is already closed
            endpoint.sock.close()
            self._fold_into_closed(endpoint)

    def _fold_into_closed(self, endpoint: _Endpoint) -> None:
        closed = self._closed
        closed.sent += endpoint.sent
        closed.received += endpoint.stats.received
        closed.lost += endpoint.stats.lost
        closed.jitter_ms_max = max(closed.jitter_ms_max, endpoint.stats.jitter_ms)

    def totals(self) -> dict[str, float]:
        """rtp_sent, rtp_received, rtp_lost, jitter_ms_max over open and closed endpoints."""
        with self._rx_lock, self._lock:
            open_ = list(self._endpoints.values())
            closed = self._closed
            return {
                "rtp_sent": float(closed.sent + sum(e.sent for e in open_)),
                "rtp_received": float(closed.received + sum(e.stats.received for e in open_)),
                "rtp_lost": float(closed.lost + sum(e.stats.lost for e in open_)),
                "jitter_ms_max": max([closed.jitter_ms_max, *(e.stats.jitter_ms for e in open_)]),
            }

    def endpoint_totals(self, local_port: int) -> dict[str, float]:
        """The same counters for one open endpoint."""
        with self._rx_lock, self._lock:
            e = self._endpoint(local_port)
            return {"rtp_sent": float(e.sent), "rtp_received": float(e.stats.received),
                    "rtp_lost": float(e.stats.lost), "jitter_ms_max": e.stats.jitter_ms}

    @property
    def running_streams(self) -> int:
        if self.recording is not None:
            return sum(1 for e in self._endpoints.values() if e.stream and e.stream.running)
        return len(self._wheel)

    # --- sending ------------------------------------------------------------------------

    def _stamp(self, stream: _Stream, marker: bool = False) -> None:
        """Write the next header into the stream's packet and move the stream on."""
        if self.recording is not None:
            self._stamp_played(stream, self.recording)
            return
        second = self.payload_type | (0x80 if marker else 0)
        # the header is rewritten in place: no new packet object per send
        HEADER.pack_into(stream.packet, 0, 0x80, second, stream.sequence, stream.timestamp,
                         stream.ssrc)
        stream.sequence = (stream.sequence + 1) & 0xFFFF
        stream.timestamp = (stream.timestamp + self._step) & 0xFFFFFFFF

    def _stamp_played(self, stream: _Stream, recording: Recording) -> None:
        """The recording's next packet, on the stream's own sequence and timestamp bases."""
        played = recording.packet(stream.played)
        second = played.payload_type | (0x80 if played.marker else 0)
        packet = bytearray(HEADER.size + len(played.payload))
        HEADER.pack_into(packet, 0, 0x80, second, (stream.sequence + played.sequence_offset)
                         & 0xFFFF, (stream.timestamp + played.ts_offset) & 0xFFFFFFFF,
                         stream.ssrc)
        packet[HEADER.size:] = played.payload
        stream.packet = packet
        stream.played += 1

    def _send(self, endpoint: _Endpoint, marker: bool = False) -> None:
        stream = endpoint.stream
        assert stream is not None
        self._stamp(stream, marker)
        try:
            endpoint.sock.sendto(stream.packet, stream.remote)
        except OSError:
            self.send_errors += 1  # a full socket buffer drops the packet, as a network would
        else:
            endpoint.sent += 1

    def _send_loop(self) -> None:
        if self.recording is not None:
            self._play_loop(self.recording)
            return
        tick = 0
        while not self._stop.is_set():
            if not self._wheel:
                self._wait_for_streams()
                tick = max(tick, tick_at_or_after(time.monotonic(), self._t0, self._slot_s))
                continue
            delay = self._t0 + tick * self._slot_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._send_slot(tick)
            tick += 1

    def _play_loop(self, recording: Recording) -> None:
        """Send each played stream's packets at their times, however many streams."""
        while not self._stop.is_set():
            with self._tx_lock:
                due = self._due[0][0] if self._due else None
            if due is None:
                self._wake.clear()
                self._wake.wait(IDLE_WAIT_S)
                continue
            delay = due - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, IDLE_WAIT_S))  # a new stream may be due sooner
                self._wake.clear()
                continue
            with self._tx_lock:
                _, _, endpoint = heapq.heappop(self._due)
                stream = endpoint.stream
                if stream is None or not stream.running or endpoint.port not in self._endpoints:
                    continue  # closed meanwhile: it leaves the heap here
                self._send(endpoint)
                self._push(endpoint, stream.started + recording.packet(stream.played).at)

    def _wait_for_streams(self) -> None:
        self._wake.clear()
        if not self._wheel:
            self._wake.wait(IDLE_WAIT_S)

    def _send_slot(self, tick: int) -> None:
        with self._tx_lock:
            for endpoint in self._wheel.due(tick):
                self._send(endpoint)

    # --- receiving ----------------------------------------------------------------------

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._epoll.poll(POLL_TIMEOUT_S)
            except OSError:
                return
            with self._rx_lock:
                for fd, _ in events:
                    endpoint = self._by_fd.get(fd)
                    if endpoint is not None:
                        self._drain(endpoint)

    def _drain(self, endpoint: _Endpoint) -> None:
        sock, stats, buffer = endpoint.sock, endpoint.stats, self._rx_buffer
        arrival = time.monotonic()
        while True:
            try:
                size = sock.recv_into(buffer)
            except OSError:
                return  # BlockingIOError: drained
            if size < HEADER.size or buffer[0] >> 6 != RTP_VERSION:
                self.invalid_packets += 1
                continue
            _, _, sequence, timestamp, ssrc = HEADER.unpack_from(buffer)
            stats.update_header(ssrc, sequence, timestamp, arrival)
