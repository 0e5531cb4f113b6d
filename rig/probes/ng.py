"""One blocking NG request (one try), for probes and readiness checks.

The codec is rig.wire.ng; the load driver's retransmitting asyncio client is rig.load.ng.
"""

from __future__ import annotations

import os
import socket

from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.ng import MAX_DATAGRAM, NgTimeout, check_reply, cookie_prefix, decode_ng, encode_ng


def ng_request(host: str, port: int, message: dict, timeout: float = 1.0,
               destinations: Destinations = LOOPBACK_ONLY) -> dict:
    """Send one message and return the reply; raises NgError on error or timeout."""
    destinations.check(host, port, "the NG address of a probe")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        cookie = cookie_prefix(os.getpid(), os.urandom(3))
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
