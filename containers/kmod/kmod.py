"""A userspace model of rtpengine's kernel module: tables, memory pins, forwarding targets and
their status file.

`DIR` plays `/proc/rtpengine`: one Unix stream connection to `DIR/control.sock` is one open
file handle of a table's control file, and `DIR/<table>/status` is the table's status file.
Standard library only: the rig starts this as a process, it never imports it.

    python3 kmod.py --dir DIR [--max-targets N]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Pins one table can hold, as a fixed array in the real module since 847d00431.
MAX_SHM_AREAS = 16

PAGE_SIZE = 4096
MAX_LINE = 4096
# Forwarding targets one table can hold (`--max-targets`). The real module has no fixed
# limit: it refuses a target when it cannot allocate one, with ENOMEM; this models that point.
MAX_TARGETS = 65536
TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
STATUS_LABELS = (
    "Refcount",
    "Opencount",
    "Targets",
    "Skb refs",
    "Skb copies",
    "Players",
    "PStreams",
    "Memory pins",
    "Memory",
    "Ring bufs",
)


class CommandError(Exception):
    """A request the module refuses: the reply is `error <errno_name> <text>`."""

    def __init__(self, errno_name: str, text: str) -> None:
        super().__init__(f"{errno_name} {text}")
        self.errno_name = errno_name
        self.text = text


@dataclass(frozen=True)
class Open:
    table: str


@dataclass(frozen=True)
class Pin:
    addr: int
    size: int


@dataclass(frozen=True)
class Unpin:
    addr: int


@dataclass(frozen=True)
class AddTarget:
    local: str
    destination: str


@dataclass(frozen=True)
class DelTarget:
    local: str


Command = Open | Pin | Unpin | AddTarget | DelTarget
USAGE = ("open T | pin ADDR SIZE | unpin ADDR | target LOCAL DEST | untarget LOCAL "
         "(LOCAL and DEST as HOST:PORT, DEST '-' for none)")


def parse_command(line: str) -> Command:
    """One request line as a command; CommandError(EINVAL) for anything malformed."""
    words = line.split()
    if not words:
        raise CommandError("EINVAL", "empty command")
    verb, args = words[0], words[1:]
    if verb == "open" and len(args) == 1:
        if not TABLE_NAME.fullmatch(args[0]):
            raise CommandError("EINVAL", f"bad table name {args[0]!r}")
        return Open(args[0])
    if verb == "pin" and len(args) == 2:
        return Pin(parse_addr(args[0]), parse_size(args[1]))
    if verb == "unpin" and len(args) == 1:
        return Unpin(parse_addr(args[0]))
    if verb == "target" and len(args) == 2:
        destination = args[1] if args[1] == "-" else parse_endpoint(args[1])
        return AddTarget(parse_endpoint(args[0]), destination)
    if verb == "untarget" and len(args) == 1:
        return DelTarget(parse_endpoint(args[0]))
    raise CommandError("EINVAL", f"bad command {line.strip()[:80]!r} (expected: {USAGE})")


def parse_endpoint(text: str) -> str:
    """HOST:PORT with a non-empty host and a port 1..65535 (the real module's
    is_valid_address), kept as text: the model forwards nothing."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not is_decimal(port) or not 0 < int(port) < 65536:
        raise CommandError("EINVAL", f"bad address {text[:60]!r} (expected HOST:PORT)")
    return f"{host}:{int(port)}"


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def parse_addr(text: str) -> int:
    try:
        addr = int(text, 16)
    except ValueError:
        raise CommandError("EINVAL", f"bad address {text[:40]!r} (expected hex)") from None
    if addr <= 0:
        raise CommandError("EINVAL", f"bad address {text[:40]!r} (must be > 0)")
    return addr


def parse_size(text: str) -> int:
    if not is_decimal(text):
        raise CommandError("EINVAL", f"bad size {text[:40]!r} (expected decimal bytes)")
    size = int(text)
    if size == 0 or size % PAGE_SIZE:
        raise CommandError("EINVAL", f"size {size} is not a positive multiple of {PAGE_SIZE}")
    return size


def format_status(values: dict[str, int]) -> str:
    """The status file text: each label and its colon left-justified in 13 columns."""
    return "".join(f"{label + ':':<13}{values[label]}\n" for label in STATUS_LABELS)


def log(text: str) -> None:
    print(f"kmod: {text}", file=sys.stderr, flush=True)


class Table:
    """One table: its pins, its open handles and its status file, all changed under one lock."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.lock = threading.Lock()
        self.pins: dict[int, int] = {}
        self.targets: dict[str, str] = {}
        self.max_targets = MAX_TARGETS
        self.opencount = 0
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self._write_status()

    def open(self) -> None:
        with self.lock:
            self.opencount += 1
            self._write_status()

    def close(self) -> None:
        with self.lock:
            self.opencount -= 1
            if self.opencount == 0 and (self.pins or self.targets):
                pins, targets = len(self.pins), len(self.targets)
                self.pins.clear()
                self.targets.clear()
                log(f"table={self.name} release pins={pins} targets={targets} (last close)")
            self._write_status()

    def pin(self, addr: int, size: int) -> None:
        with self.lock:
            if addr in self.pins:
                raise CommandError("EEXIST", f"address {addr:x} is already pinned")
            if len(self.pins) >= MAX_SHM_AREAS:
                raise CommandError("E2BIG", f"table holds {MAX_SHM_AREAS} pins (MAX_SHM_AREAS)")
            self.pins[addr] = size
            self._write_status()
            log(f"table={self.name} pin addr={addr:x} size={size} pins={len(self.pins)}")

    def unpin(self, addr: int) -> None:
        with self.lock:
            if addr not in self.pins:
                raise CommandError("ENOENT", f"address {addr:x} is not pinned")
            size = self.pins.pop(addr)
            self._write_status()
            log(f"table={self.name} unpin addr={addr:x} size={size} pins={len(self.pins)}")

    def add_target(self, local: str, destination: str) -> None:
        with self.lock:
            if local in self.targets:
                raise CommandError("EEXIST", f"a target for {local} exists")
            if len(self.targets) >= self.max_targets:
                raise CommandError("ENOMEM", f"table holds {self.max_targets} targets")
            self.targets[local] = destination
            self._write_status()
            log(f"table={self.name} target local={local} dest={destination} "
                f"targets={len(self.targets)}")

    def del_target(self, local: str) -> None:
        with self.lock:
            if self.targets.pop(local, None) is None:
                raise CommandError("ENOENT", f"no target for {local}")
            self._write_status()
            log(f"table={self.name} untarget local={local} targets={len(self.targets)}")

    def _write_status(self) -> None:
        # Readers must never see a half-written file: write a temp file, then rename over.
        values = dict.fromkeys(STATUS_LABELS, 0)
        values["Refcount"] = 1 + self.opencount
        values["Opencount"] = self.opencount
        values["Targets"] = len(self.targets)
        values["Memory pins"] = len(self.pins)
        values["Memory"] = sum(self.pins.values())
        temp = self.folder / ".status.tmp"
        temp.write_text(format_status(values))
        os.replace(temp, self.folder / "status")


class Module:
    """All tables of the module, created on first open and kept for the module's life."""

    def __init__(self, root: Path, max_targets: int = MAX_TARGETS) -> None:
        self.root = root
        self.max_targets = max_targets
        self.lock = threading.Lock()
        self.tables: dict[str, Table] = {}

    def table(self, name: str) -> Table:
        with self.lock:
            if name not in self.tables:
                table = Table(name, self.root / name)
                table.max_targets = self.max_targets
                self.tables[name] = table
            return self.tables[name]


class Handle:
    """One connection: an open file handle of one table's control file."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.table: Table | None = None

    def execute(self, line: str) -> str:
        """The reply line for one request line; never raises for bad input."""
        try:
            self._run(parse_command(line))
        except CommandError as err:
            name = self.table.name if self.table else "-"
            log(f"table={name} error {err.errno_name} {err.text}")
            return f"error {err.errno_name} {err.text}"
        return "ok"

    def _run(self, command: Command) -> None:
        if isinstance(command, Open):
            if self.table is not None:
                raise CommandError("EINVAL", f"table {self.table.name} is already open here")
            table = self.module.table(command.table)
            table.open()
            self.table = table
            return
        if self.table is None:
            raise CommandError("EBADF", "no table open (send 'open <table>' first)")
        if isinstance(command, Pin):
            self.table.pin(command.addr, command.size)
        elif isinstance(command, Unpin):
            self.table.unpin(command.addr)
        elif isinstance(command, AddTarget):
            self.table.add_target(command.local, command.destination)
        else:
            self.table.del_target(command.local)

    def close(self) -> None:
        if self.table is not None:
            self.table.close()
            self.table = None


def read_lines(stream: io.BufferedIOBase) -> Iterator[str]:
    """Request lines as text; an over-long line is cut to MAX_LINE and its rest skipped."""
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE + 1)) and not rest.endswith(b"\n"):
                pass
        yield raw.decode("utf-8", errors="replace")


class ControlHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        handle = Handle(self.server.module)  # type: ignore[attr-defined]
        try:
            for line in read_lines(self.rfile):
                self.wfile.write((handle.execute(line) + "\n").encode())
        except OSError:
            pass  # the peer went away mid-reply: same as a close
        finally:
            handle.close()


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # every worker thread of every relay connects at start-up; socketserver's default of 5
    # pending connections refuses some of them when the machine is busy
    request_queue_size = 128

    def __init__(self, path: Path, module: Module) -> None:
        self.module = module
        super().__init__(str(path), ControlHandler)


class Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT to leave serve_forever."""


def stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def claim_socket_path(path: Path) -> None:
    """Remove a stale socket left by a killed kmod; refuse if a live one answers there."""
    if len(os.fsencode(path)) > 107:
        raise SystemExit(f"kmod: socket path too long ({path}): use a shorter --dir")
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
    else:
        raise SystemExit(f"kmod: another kmod is serving {path}")
    finally:
        probe.close()


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Userspace model of rtpengine's kernel module")
    parser.add_argument("--dir", required=True, type=Path, help="folder playing /proc/rtpengine")
    parser.add_argument("--max-targets", type=positive, default=MAX_TARGETS,
                        help=f"forwarding targets per table before ENOMEM ({MAX_TARGETS})")
    args = parser.parse_args(argv)
    root: Path = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    sock_path = root / "control.sock"
    claim_socket_path(sock_path)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = ControlServer(sock_path, Module(root, args.max_targets))
    try:
        print(f"kmod ready dir={args.dir}", file=sys.stderr, flush=True)
        server.serve_forever()
    except Stop as why:
        log(f"stopping on {why}")
    finally:
        server.server_close()
        sock_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
