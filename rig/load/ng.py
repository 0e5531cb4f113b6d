"""The NG control protocol of rtpengine: `<cookie> <bencoded dict>` over UDP.

encode_ng/decode_ng are the pure codec. NgClient is the asyncio client the load driver
uses (one cookie per request, the same cookie on every retransmission, so a relay that
already executed the command answers from its cache). ng_request is the blocking
one-shot variant for probes and readiness checks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from typing import Any

from bencodepy import Bencode, BencodeDecodeError

from rig.errors import RigError

_CODEC = Bencode(encoding="utf-8", encoding_fallback="value", dict_ordered=False)
MAX_DATAGRAM = 65535


class NgError(RigError):
    """An NG command failed: the relay answered result=error, or never answered."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class NgTimeout(NgError):
    """No reply after every retransmission."""


class NgProtocolError(NgError):
    """A datagram that is not `<cookie> <bencoded dict>`."""


def encode_ng(cookie: str, message: dict) -> bytes:
    if not cookie or " " in cookie:
        raise ValueError(f"NG cookie must be non-empty and without spaces: {cookie!r}")
    if not isinstance(message, dict):
        raise TypeError(f"NG message must be a dict, got {type(message).__name__}")
    return cookie.encode() + b" " + _CODEC.encode(message)


def decode_ng(datagram: bytes) -> tuple[str, dict]:
    cookie, sep, body = datagram.partition(b" ")
    if not sep or not cookie:
        raise NgProtocolError(f"NG datagram without a cookie: {datagram[:40]!r}")
    try:
        message = _CODEC.decode(body)
    except (BencodeDecodeError, ValueError, TypeError, IndexError) as exc:
        raise NgProtocolError(f"NG datagram with a bad bencoded body: {exc}") from exc
    if not isinstance(message, dict):
        raise NgProtocolError(f"NG body is not a dictionary: {type(message).__name__}")
    return cookie.decode("ascii", "replace"), message


def check_reply(command: str, reply: dict) -> dict:
    """Return the reply, or raise NgError carrying the relay's error-reason."""
    if reply.get("result") == "error":
        reason = str(reply.get("error-reason", "no error-reason given"))
        raise NgError(f"NG {command} failed: {reason}", reason=reason)
    return reply


def _cookie_prefix() -> str:
    return f"{os.getpid():x}{os.urandom(3).hex()}"


class _NgProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[dict]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            cookie, message = decode_ng(data)
        except NgProtocolError:
            return  # not ours to interpret: a stray datagram must not break the client
        future = self.waiting.pop(cookie, None)
        if future is not None and not future.done():
            future.set_result(message)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the relay starts: the retransmission covers it


class NgClient:
    """asyncio NG client with per-request cookies and bounded retransmission."""

    def __init__(
        self, transport: asyncio.DatagramTransport, protocol: _NgProtocol,
        timeout: float, retries: int,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self.timeout = timeout
        self.retries = retries
        self._prefix = _cookie_prefix()
        self._counter = itertools.count(1)
        self.retransmissions = 0

    @classmethod
    async def open(
        cls, host: str, port: int, timeout: float = 1.0, retries: int = 3
    ) -> NgClient:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"NG timeout must be > 0 and retries >= 0: {timeout}, {retries}")
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _NgProtocol, remote_addr=(host, port)
        )
        return cls(transport, protocol, timeout, retries)

    def next_cookie(self) -> str:
        return f"{self._prefix}_{next(self._counter)}"

    async def command(self, command: str, **keys: object) -> dict:
        """Send one command; keys use NG spelling with '_' for '-' (call_id -> call-id)."""
        message = {"command": command, **{k.replace("_", "-"): v for k, v in keys.items()}}
        reply = await self.request(message)
        return check_reply(command, reply)

    async def request(self, message: dict) -> dict:
        """Send a raw message and return the raw reply (no result check)."""
        cookie = self.next_cookie()
        datagram = encode_ng(cookie, message)
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._protocol.waiting[cookie] = future
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.retransmissions += 1
                self._transport.sendto(datagram)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), self.timeout)
                except TimeoutError:
                    continue
        finally:
            self._protocol.waiting.pop(cookie, None)
            future.cancel()
        raise NgTimeout(
            f"NG {message.get('command')}: no reply after {self.retries + 1} tries "
            f"of {self.timeout:g} s"
        )

    def close(self) -> None:
        self._transport.close()

    async def __aenter__(self) -> NgClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def ng_request(host: str, port: int, message: dict, timeout: float = 1.0) -> dict:
    """Blocking single request (one try), for probes; raises NgError on error or timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        cookie = _cookie_prefix()
        sock.send(encode_ng(cookie, message))
        while True:
            try:
                data = sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                raise NgTimeout(
                    f"NG {message.get('command')} to {host}:{port}: no reply in {timeout:g} s"
                ) from None
            except ConnectionRefusedError:
                raise NgTimeout(
                    f"NG {message.get('command')} to {host}:{port}: connection refused"
                ) from None
            reply_cookie, reply = decode_ng(data)
            if reply_cookie == cookie:
                return check_reply(str(message.get("command")), reply)
