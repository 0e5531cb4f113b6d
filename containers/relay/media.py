"""The media plane: one UDP socket per stream, owned by one worker thread, relaying to its peer.

A stream is one leg's side of one media section: its endpoint sends RTP to the stream's port;
the worker forwards each packet to the peer stream's endpoint from the peer stream's port.
On a stream's first packet the worker allocates the stream's state from the bufferpool (this
is where a shard is made and pinned, on the worker thread) and hands the stream to the kernel
as a forwarding target, as rtpengine kernelises a stream; deleting the call removes the target
and frees the state.
"""

from __future__ import annotations

import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ports import PortRange

# Per-stream state, one allocation per site (sizes modelled on rtpengine's per-stream structs).
STREAM_SITES = (("stream_stats", 512), ("ssrc_entry", 256), ("payload_type", 128))
MAX_PACKET = 65535
BATCH = 64  # packets read from one socket before the worker looks at the others


class Pool(Protocol):
    def alloc(self, size: int, site: str) -> Any: ...

    def free(self, allocation: Any) -> None: ...


class Kernel(Protocol):
    """Forwarding targets in the kernel module; methods raise on a refusal."""

    def add_target(self, local: str, destination: str | None) -> None: ...

    def del_target(self, local: str) -> None: ...


class NoKernel:
    """No module: every stream stays in userspace."""

    def add_target(self, local: str, destination: str | None) -> None:
        raise OSError("no kernel module")

    def del_target(self, local: str) -> None:
        return None


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


def rtp_ssrc(packet: bytes) -> int | None:
    """The SSRC of an RTP packet (version 2, at least the 12-byte header), else None."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    return int(struct.unpack_from("!I", packet, 8)[0])


@dataclass(eq=False)
class Stream:
    """Mutable per-stream state: counters are written by the owning worker only."""

    sock: socket.socket
    port: int
    worker: int
    advertised: Endpoint | None = None
    kind: str = "audio"
    protocol: str = "RTP/AVP"
    peer: Stream | None = None
    learned: tuple[str, int] | None = None
    packets: int = 0
    bytes: int = 0
    errors: int = 0
    last_packet: float = 0.0
    ssrc: int | None = None
    allocations: list[Any] = field(default_factory=list)
    target: str | None = None  # the local HOST:PORT of its kernel target, while it has one
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def destination(self) -> tuple[str, int] | None:
        """Where packets for this stream's endpoint go: the learned source, else the SDP's."""
        if self.learned is not None:
            return self.learned
        if self.advertised is not None and self.advertised.port:
            return (self.advertised.address, self.advertised.port)
        return None

    def has_state(self) -> bool:
        return bool(self.allocations)


@dataclass
class WorkerCounters:
    relayed: int = 0
    relayed_bytes: int = 0
    dropped: int = 0


class Worker(threading.Thread):
    """Receives on the sockets assigned to it and forwards; changes arrive through a queue."""

    def __init__(
        self, index: int, pool: Pool, log: Callable[[str, str], None], clock: Callable[[], float],
        kernel: Kernel | None = None, address: str = "",
    ) -> None:
        super().__init__(name=f"worker-{index}", daemon=True)
        self.index = index
        self.counters = WorkerCounters()
        self._pool = pool
        self._kernel = kernel or NoKernel()
        self._address = address
        self._log = log
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: queue.SimpleQueue[tuple[str, Stream, Callable[[], None] | None]] = (
            queue.SimpleQueue()
        )
        self._stopping = threading.Event()

    def add(self, stream: Stream) -> None:
        self._post("add", stream, None)

    def remove(self, stream: Stream, done: Callable[[], None]) -> None:
        self._post("remove", stream, done)

    def stop(self) -> None:
        self._stopping.set()
        self._wake()

    def _post(self, what: str, stream: Stream, done: Callable[[], None] | None) -> None:
        self._commands.put((what, stream, done))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # a wake-up is already pending, or the worker has ended

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(timeout=1.0):
                    if key.data is None:
                        self._drain_wake()
                    else:
                        self._receive(key.data)
                self._apply_commands()
        finally:
            self._close_all()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _apply_commands(self) -> None:
        while True:
            try:
                what, stream, done = self._commands.get_nowait()
            except queue.Empty:
                return
            if what == "add":
                self._selector.register(stream.sock, selectors.EVENT_READ, stream)
            else:
                self._selector.unregister(stream.sock)
                stream.sock.close()
                if done is not None:
                    done()

    def _close_all(self) -> None:
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._selector.close()

    def _receive(self, stream: Stream) -> None:
        for _ in range(BATCH):
            try:
                packet, source = stream.sock.recvfrom(MAX_PACKET)
            except OSError:  # nothing more to read, or the socket was closed
                return
            try:
                self._on_packet(stream, packet, source)
            except Exception as exc:  # a worker must outlive any one bad packet
                self.counters.dropped += 1
                self._log("ERR", f"port={stream.port} packet dropped: {exc!r}")

    def _on_packet(self, stream: Stream, packet: bytes, source: tuple[str, int]) -> None:
        if stream.packets == 0 and not self._start_stream(stream, packet):
            return
        if stream.learned is None:
            stream.learned = source
        stream.packets += 1
        stream.bytes += len(packet)
        stream.last_packet = self._clock()
        self._forward(stream, packet)

    def _start_stream(self, stream: Stream, packet: bytes) -> bool:
        """First packet: allocate the stream's state from the pool (may make and pin a shard),
        then kernelise it. Under the stream's lock, so a delete sees both or neither."""
        with stream.lock:
            if stream.closed:
                return False
            for site, size in STREAM_SITES:
                stream.allocations.append(self._pool.alloc(size, site))
            self._kernelise(stream)
        stream.ssrc = rtp_ssrc(packet)
        return True

    def _kernelise(self, stream: Stream) -> None:
        local = f"{self._address}:{stream.port}"
        peer = stream.peer.destination() if stream.peer is not None else None
        try:
            self._kernel.add_target(local, f"{peer[0]}:{peer[1]}" if peer else None)
        except Exception as exc:  # the stream goes on in userspace, as rtpengine's does
            self._log("ERR", f"Failed to push relay stream to kernel: {exc}")
            return
        stream.target = local

    def _forward(self, stream: Stream, packet: bytes) -> None:
        peer = stream.peer
        destination = peer.destination() if peer is not None else None
        if peer is None or destination is None:
            self.counters.dropped += 1
            stream.errors += 1
            return
        try:
            peer.sock.sendto(packet, destination)
        except OSError:  # the peer was deleted meanwhile, or the kernel refused
            self.counters.dropped += 1
            stream.errors += 1
            return
        self.counters.relayed += 1
        self.counters.relayed_bytes += len(packet)


class MediaPlane:
    """The worker threads and the port range; opens and closes streams for the call layer."""

    def __init__(
        self, address: str, ports: PortRange, workers: int, pool: Pool,
        log: Callable[[str, str], None], clock: Callable[[], float] = time.time,
        kernel: Kernel | None = None,
    ) -> None:
        self.address = address
        self._ports = ports
        self._pool = pool
        self._kernel = kernel or NoKernel()
        self._log = log
        self._workers = [Worker(i, pool, log, clock, self._kernel, address)
                         for i in range(workers)]
        self._next_worker = 0

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(timeout)

    def open_stream(self) -> Stream:
        """Bind the next free even port and give the socket to the next worker (round robin)."""
        port, sock = self._ports.take(self._bind)
        worker = self._workers[self._next_worker]
        self._next_worker = (self._next_worker + 1) % len(self._workers)
        stream = Stream(sock=sock, port=port, worker=worker.index)
        worker.add(stream)
        return stream

    def unkernelise(self, streams: list[Stream]) -> None:
        """Take the streams' targets out of the kernel. The streams count as closed from
        here on, so no worker kernelises one of them again."""
        for stream in streams:
            with stream.lock:
                stream.closed = True
                local, stream.target = stream.target, None
            if local is None:
                continue
            try:
                self._kernel.del_target(local)
            except Exception as exc:
                self._log("ERR", f"Failed to delete relay stream from kernel: {exc}")

    def close_streams(self, streams: list[Stream], timeout: float = 2.0) -> None:
        """Free the streams' pool state, then wait until their workers closed the sockets."""
        for stream in streams:
            with stream.lock:
                stream.closed = True
                allocations, stream.allocations = stream.allocations, []
            for allocation in allocations:
                self._pool.free(allocation)
        closed = [threading.Event() for _ in streams]
        for stream, event in zip(streams, closed, strict=True):
            self._workers[stream.worker].remove(stream, event.set)
        deadline = time.monotonic() + timeout
        for stream, event in zip(streams, closed, strict=True):
            if event.wait(max(0.0, deadline - time.monotonic())):
                self._ports.give_back(stream.port)

    def counters(self) -> WorkerCounters:
        total = WorkerCounters()
        for worker in self._workers:
            total.relayed += worker.counters.relayed
            total.relayed_bytes += worker.counters.relayed_bytes
            total.dropped += worker.counters.dropped
        return total

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.address, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock
