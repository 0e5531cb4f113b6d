"""The asyncio NG client the load driver uses to drive a relay (offer, answer, delete).

One cookie per request, the same cookie on every retransmission, so a relay that already
executed the command answers from its cache. The codec is rig.wire.ng; the blocking
one-shot request of probes and readiness checks is rig.probes.ng.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.ng import (
    NgProtocolError,
    NgTimeout,
    check_reply,
    command_message,
    cookie_prefix,
    decode_ng,
    encode_ng,
)


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
        self._prefix = cookie_prefix(os.getpid(), os.urandom(3))
        self._counter = itertools.count(1)
        self.retransmissions = 0

    @classmethod
    async def open(
        cls, host: str, port: int, timeout: float = 1.0, retries: int = 3,
        destinations: Destinations = LOOPBACK_ONLY,
    ) -> NgClient:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"NG timeout must be > 0 and retries >= 0: {timeout}, {retries}")
        destinations.check(host, port, "the NG address")
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _NgProtocol, remote_addr=(host, port)
        )
        return cls(transport, protocol, timeout, retries)

    def next_cookie(self) -> str:
        return f"{self._prefix}_{next(self._counter)}"

    async def command(self, command: str, **keys: object) -> dict:
        """Send one command; keys use NG spelling with '_' for '-' (call_id -> call-id)."""
        reply = await self.request(command_message(command, **keys))
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
                    # not wait_for: on 3.11 it returns a reply that came with a
                    # cancellation and drops the cancellation (the run then cannot stop)
                    async with asyncio.timeout(self.timeout):
                        return await asyncio.shield(future)
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
