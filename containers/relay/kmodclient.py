"""The relay's side of the kmod model's control channel: pin and unpin shard memory, add and
remove forwarding targets.

One connection per calling thread, like worker threads each writing to their own handle of
`/proc/rtpengine/<table>/control`; a pin is a blocking round trip. Standard library only.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path


class PinError(Exception):
    """kmod refused a request or could not be reached; str() reads like strerror."""

    def __init__(self, errno_name: str, text: str) -> None:
        super().__init__(errno_name, text)
        self.errno_name = errno_name
        self.text = text

    def __str__(self) -> str:
        code = getattr(errno, self.errno_name, None)
        reason = os.strerror(code) if isinstance(code, int) else self.text
        return f"{reason} ({self.errno_name})"


class KmodClient:
    """Pins and unpins memory areas in one table of a kmod model listening in `dir`.

    The constructing thread connects at once, so a missing kmod fails early and the table
    counts one open handle for as long as the client lives.
    """

    def __init__(self, dir: str | os.PathLike[str], table: str | int) -> None:
        self.path = Path(dir) / "control.sock"
        self.table = str(table)
        self._local = threading.local()
        self._lock = threading.Lock()  # guards only the list of connections
        self._connections: list[socket.socket] = []
        self._closed = False
        self._connection()

    def connect(self) -> None:
        """Open the calling thread's connection now (a worker thread does it at start-up,
        as the daemon opens the control file before traffic arrives)."""
        self._connection()

    def pin(self, addr: int, size: int) -> None:
        self._request(f"pin {addr:x} {size}")

    def unpin(self, addr: int) -> None:
        self._request(f"unpin {addr:x}")

    def add_target(self, local: str, destination: str | None) -> None:
        """Hand a stream to the kernel: packets to `local` (HOST:PORT) forward to
        `destination` (None while the peer's endpoint is unknown)."""
        self._request(f"target {local} {destination or '-'}")

    def del_target(self, local: str) -> None:
        self._request(f"untarget {local}")

    def close(self) -> None:
        """Close every thread's connection: kmod releases the table's pins on the last one."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> KmodClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, line: str) -> None:
        conn = self._connection()
        reply = self._round_trip(conn, line)
        if reply != "ok":
            raise reply_error(reply)

    def _connection(self) -> socket.socket:
        conn: socket.socket | None = getattr(self._local, "conn", None)
        if conn is not None and conn.fileno() != -1:
            return conn
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.path))
        except OSError as err:
            conn.close()
            raise os_error(err, f"cannot reach kmod at {self.path}") from err
        with self._lock:
            if self._closed:
                conn.close()
                raise PinError("EBADF", "kmod client is closed")
            self._connections.append(conn)
        self._local.conn = conn
        reply = self._round_trip(conn, f"open {self.table}")
        if reply != "ok":
            raise reply_error(reply)
        return conn

    def _round_trip(self, conn: socket.socket, line: str) -> str:
        try:
            conn.sendall(line.encode() + b"\n")
            reply = read_line(conn)
        except OSError as err:
            raise os_error(err, "kmod connection failed") from err
        if reply is None:
            raise PinError("EIO", "kmod closed the connection")
        return reply


def read_line(conn: socket.socket) -> str | None:
    """One reply line (without newline), or None at end of stream.

    No read-ahead buffer is needed: kmod sends exactly one short line per request.
    """
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            return None
        data += chunk
    return data.decode("utf-8", errors="replace").rstrip("\n")


def reply_error(reply: str) -> PinError:
    """`error <ERRNO> <text>` as a PinError; anything else is a protocol error."""
    words = reply.split(" ", 2)
    if len(words) >= 2 and words[0] == "error":
        return PinError(words[1], words[2] if len(words) > 2 else "")
    return PinError("EPROTO", f"unexpected reply from kmod: {reply[:80]!r}")


def os_error(err: OSError, context: str) -> PinError:
    name = errno.errorcode.get(err.errno or 0, "EIO")
    return PinError(name, f"{context}: {err.strerror or err}")
