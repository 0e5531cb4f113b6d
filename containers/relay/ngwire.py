"""The NG control protocol on the wire: `<cookie> <bencoded dict>`, and typed access to its keys.

Pure: no sockets. The relay's NG loop calls `parse_datagram` and `encode_reply`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bencodepy

# Strings come back as str when they are UTF-8, else as bytes (an SDP is text; a cookie may not be).
_CODEC = bencodepy.Bencode(encoding="utf-8", encoding_fallback="value")


class NgError(Exception):
    """A request the relay refuses; the text becomes the reply's `error-reason`."""


@dataclass(frozen=True)
class Datagram:
    cookie: bytes
    body: bytes


def split_cookie(data: bytes) -> Datagram | None:
    """Cut a datagram at its first space; None when there is no cookie to answer to."""
    cookie, space, body = data.partition(b" ")
    if not space or not cookie:
        return None
    return Datagram(cookie, body)


def decode_request(body: bytes) -> dict[str, Any]:
    """Decode the bencoded dictionary of a request, or raise NgError."""
    try:
        value = _CODEC.decode(body)
    except Exception as exc:  # the decoder raises several types for broken input
        raise NgError("Could not decode bencode dictionary") from exc
    if not isinstance(value, dict):
        raise NgError("Could not decode bencode dictionary")
    if not all(isinstance(key, str) for key in value):
        raise NgError("Could not decode bencode dictionary")
    return value


def encode_reply(cookie: bytes, reply: dict[str, Any]) -> bytes:
    return cookie + b" " + _CODEC.encode(_bencodable(reply))


def error_reply(reason: str) -> dict[str, Any]:
    return {"result": "error", "error-reason": reason}


def _bencodable(value: Any) -> Any:
    """Bencode knows no floats or None: floats become decimal strings, as rtpengine sends them."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    if value is None:
        return ""
    if isinstance(value, dict):
        return OrderedDict(sorted((str(k), _bencodable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return [_bencodable(item) for item in value]
    return value


def required_str(request: dict[str, Any], key: str) -> str:
    """A string key the command cannot do without: missing and wrong type are both errors."""
    if key not in request:
        raise NgError(f"No {key} in message")
    return _as_str(request, key)


def optional_str(request: dict[str, Any], key: str) -> str | None:
    if key not in request:
        return None
    return _as_str(request, key)


def optional_int(request: dict[str, Any], key: str) -> int | None:
    if key not in request:
        return None
    value = request[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise NgError(f'Wrong type for key "{key}": expected an integer')


def _as_str(request: dict[str, Any], key: str) -> str:
    value = request[key]
    if isinstance(value, str):
        return value
    raise NgError(f'Wrong type for key "{key}": expected a string')
