"""rtpengine-like media relay: NG control over UDP, RTP relaying on worker threads, per-stream
state in a shard bufferpool pinned through the kmod model.

    python3 relay.py --ng HOST:PORT --rtp-addr HOST --rtp-ports LO-HI --workers N
                     --shard-size BYTES --kmod DIR --table T [--timeout SECONDS]

Ready when NG `ping` answers `pong`. SIGUSR1 dumps statistics to the log; SIGTERM/SIGINT
shut down cleanly (the kmod connections close, so kmod releases the table's pins).
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bufferpool import PAGE_SIZE, BufferPool
from calls import CallTable
from control import Control
from kmodclient import KmodClient, PinError
from media import MediaPlane
from ports import PortRange, parse_port_range
from relaylog import StreamLog
from relaystats import RateMeter, Traffic, dump_lines, statistics_reply


class StartupError(Exception):
    """The relay cannot start; the text is its one log line."""


@dataclass(frozen=True)
class Settings:
    ng: tuple[str, int]
    rtp_addr: str
    rtp_ports: tuple[int, int]
    workers: int
    shard_size: int
    kmod: Path
    table: str
    timeout: float = 60.0


def _host_port(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return _ipv4(host), int(port)


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from exc


def _port_range(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} workers (allowed: 1..256)")
    return int(text)


def _shard_size(text: str) -> int:
    if not text.isdigit() or int(text) <= 0 or int(text) % PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive multiple of {PAGE_SIZE}")
    return int(text)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} seconds (allowed: 0..86400, 0 = never)")
    return value


def parse_settings(argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="relay.py", description=__doc__.split("\n")[0])
    parser.add_argument("--ng", type=_host_port, required=True, help="NG control HOST:PORT")
    parser.add_argument("--rtp-addr", type=_ipv4, required=True, help="address for RTP")
    parser.add_argument("--rtp-ports", type=_port_range, required=True, help="LO-HI")
    parser.add_argument("--workers", type=_workers, default=4)
    parser.add_argument("--shard-size", type=_shard_size, default=16 * 1024 * 1024)
    parser.add_argument("--kmod", type=Path, required=True, help="kmod model directory")
    parser.add_argument("--table", required=True, help="kmod table")
    parser.add_argument("--timeout", type=_timeout, default=60.0,
                        help="close a call after this long without signal or RTP (0: never)")
    args = parser.parse_args(argv)
    return Settings(args.ng, args.rtp_addr, args.rtp_ports, args.workers, args.shard_size,
                    args.kmod, args.table, args.timeout)


class Relay:
    """The running relay: owns the NG socket, the kmod client, the pool and the workers."""

    def __init__(self, settings: Settings, log: StreamLog) -> None:
        self._log = log
        self._started = time.time()
        _check_rtp_address(settings.rtp_addr)
        self._ng = _bind_ng(settings.ng)
        try:
            self._kmod = KmodClient(settings.kmod, settings.table)
        except PinError as exc:
            self._ng.close()
            raise StartupError(f"cannot open kmod table {settings.table}: {exc}") from exc
        self._pool = BufferPool(settings.shard_size, self._kmod, log)
        self._media = MediaPlane(settings.rtp_addr, PortRange(*settings.rtp_ports),
                                 settings.workers, self._pool, log, kernel=self._kmod)
        self._timeout = settings.timeout
        # look for idle calls a few times per timeout, at most once a second
        self._tick = min(1.0, settings.timeout / 4) if settings.timeout else 1.0
        self._calls = CallTable(self._media, time.time)
        self._rates = (RateMeter(), RateMeter(), RateMeter())
        self._control = Control(
            {"offer": self._calls.offer, "answer": self._calls.answer,
             "delete": self._calls.delete, "query": self._calls.query,
             "list": self._calls.list_calls, "statistics": self.statistics},
            log, time.time,
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._dump = False

    def run(self) -> None:
        self._install_signals()
        self._media.start()
        self._log("NOTICE", "relay ready")
        try:
            next_expiry = time.time() + self._tick
            while not self._stop:
                readable, _, _ = select.select([self._ng, self._wake_r], [], [], self._tick)
                if self._wake_r in readable:
                    self._wake_r.recv(4096)
                if self._ng in readable:
                    self._serve_one()
                if self._dump:
                    self._dump = False
                    self._dump_statistics()
                if self._timeout and time.time() >= next_expiry:
                    next_expiry = time.time() + self._tick
                    self._expire()
        finally:
            self._shut_down()

    def statistics(self, _: dict[str, Any] | None = None) -> dict[str, Any]:
        traffic = self._traffic()
        now = time.time()
        rates = (
            self._rates[0].observe(now, traffic.packets_relayed),
            self._rates[1].observe(now, traffic.bytes_relayed),
            self._rates[2].observe(now, traffic.packets_dropped),
        )
        return statistics_reply(traffic, rates, now - self._started, self._pool.stats(),
                                self._pool.sites())

    def _traffic(self) -> Traffic:
        calls = self._calls.snapshot()
        counters = self._media.counters()
        return Traffic(
            sessions=len(calls),
            streams=sum(1 for call in calls for s in call.streams() if s.has_state()),
            packets_relayed=counters.relayed,
            bytes_relayed=counters.relayed_bytes,
            packets_dropped=counters.dropped,
            deleted_sessions=self._calls.deleted_total,
            timeout_sessions=self._calls.timeout_total,
            kernel_streams=sum(1 for call in calls for s in call.streams() if s.target),
        )

    def _expire(self) -> None:
        for call_id in self._calls.expire(time.time(), self._timeout):
            self._log("NOTICE", f"[{call_id}] Closing call due to timeout")

    def _serve_one(self) -> None:
        try:
            data, source = self._ng.recvfrom(65535)
        except OSError:
            return
        reply = self._control.handle(data)
        if reply is not None:
            try:
                self._ng.sendto(reply, source)
            except OSError as exc:
                self._log("WARNING", f"NG reply to {source} failed: {exc}")

    def _dump_statistics(self) -> None:
        for line in dump_lines(self._traffic(), self._pool.stats(), self._pool.sites()):
            self._log("INFO", line)

    def _install_signals(self) -> None:
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_dump)

    def _on_stop(self, signum: int, _frame: object) -> None:
        self._stop = True

    def _on_dump(self, signum: int, _frame: object) -> None:
        self._dump = True

    def _shut_down(self) -> None:
        self._log("NOTICE", "shutting down")
        self._calls.delete_all()
        self._media.stop()
        self._kmod.close()
        self._ng.close()
        self._log("NOTICE", "relay stopped")


def _check_rtp_address(address: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            raise StartupError(f"cannot bind RTP address {address}: {exc.strerror or exc}") from exc


def _bind_ng(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for NG on {address[0]}:{address[1]}: "
                           f"{exc.strerror or exc}") from exc
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    threading.current_thread().name = "main"
    log = StreamLog(sys.stderr)
    try:
        relay = Relay(settings, log)
    except StartupError as exc:
        log("ERR", str(exc))
        return 1
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
