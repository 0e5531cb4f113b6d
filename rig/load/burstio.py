"""Linux socket calls the burst engine needs and the socket module lacks.

- `Mmsg`: one `sendmmsg()` of pre-built datagrams from one socket (through ctypes), the
  floor a burst is measured against: the kernel's own cost of delivering the packets.
- `TimestampSink`: a UDP socket whose datagrams carry the kernel's receive time
  (SO_TIMESTAMPNS, CLOCK_REALTIME), so a burst's spread is measured where it lands.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")
ANCILLARY = 64
RECV_BUFFER = 2048


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_uint16),
                ("addr", ctypes.c_uint32), ("zero", ctypes.c_char * 8)]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def _sockaddr(address: tuple[str, int]) -> _SockaddrIn:
    packed = socket.inet_aton(address[0])
    return _SockaddrIn(socket.AF_INET, socket.htons(address[1]),
                       struct.unpack("=I", packed)[0], b"")


class Mmsg:
    """Datagrams and their destinations laid out once; `send()` is one system call."""

    def __init__(self, sock: socket.socket, packets: Sequence[bytes],
                 destinations: Sequence[tuple[str, int]]) -> None:
        if len(packets) != len(destinations):
            raise ValueError(f"{len(packets)} packets for {len(destinations)} destinations")
        count = len(packets)
        self._sock = sock
        self._count = count
        self._buffers = [ctypes.create_string_buffer(p, len(p)) for p in packets]
        self._names = (_SockaddrIn * count)(*(_sockaddr(d) for d in destinations))
        self._iovs = (_Iovec * count)(
            *(_Iovec(ctypes.cast(b, ctypes.c_void_p), len(p))
              for b, p in zip(self._buffers, packets, strict=True)))
        self._msgs = (_Mmsghdr * count)()
        for i in range(count):
            hdr = self._msgs[i].hdr
            hdr.name = ctypes.cast(ctypes.byref(self._names[i]), ctypes.c_void_p)
            hdr.namelen = ctypes.sizeof(_SockaddrIn)
            hdr.iov = ctypes.pointer(self._iovs[i])
            hdr.iovlen = 1
        self._call = libc().sendmmsg
        self._call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        self._call.restype = ctypes.c_int

    def send(self) -> int:
        """Send every datagram; returns how many the kernel took."""
        sent = self._call(self._sock.fileno(), ctypes.byref(self._msgs), self._count, 0)
        if sent < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(sent)


@dataclass(frozen=True)
class Arrival:
    """One datagram as the sink's kernel saw it: receive time (CLOCK_REALTIME) and bytes."""

    t: float
    data: bytes


class TimestampSink:
    """A bound UDP socket that hands back datagrams with their kernel receive times."""

    def __init__(self, host: str, port: int = 0, buffer_bytes: int = 1 << 20) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def collect(self, count: int, timeout: float) -> list[Arrival]:
        """Up to `count` datagrams, waiting at most `timeout` seconds in all."""
        out: list[Arrival] = []
        until = time.monotonic() + timeout
        while len(out) < count:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(RECV_BUFFER, ANCILLARY)
            except BlockingIOError:
                left = until - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    break
                continue
            out.append(Arrival(kernel_time(ancdata), data))
        return out

    def drain(self) -> int:
        """Throw away whatever is queued; returns how many datagrams."""
        dropped = 0
        while True:
            try:
                self.sock.recv(RECV_BUFFER)
            except BlockingIOError:
                return dropped
            dropped += 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TimestampSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kernel_time(ancdata: Sequence[tuple[int, int, bytes]]) -> float:
    """The SO_TIMESTAMPNS time of a datagram in seconds (CLOCK_REALTIME); NaN if absent."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return seconds + nanoseconds * 1e-9
    return float("nan")
