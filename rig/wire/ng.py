"""The NG control protocol of rtpengine: `<cookie> <bencoded dict>` over UDP, as values.

A request carries a cookie; the reply echoes it, and a relay that already executed a
command answers a retransmission (same cookie) from its cache. The clients that send
and wait live in rig.load.ng (asyncio) and rig.probes.ng (blocking, one shot).
"""

from __future__ import annotations

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


def cookie_prefix(pid: int, nonce: bytes) -> str:
    """A prefix no other client on the host shares: the process id and a few random bytes."""
    return f"{pid:x}{nonce.hex()}"


def command_message(command: str, **keys: object) -> dict:
    """An NG command; keys use NG spelling with '_' for '-' (call_id -> call-id)."""
    return {"command": command, **{k.replace("_", "-"): v for k, v in keys.items()}}
