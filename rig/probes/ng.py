"""Blocking NG requests (one try each), for probes and readiness checks.

The codec is rig.wire.ng; the load driver's retransmitting asyncio client is rig.load.ng.
"""

from __future__ import annotations

import itertools
import os
import socket

from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.ng import MAX_DATAGRAM, NgTimeout, check_reply, cookie_prefix, decode_ng, encode_ng


class NgRequester:
    """Requests, one try each, each on a socket of its own bound to the source port of the
    one before: a probe that asks every sample stays one UDP flow for the whole run (one
    conntrack entry, one pair of parties in a capture) and holds no socket between samples.
    When that port was taken meanwhile, the next free one becomes the sticky one."""

    def __init__(self, host: str, port: int, timeout: float = 1.0,
                 destinations: Destinations = LOOPBACK_ONLY) -> None:
        destinations.check(host, port, "the NG address of a probe")
        self.host, self.port, self.timeout = host, port, timeout
        self.source_port = 0  # 0 until the first request picked one
        self._prefix = cookie_prefix(os.getpid(), os.urandom(3))
        self._counter = itertools.count(1)

    def request(self, message: dict) -> dict:
        """The reply to `message`; NgError when the relay says error, NgTimeout without one."""
        cookie = f"{self._prefix}_{next(self._counter)}"
        command = message.get("command")
        with self._socket() as sock:
            try:
                sock.send(encode_ng(cookie, message))
                while True:
                    reply_cookie, reply = decode_ng(sock.recv(MAX_DATAGRAM))
                    if reply_cookie == cookie:  # a late reply to an earlier request: skipped
                        return check_reply(str(command), reply)
            except TimeoutError:
                raise NgTimeout(f"NG {command} to {self.host}:{self.port}: "
                                f"no reply in {self.timeout:g} s") from None
            except ConnectionRefusedError:
                raise NgTimeout(f"NG {command} to {self.host}:{self.port}: "
                                "connection refused") from None

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.settimeout(self.timeout)
            if self.source_port:
                try:
                    sock.bind(("", self.source_port))
                except OSError:
                    pass  # taken meanwhile: connect picks a new one below
            sock.connect((self.host, self.port))
            self.source_port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        return sock


def ng_request(host: str, port: int, message: dict, timeout: float = 1.0,
               destinations: Destinations = LOOPBACK_ONLY) -> dict:
    """Send one message and return the reply; raises NgError on error or timeout."""
    return NgRequester(host, port, timeout, destinations).request(message)
