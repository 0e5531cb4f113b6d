"""capture.pcap of a run: its SIP, NG and RTP on loopback, captured with scapy.

The capture runs in a child process (`python -m rig.capture`), so reading packets never
competes with the load generator for the GIL, and Ctrl-C in a terminal reaches it like every
other process of the run: it flushes and exits on SIGINT or SIGTERM. The kernel filters with
a BPF program built from the run's addresses and ports; nothing else on loopback is kept.

When the file would pass `capture.max_mb`, the first half of the budget is kept as it came
and the rest holds the newest packets (a ring), so both the start of the run and its end
are in the file; the middle is counted. Without the privilege to capture (CAP_NET_RAW) the
child says so on its first line and exits, and the run goes on without a capture.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from rig.atomic import write_text_atomic

CAPTURE_FILE = "capture.pcap"
STATUS_FILE = ".capture-status.json"
PCAP_RECORD_OVERHEAD = 16  # bytes of each record header
PCAP_FILE_HEADER = 24
SNAPLEN = 262144
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
PACKET_STATISTICS = 6  # SOL_PACKET option: struct tpacket_stats {tp_packets, tp_drops}
SOL_PACKET = 263
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 32 * 1024 * 1024


def capture_filter(host: str, ports: Sequence[int], ranges: Sequence[tuple[int, int]]) -> str:
    """The BPF expression of one run: UDP to or from its address on its ports and ranges."""
    parts = [f"port {port}" for port in sorted(set(ports))]
    parts += [f"portrange {lo}-{hi}" for lo, hi in sorted(set(ranges))]
    # inbound: loopback shows each packet twice (out, then in); the kernel keeps one copy
    return f"inbound and udp and host {host} and ({' or '.join(parts)})"


class PacketWriter(Protocol):
    def write(self, data: bytes, ts: float) -> None: ...

    def flush(self) -> None: ...


@dataclass
class CaptureCounts:
    seen: int = 0
    written: int = 0
    bytes: int = PCAP_FILE_HEADER
    dropped_middle: int = 0  # packets between the kept first and last parts
    kernel_drops: int = 0  # the socket's buffer overflowed


@dataclass
class HeadTail:
    """Keeps the first half of a byte budget as packets arrive and the newest packets in the
    other half; `finish()` appends those. Pure bookkeeping around a writer."""

    writer: PacketWriter
    max_bytes: int
    counts: CaptureCounts = field(default_factory=CaptureCounts)
    tail: deque[tuple[bytes, float]] = field(default_factory=deque)
    tail_bytes: int = 0
    in_tail: bool = False

    def add(self, data: bytes, ts: float) -> None:
        size = len(data) + PCAP_RECORD_OVERHEAD
        self.counts.seen += 1
        if not self.in_tail and self.counts.bytes + size <= self.max_bytes // 2:
            self.writer.write(data, ts)
            self.counts.written += 1
            self.counts.bytes += size
            return
        self.in_tail = True
        self.tail.append((data, ts))
        self.tail_bytes += size
        while self.tail and self.counts.bytes + self.tail_bytes > self.max_bytes:
            old, _ = self.tail.popleft()
            self.tail_bytes -= len(old) + PCAP_RECORD_OVERHEAD
            self.counts.dropped_middle += 1

    def finish(self) -> CaptureCounts:
        for data, ts in self.tail:
            self.writer.write(data, ts)
            self.counts.written += 1
        self.counts.bytes += self.tail_bytes
        self.tail.clear()
        self.tail_bytes = 0
        self.writer.flush()
        return self.counts


# -- the child process -------------------------------------------------------------------


class ScapyPcapWriter:
    """RawPcapWriter of Ethernet frames (Linux gives loopback frames an Ethernet header)."""

    def __init__(self, path: Path) -> None:
        from scapy.utils import RawPcapWriter

        self.out = RawPcapWriter(str(path), linktype=1, snaplen=SNAPLEN, sync=False)
        self.out.write_header(None)

    def write(self, data: bytes, ts: float) -> None:
        sec = int(ts)
        self.out.write_packet(data, sec=sec, usec=int(round((ts - sec) * 1e6)))

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.close()


def open_socket(iface: str, bpf: str) -> Any:
    """A scapy L2Socket on `iface` with the BPF program attached; it drops the outgoing copy
    of each loopback packet, so every packet is seen once."""
    from scapy.arch.linux import L2Socket

    sock = L2Socket(iface=iface, filter=bpf)
    try:  # past rmem_max where allowed: a busy run outpaces a Python reader in bursts
        sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    kernel_drops(sock)  # reading resets it: drops before the filter was attached are not ours
    return sock


def kernel_drops(sock: Any) -> int:
    try:
        raw = sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return int(struct.unpack("II", raw)[1])
    except (OSError, AttributeError, struct.error):
        return 0


def capture_loop(sock: Any, keeper: HeadTail, stopping: Callable[[], bool],
                 flush_every: int = 200) -> None:
    while not stopping():
        try:
            ready, _, _ = select.select([sock.ins], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            keeper.writer.flush()
            continue
        _, data, ts = sock.recv_raw(SNAPLEN)
        if data is None:
            continue  # the outgoing copy of a loopback packet
        keeper.add(data, float(ts or 0.0))
        if keeper.counts.seen % flush_every == 0:
            keeper.writer.flush()
    keeper.counts.kernel_drops += kernel_drops(sock)


def child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rig.capture")
    parser.add_argument("--iface", default="lo")
    parser.add_argument("--filter", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--max-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logging.getLogger("scapy").setLevel(logging.ERROR)  # no link-type guesses: frames are kept raw
    try:
        sock = open_socket(args.iface, args.filter)
    except PermissionError as exc:
        print(f"unavailable: capturing on {args.iface} needs CAP_NET_RAW ({exc})", flush=True)
        return 0
    except Exception as exc:  # no scapy, no libpcap to compile the filter, no interface
        print(f"unavailable: {type(exc).__name__}: {exc}", flush=True)
        return 0
    writer = ScapyPcapWriter(args.out)
    keeper = HeadTail(writer, args.max_bytes)
    print("ready", flush=True)
    try:
        capture_loop(sock, keeper, lambda: stop["now"])
    finally:
        counts = keeper.finish()
        writer.close()
        sock.close()
        write_text_atomic(args.status, json.dumps(asdict(counts)))
    return 0


# -- the run's side ----------------------------------------------------------------------


@dataclass
class CaptureProcess:
    """Starts the child before the stack, stops it after; `summary()` is the summary.json
    block. A run without the privilege gets `captured: false` and the child's reason."""

    folder: Path
    bpf: str
    max_bytes: int
    iface: str = "lo"
    env: dict[str, str] = field(default_factory=dict)  # the run's labels, for `rig gc`
    on_notice: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    proc: subprocess.Popen[str] | None = None
    reason: str | None = None

    @property
    def path(self) -> Path:
        return self.folder / CAPTURE_FILE

    def start(self) -> subprocess.Popen[str] | None:
        argv = [sys.executable, "-m", "rig.capture", "--iface", self.iface, "--filter", self.bpf,
                "--out", str(self.path), "--status", str(self.folder / STATUS_FILE),
                "--max-bytes", str(self.max_bytes)]
        log = self.folder / "logs" / "capture.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                    env={**os.environ, **self.env})
        line = first_line(proc.stdout, READY_TIMEOUT_S)
        if line == "ready":
            self.proc = proc
            return proc
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.reason = (line or "the capture process said nothing").removeprefix("unavailable: ")
        self.on_notice(f"capture: off for this run: {self.reason}")
        return None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def summary(self) -> dict[str, Any]:
        if self.reason is not None:
            return {"enabled": True, "captured": False, "reason": self.reason}
        status = self.folder / STATUS_FILE
        try:
            counts = json.loads(status.read_text())
        except (OSError, ValueError):
            counts = {}
        status.unlink(missing_ok=True)
        block: dict[str, Any] = {"enabled": True, "captured": self.path.exists(),
                                 "file": CAPTURE_FILE, "filter": self.bpf,
                                 "max_bytes": self.max_bytes}
        block.update(counts)
        block["truncated"] = bool(counts.get("dropped_middle"))
        return block


def first_line(stream: IO[str] | None, timeout: float) -> str | None:
    if stream is None:
        return None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    return stream.readline().strip() or None


class NoCapture:
    """`capture: off`."""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"enabled": False, "captured": False}


def run_filter(endpoints: Any, proxy_port: int | None, sip_ports: Sequence[int] = ()) -> str:
    """The run's own traffic: NG, the rig's UAC and UAS (and `sip_ports`, those of its
    other generator processes), the proxy, both RTP ranges."""
    ports = [endpoints.ng_port, endpoints.uac_port, endpoints.uas_port, *sip_ports]
    if proxy_port is not None:
        ports.append(proxy_port)
    return capture_filter(endpoints.host, ports,
                          [endpoints.relay_rtp_ports, endpoints.rig_rtp_ports])


def start_capture(settings: Any, folder: Path, bpf: str, on_process: Callable[[str, int], None],
                  labels: dict[str, str], iface: str = "lo") -> CaptureProcess | NoCapture:
    """Start the capture of a run (or not); the caller stops it after the stack."""
    if not settings.enabled:
        return NoCapture()
    capture = CaptureProcess(folder, bpf, int(settings.max_mb * 1024 * 1024), iface=iface,
                             env=labels)
    proc = capture.start()
    if proc is not None:
        on_process("capture", proc.pid)
    return capture


def interface_of(host: str) -> str:
    """The interface that holds `host` (loopback addresses: lo). A run on an address beyond
    loopback captures there what reaches the SUT from other hosts."""
    import ipaddress

    from rig.topology.runtime import interface_addresses

    if ipaddress.ip_address(host).is_loopback:
        return "lo"
    return next((name for name, found in interface_addresses().items() if host in found),
                "lo")


def socket_available() -> bool:
    """Whether this process may open a packet socket (tests skip the real capture if not)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
    except (PermissionError, AttributeError, OSError):
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(child_main())
