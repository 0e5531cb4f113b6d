"""The SIP hot path: read only what a datagram is routed on, and build messages from templates.

`peek` finds the first line, the top Via's branch, Call-ID, CSeq and the To tag with a few
byte searches instead of splitting every header (the agents route most datagrams on these
alone); anything it does not recognise in the usual spelling (compact headers, folded
lines, a second header of a kind) goes to `parse_message`, which is the judge of what is
well formed. `Template` is a message rendered once by `build_request` with markers where
the per-call values go, so the bytes are exactly what the builder would give, at the cost
of one join. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rig.wire.sip import REASONS, Leg, SipMessage, build_request, parse_message

_CALL_ID = b"\r\nCall-ID: "
_CSEQ = b"\r\nCSeq: "
_VIA = b"\r\nVia: "
_TO = b"\r\nTo: "
_BRANCH = b";branch="
_TAG = b";tag="
_LENGTH = b"\r\nContent-Length: "


class Peek:
    """What an agent routes a datagram on; `message()` parses all of it when more is needed.

    `method` is the request's method, or the CSeq method of a response (as SipMessage has).
    The top Via's branch and the To tag are read on first use: many datagrams need neither.
    """

    __slots__ = ("data", "status", "method", "call_id", "cseq", "end", "_branch", "_to_tag",
                 "_full")

    def __init__(self, data: bytes, status: int, method: str, call_id: str, cseq: int,
                 end: int, full: SipMessage | None = None) -> None:
        self.data, self.status, self.method = data, status, method
        self.call_id, self.cseq, self.end = call_id, cseq, end
        self._full = full
        self._branch = full.branch if full is not None else None
        self._to_tag = full.to_tag if full is not None else None

    @property
    def is_request(self) -> bool:
        return self.status == 0

    @property
    def branch(self) -> str:
        if self._branch is None:
            via = _line_value(self.data, _VIA, self.end)
            self._branch = _param(via, _BRANCH) if via is not None else ""
        return self._branch

    @property
    def to_tag(self) -> str:
        if self._to_tag is None:
            to = _line_value(self.data, _TO, self.end)
            self._to_tag = _param(to, _TAG) if to is not None else ""
        return self._to_tag

    def message(self) -> SipMessage:
        """The whole parsed message (parsed once, on first use)."""
        if self._full is None:
            self._full = parse_message(self.data)
        return self._full


def peek(data: bytes) -> Peek:
    """The routing fields of one datagram; raises WireFormatError (ValueError) if malformed."""
    try:
        fast = _peek_fast(data)
    except (ValueError, IndexError):
        fast = None
    return fast if fast is not None else _peek_slow(data)


def _peek_slow(data: bytes) -> Peek:
    m = parse_message(data)
    return Peek(data, m.status, m.method, m.call_id, m.cseq, 0, m)


def _line_value(data: bytes, name: bytes, end: int) -> bytes | None:
    """The value of the first header spelled `name` in data[:end] (the first wins, as in
    parse_message); None if absent."""
    start = data.find(name, 0, end)
    if start < 0:
        return None
    start += len(name)
    stop = data.find(b"\r\n", start, end)
    return data[start:stop if stop >= 0 else end]


class Unusual(ValueError):
    """A header is spelled in a way the byte search does not read: parse the message."""


def header_value(data: bytes, name: bytes, end: int) -> bytes | None:
    """The first `name` header (spelled b"\r\nName: ") of a message `peek` accepted; None if
    there is none. Raises Unusual when it may be there in another spelling (other case,
    no space after the colon), so the caller parses the whole message instead."""
    value = _line_value(data, name, end)
    if value is None and name[2:-2].lower() in data[:end].lower():
        raise Unusual(name.decode().strip())
    return value


def head_end(data: bytes) -> int:
    """Where the headers of a message `peek` accepted end (the CRLF of the last one)."""
    return data.find(b"\r\n\r\n") + 2


def _peek_fast(data: bytes) -> Peek | None:
    end = data.find(b"\r\n\r\n")
    if end < 0 or data.find(b"\n ", 0, end) >= 0 or data.find(b"\n\t", 0, end) >= 0:
        return None  # no blank line, or folded headers: the full parser decides
    nl = data.find(b"\r\n")
    head = end + 2  # keep the last header's CRLF inside the searched range
    call_id = _line_value(data, _CALL_ID, head)
    cseq = _line_value(data, _CSEQ, head)
    if (call_id is None or cseq is None or data.find(_VIA, nl, head) < 0
            or data.find(_TO, nl, head) < 0):
        return None
    number, _, cseq_method = cseq.partition(b" ")
    if not number.isdigit() or not cseq_method.isalpha():
        return None
    first = data[:nl]
    if first.startswith(b"SIP/2.0 "):
        code = first[8:11]
        if len(first) > 11 and first[11:12] != b" " or not code.isdigit() or code[:1] == b"0":
            return None
        status, method = int(code), cseq_method.decode().upper()
    else:
        parts = first.split(b" ")
        if len(parts) != 3 or parts[2] != b"SIP/2.0" or not parts[0].isalpha():
            return None
        status, method = 0, parts[0].decode().upper()
    if not _body_fits(data, end):
        return None
    return Peek(data, status, method, call_id.decode().strip(), int(number), head)


def _body_fits(data: bytes, end: int) -> bool:
    length = _line_value(data, _LENGTH, end + 2)
    if length is None:
        return data.find(b"\r\nl:", 0, end + 2) < 0 and len(data) == end + 4
    length = length.strip()  # SIPp pads its [len]
    return length.isdigit() and len(data) - end - 4 >= int(length)


def _param(value: bytes, name: bytes) -> str:
    close = value.find(b">")
    start = value.find(name, close + 1 if close >= 0 else 0)
    if start < 0:
        return ""
    start += len(name)
    stop = value.find(b";", start)
    return value[start:stop if stop >= 0 else len(value)].decode().strip()


def body_of(data: bytes) -> str:
    """The body of a datagram that `peek` accepted (its Content-Length fits)."""
    end = data.find(b"\r\n\r\n")
    length = _line_value(data, _LENGTH, end + 2)
    raw = data[end + 4:] if length is None else data[end + 4:end + 4 + int(length.strip())]
    return raw.decode("utf-8")


# ---- responses from the raw request ------------------------------------------------

# the headers a response copies, and To, one match per line, name and trimmed value
_RESPONSE_HEADERS = re.compile(
    rb"^(via|v|from|f|call-id|i|cseq|record-route|to|t)[ \t]*:[ \t]*(.*?)[ \t]*\r?$",
    re.M | re.I)


def response_to(data: bytes, status: int, to_tag: str = "", contact: str = "",
                body: str = "", reason: str = "") -> bytes:
    """The response `build_response` would give to the request in `data`, from its raw lines.

    Via, From, Call-ID, CSeq (and Record-Route on 101-299) are copied as they came; To gets
    `to_tag` unless it has one; a request `peek` accepted is assumed (no folding).
    """
    return ResponseHead.of(data).render(status, to_tag, contact, body, reason)


class ResponseHead:
    """What every response to one request copies from it, read once (an INVITE gets 2-3)."""

    __slots__ = ("copied", "with_routes", "to", "tagged")

    def __init__(self, copied: bytes, with_routes: bytes, to: bytes) -> None:
        self.copied, self.with_routes, self.to = copied, with_routes, to
        self.tagged = _param(to, _TAG) != ""

    @classmethod
    def of(cls, data: bytes) -> ResponseHead:
        copied: list[bytes] = []
        with_routes: list[bytes] = []
        to = b""
        display = _DISPLAYED
        for name, value in _RESPONSE_HEADERS.findall(data, 0, data.find(b"\r\n\r\n") + 2):
            shown = display[name.lower()]
            if shown is _TO_SHOWN:
                to = value
                continue
            line = shown + value
            with_routes.append(line)
            if shown is not _RR_SHOWN:
                copied.append(line)
        return cls(b"\r\n".join(copied), b"\r\n".join(with_routes), to)

    def render(self, status: int, to_tag: str = "", contact: str = "", body: str = "",
               reason: str = "") -> bytes:
        dialog = 101 <= status < 300
        to = self.to
        if to_tag and status != 100 and not self.tagged:
            to += b";tag=" + to_tag.encode()
        out = [_status_line(status, reason), self.with_routes if dialog else self.copied,
               b"To: " + to]
        if contact and dialog:
            out.append(b"Contact: <" + contact.encode() + b">")
        encoded = body.encode()
        if encoded:
            out.append(b"Content-Type: application/sdp")
        out.append(b"Content-Length: %d" % len(encoded))
        return b"\r\n".join(out) + b"\r\n\r\n" + encoded


_TO_SHOWN = b"To: "
_RR_SHOWN = b"Record-Route: "
_DISPLAYED = {b"via": b"Via: ", b"v": b"Via: ", b"from": b"From: ", b"f": b"From: ",
              b"call-id": b"Call-ID: ", b"i": b"Call-ID: ", b"cseq": b"CSeq: ",
              b"record-route": _RR_SHOWN, b"to": _TO_SHOWN, b"t": _TO_SHOWN}
_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def _status_line(status: int, reason: str) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = f"SIP/2.0 {status} {reason or REASONS.get(status, 'Unknown')}".encode()
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[(status, reason)] = line
    return line


# ---- request templates --------------------------------------------------------------

# Marker characters: control characters no SIP value the rig builds can contain.
_MARK = "\x01"


class Template:
    """A request rendered once with markers; `render` puts the per-call values in.

    Slots: branch, call_id, local_tag, remote_tag (if the leg has one), extra (the extra
    header's value, if any) and body (with its Content-Length).
    """

    __slots__ = ("parts", "slots")

    def __init__(self, parts: Sequence[bytes], slots: Sequence[str]) -> None:
        self.parts, self.slots = tuple(parts), tuple(slots)

    @classmethod
    def request(cls, leg: Leg, method: str, cseq: int, extra_header: str = "",
                with_body: bool = False) -> Template:
        """`build_request(leg, method, cseq, ...)` with the per-call values left open."""
        marked = replace(leg, call_id=_mark("call_id"), local_tag=_mark("local_tag"),
                         remote_tag=_mark("remote_tag") if leg.remote_tag else "")
        extra = ((extra_header, _mark("extra")),) if extra_header else ()
        body = _mark("body") if with_body else ""
        text = build_request(marked, method, cseq, _mark("branch"), body, extra)
        if with_body:
            text = text.replace(b"Content-Length: %d" % len(body.encode()),
                                b"Content-Length: " + _mark("length").encode())
        return cls._split(text.decode())

    @classmethod
    def _split(cls, text: str) -> Template:
        pieces = text.split(_MARK)
        parts = [pieces[0].encode()]
        slots: list[str] = []
        for i in range(1, len(pieces), 2):
            slots.append(pieces[i])
            parts.append(pieces[i + 1].encode())
        return cls(parts, slots)

    def render(self, **values: str) -> bytes:
        """The request with every slot filled; `body` also fills `length`."""
        body = values.get("body", "").encode()
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            if slot == "body":
                out.append(body)
            elif slot == "length":
                out.append(b"%d" % len(body))
            else:
                out.append(values[slot].encode())
            out.append(part)
        return b"".join(out)


def _mark(name: str) -> str:
    return f"{_MARK}{name}{_MARK}"
