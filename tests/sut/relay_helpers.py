"""Helpers for the relay's tests: start it as a process, speak NG to it, play RTP endpoints."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bencodepy

from rig.topology.loopback import block_host

ROOT = Path(__file__).resolve().parents[2]
RELAY_DIR = ROOT / "containers" / "relay"
READY_TIMEOUT = 10.0
_CODEC = bencodepy.Bencode(encoding="utf-8", encoding_fallback="value")


def pick_host() -> str:
    """A loopback address of its own for each relay, in this process's own block: parallel
    tests never meet, and two relays of one test rarely."""
    return block_host(f"2.{random.randint(2, 250)}")


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_rtp_range(size: int = 200) -> tuple[int, int]:
    lo = random.randrange(20000, 60000 - size, 2)
    return lo, lo + size - 1


class NgClient:
    """A minimal NG client: one request, one reply, a fresh cookie unless one is given."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)

    def raw(self, data: bytes, timeout: float = 1.0) -> bytes | None:
        """Send a datagram as it is; the reply datagram, or None if none came in `timeout`."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(data, self.address)
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

    def request(
        self, message: dict[str, Any], cookie: bytes | None = None, timeout: float = 2.0
    ) -> dict[str, Any]:
        cookie = cookie or os.urandom(6).hex().encode()
        reply = self.raw(cookie + b" " + _CODEC.encode(message), timeout)
        assert reply is not None, f"no NG reply to {message.get('command')!r}"
        return decode_reply(cookie, reply)


def decode_reply(cookie: bytes, reply: bytes) -> dict[str, Any]:
    got, _, body = reply.partition(b" ")
    assert got == cookie, f"reply cookie {got!r} is not {cookie!r}"
    decoded = _CODEC.decode(body)
    assert isinstance(decoded, dict)
    return decoded


@dataclass
class RelayProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str
    ng: NgClient
    rtp_ports: tuple[int, int]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def statistics(self) -> dict[str, Any]:
        return self.ng.request({"command": "statistics"})

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def relay_argv(
    relay_py: Path,
    host: str,
    ng_port: int,
    rtp_ports: tuple[int, int],
    kmod_dir: Path,
    workers: int = 2,
    shard_size: int = 65536,
    table: str = "0",
) -> list[str]:
    return [
        sys.executable,
        str(relay_py),
        "--ng",
        f"{host}:{ng_port}",
        "--rtp-addr",
        host,
        "--rtp-ports",
        f"{rtp_ports[0]}-{rtp_ports[1]}",
        "--workers",
        str(workers),
        "--shard-size",
        str(shard_size),
        "--kmod",
        str(kmod_dir),
        "--table",
        table,
    ]


@contextmanager
def running_relay(
    kmod_dir: Path,
    log_path: Path,
    relay_py: Path = RELAY_DIR / "relay.py",
    workers: int = 2,
    shard_size: int = 65536,
    table: str = "0",
    extra_args: tuple[str, ...] = (),
) -> Iterator[RelayProcess]:
    """The relay started on a fresh loopback address, ready (answers ping), stopped on exit."""
    host = pick_host()
    ng_port, rtp_ports = free_udp_port(host), pick_rtp_range()
    argv = relay_argv(relay_py, host, ng_port, rtp_ports, kmod_dir, workers, shard_size, table)
    argv += extra_args
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    relay = RelayProcess(process, log_path, host, NgClient(host, ng_port), rtp_ports)
    try:
        wait_for_pong(relay)
        yield relay
    finally:
        stop(process)


def wait_for_pong(relay: RelayProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if relay.process.poll() is not None:
            raise AssertionError(f"relay exited with {relay.process.returncode}:\n{relay.log()}")
        reply = relay.ng.raw(b"ready d7:command4:pinge", timeout=0.2)
        if reply == b"ready d6:result4:ponge":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"relay not ready after {READY_TIMEOUT} s:\n{relay.log()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RtpEndpoint:
    """A party's RTP socket on loopback."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = int(self.sock.getsockname()[1])

    def send(self, packet: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(packet, to)

    def receive(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]] | None:
        self.sock.settimeout(timeout)
        try:
            data, source = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data, source

    def close(self) -> None:
        self.sock.close()


@contextmanager
def rtp_endpoints(host: str, count: int) -> Iterator[list[RtpEndpoint]]:
    endpoints = [RtpEndpoint(host) for _ in range(count)]
    try:
        yield endpoints
    finally:
        for endpoint in endpoints:
            endpoint.close()


def rtp_packet(seq: int, ssrc: int, payload: bytes, timestamp: int = 0, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, timestamp, ssrc) + payload


def offer_sdp(host: str, port: int, session: int = 1) -> str:
    return (
        f"v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=rig\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\nc=IN IP4 {host}\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def answer_sdp(host: str, port: int, session: int = 2) -> str:
    return (
        f"v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=rig\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\nc=IN IP4 {host}\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def media_target(sdp: str) -> tuple[str, int]:
    """(address of c=, port of the first m=) of an SDP body."""
    address = re.search(r"^c=IN IP4 (\S+)", sdp, re.M)
    port = re.search(r"^m=\S+ (\d+) ", sdp, re.M)
    assert address and port, f"no c=/m= in {sdp!r}"
    return address.group(1), int(port.group(1))


@dataclass(frozen=True)
class CallPorts:
    """Where each party sends its RTP: caller to `for_caller`, callee to `for_callee`."""

    for_caller: tuple[str, int]
    for_callee: tuple[str, int]


def set_up_call(ng: NgClient, call_id: str, caller: RtpEndpoint, callee: RtpEndpoint) -> CallPorts:
    offer = ng.request(
        {
            "command": "offer",
            "call-id": call_id,
            "from-tag": f"{call_id}-a",
            "sdp": offer_sdp(caller.host, caller.port),
        }
    )
    assert offer["result"] == "ok", offer
    answer = ng.request(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": f"{call_id}-a",
            "to-tag": f"{call_id}-b",
            "sdp": answer_sdp(callee.host, callee.port),
        }
    )
    assert answer["result"] == "ok", answer
    return CallPorts(for_caller=media_target(answer["sdp"]), for_callee=media_target(offer["sdp"]))
