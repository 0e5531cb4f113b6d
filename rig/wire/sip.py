"""SIP messages as plain values: build and parse requests and responses (RFC 3261 basics).

Pure: no sockets, no clock. Parsing is a single pass over the header lines, without
regular expressions, because the UAC and UAS run it for every datagram.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from rig.wire import wire_errors

BRANCH_MAGIC = "z9hG4bK"
RIG_HEADER = "X-Rig-Outcome"
OUTCOMES = ("answered", "busy", "cancel", "no_answer", "vanish")

# Compact forms (RFC 3261 section 7.3.3 and the registry) -> lower-case full names.
COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
}
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    408: "Request Timeout",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
}


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A parsed request (status 0) or response; the fields the agents match on are lifted out.

    `headers` keeps every header in order as (lower-case full name, value). `method` is the
    request method, or the CSeq method of a response.
    """

    method: str
    uri: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: str
    call_id: str
    cseq: int
    top_via: str
    from_value: str
    to_value: str

    @property
    def is_request(self) -> bool:
        return self.status == 0

    # Computed on use: most datagrams need only one of these, and only once.
    @property
    def branch(self) -> str:
        return header_param(self.top_via, "branch")

    @property
    def from_tag(self) -> str:
        return header_param(self.from_value, "tag")

    @property
    def to_tag(self) -> str:
        return header_param(self.to_value, "tag")

    def header(self, name: str) -> str | None:
        """The first value of a header (any case, compact form accepted), or None."""
        key = _canonical(name)
        for hname, value in self.headers:
            if hname == key:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (Via, Record-Route, Route)."""
        key = _canonical(name)
        values: list[str] = []
        for hname, value in self.headers:
            if hname == key:
                values.extend(split_header_list(value))
        return values


@dataclass(frozen=True, slots=True)
class Leg:
    """One side's view of a dialog: what it needs to build its requests in it."""

    call_id: str
    local_uri: str
    local_tag: str
    remote_uri: str
    remote_tag: str
    target: str  # Request-URI: the peer's Contact once known
    contact: str  # our own Contact URI
    sent_by: str  # "host:port" for our Via
    routes: tuple[str, ...] = ()  # route set, in the order to put in Route headers


@dataclass(frozen=True, slots=True)
class Directive:
    """What the UAC asks the UAS to do with a call (carried in X-Rig-Outcome)."""

    outcome: str = "answered"
    hangup: str = "uac"  # who sends BYE: "uac" or "uas"
    hold: float = 0.0  # seconds the UAS waits before its BYE when hangup == "uas"


_KNOWN_NAMES: dict[str, str] = {}  # raw header name as seen on the wire -> canonical key


def _canonical(name: str) -> str:
    key = _KNOWN_NAMES.get(name)
    if key is None:
        key = name.strip().lower()
        key = COMPACT.get(key, key)
        if len(_KNOWN_NAMES) < 4096:  # names repeat; a bound keeps junk from piling up
            _KNOWN_NAMES[name] = key
    return key


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, keeping commas inside <...> and quotes."""
    if "," not in value:
        return [value.strip()]
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def header_param(value: str, name: str) -> str:
    """A header parameter (`tag`, `branch`, `lr`...) of a header value; "" when absent.

    For name-addr values the parameters after `>` are the header's; those inside the
    brackets belong to the URI and are ignored.
    """
    close = value.find(">")
    params = value[close + 1 :] if close >= 0 else value
    start = params.find(f";{name}=")
    if start >= 0 and params.find(f";{name}=", start + 1) < 0:  # the common, exact case
        start += len(name) + 2
        end = params.find(";", start)
        return params[start:end if end >= 0 else len(params)].strip()
    if name not in params.lower():
        return ""
    for piece in params.split(";")[1:]:
        key, _, val = piece.partition("=")
        if key.strip().lower() == name:
            return val.strip()
    return ""


def uri_of(value: str) -> str:
    """The URI of a name-addr or addr-spec header value (`"Bob" <sip:b@h>;tag=1` -> sip:b@h)."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        if end < 0:
            raise ValueError(f"unclosed '<' in header value: {value!r}")
        return value[start + 1 : end]
    return value.split(";", 1)[0].strip()


def host_port(uri: str, default_port: int = 5060) -> tuple[str, int]:
    """The host and port of a SIP URI (`sip:user@127.0.0.1:5080;lr` -> ("127.0.0.1", 5080))."""
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    hostport = rest.rsplit("@", 1)[-1]
    host, sep, port = hostport.partition(":")
    if not host:
        raise ValueError(f"no host in SIP URI: {uri!r}")
    if not sep:
        return host, default_port
    if not port.isdigit():
        raise ValueError(f"bad port in SIP URI: {uri!r}")
    return host, int(port)


def _header_name(name: str, sep: str) -> str:
    key = _canonical(name) if sep else ""
    if not key:
        raise ValueError(f"bad SIP header line: {name!r}")
    return key


def _split_head_body(data: bytes) -> tuple[str, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4 :]
    else:
        end = data.find(b"\n\n")
        if end < 0:
            raise ValueError("SIP message has no blank line after its headers")
        head, body = data[:end], data[end + 2 :]
    try:
        return head.decode("utf-8"), body
    except UnicodeDecodeError as exc:
        raise ValueError(f"SIP message headers are not UTF-8: {exc}") from None


def _header_lines(head: str) -> list[str]:
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    if "\n " not in head and "\n\t" not in head:
        return lines
    folded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and folded:
            folded[-1] += " " + line.strip()
        else:
            folded.append(line)
    return folded


def _start_line(line: str) -> tuple[str, str, int, str]:
    if line.startswith("SIP/2.0 "):
        _, code, reason = (line.split(" ", 2) + [""])[:3]
        if len(code) != 3 or not code.isdigit() or code[0] == "0":
            raise ValueError(f"bad SIP status line: {line!r}")
        return "", "", int(code), reason
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        raise ValueError(f"bad SIP request line: {line!r}")
    return parts[0].upper(), parts[1], 0, ""


@wire_errors
def parse_message(data: bytes) -> SipMessage:
    """Parse one datagram. Raises WireFormatError (a ValueError) naming what is wrong."""
    head, raw_body = _split_head_body(data)
    lines = _header_lines(head)
    method, uri, status, reason = _start_line(lines[0])
    pairs = [line.partition(":") for line in lines[1:]]
    try:  # names seen before, every line with its colon: the common case, no Python loop
        known = _KNOWN_NAMES
        headers = tuple([(known[name], value.strip()) for name, sep, value in pairs if sep])
        if len(headers) != len(pairs):
            raise KeyError
    except KeyError:
        headers = tuple([(_header_name(name, sep), value.strip()) for name, sep, value in pairs])
    found = dict(reversed(headers))  # the first of repeated headers wins
    for required in ("call-id", "cseq", "from", "to", "via"):
        if required not in found:
            raise ValueError(f"SIP message lacks the {required} header")
    cseq_num, _, cseq_method = found["cseq"].partition(" ")
    if not cseq_num.isdigit() or not cseq_method.strip():
        raise ValueError(f"bad CSeq header: {found['cseq']!r}")
    if status:
        method = cseq_method.strip().upper()
    body = _body(raw_body, found.get("content-length"))
    via = found["via"]
    top_via = split_header_list(via)[0] if "," in via else via
    return SipMessage(
        method=method,
        uri=uri,
        status=status,
        reason=reason,
        headers=headers,
        body=body,
        call_id=found["call-id"],
        cseq=int(cseq_num),
        top_via=top_via,
        from_value=found["from"],
        to_value=found["to"],
    )


def _body(raw: bytes, content_length: str | None) -> str:
    if content_length is not None:
        if not content_length.isdigit():
            raise ValueError(f"bad Content-Length header: {content_length!r}")
        length = int(content_length)
        if len(raw) < length:
            raise ValueError(f"SIP body is {len(raw)} bytes, Content-Length says {length}")
        raw = raw[:length]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"SIP body is not UTF-8: {exc}") from None


def transaction_key(message: SipMessage) -> tuple[str, str]:
    """Branch + method: a response matches its client transaction on this (RFC 3261 17.1.3).

    ACK to a non-2xx response shares its INVITE's transaction, so it maps to INVITE.
    """
    method = "INVITE" if message.method == "ACK" and message.is_request else message.method
    return message.branch, method


def _content_lines(body: str, content_type: str) -> list[str]:
    if not body:
        return ["Content-Length: 0"]
    return [f"Content-Type: {content_type}", f"Content-Length: {len(body.encode())}"]


def _finish(lines: list[str], body: str) -> bytes:
    lines.append("")
    lines.append(body)
    return "\r\n".join(lines).encode()


def build_request(
    leg: Leg,
    method: str,
    cseq: int,
    branch: str,
    body: str = "",
    extra: Sequence[tuple[str, str]] = (),
    content_type: str = "application/sdp",
    max_forwards: int = 70,
) -> bytes:
    """A request inside (or opening) the dialog described by `leg`."""
    to = f"<{leg.remote_uri}>" + (f";tag={leg.remote_tag}" if leg.remote_tag else "")
    lines = [
        f"{method} {leg.target} SIP/2.0",
        f"Via: SIP/2.0/UDP {leg.sent_by};branch={branch};rport",
        f"Max-Forwards: {max_forwards}",
        *[f"Route: <{route}>" for route in leg.routes],
        f"From: <{leg.local_uri}>;tag={leg.local_tag}",
        f"To: {to}",
        f"Call-ID: {leg.call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if method in ("INVITE", "SUBSCRIBE", "REFER") or (method == "ACK" and leg.remote_tag):
        lines.append(f"Contact: <{leg.contact}>")
    lines.extend(f"{name}: {value}" for name, value in extra)
    lines.extend(_content_lines(body, content_type))
    return _finish(lines, body)


_RESPONSE_COPIED = ("via", "record-route", "from", "call-id", "cseq")
_DISPLAY = {"via": "Via", "record-route": "Record-Route", "from": "From", "call-id": "Call-ID",
            "cseq": "CSeq"}


def build_response(
    request: SipMessage,
    status: int,
    to_tag: str = "",
    contact: str = "",
    body: str = "",
    reason: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    """A response to `request`: Via, Record-Route, From, Call-ID and CSeq copied in order.

    `to_tag` is added to To unless the request already carries one. Record-Route is only
    echoed on 18x/2xx (the ones that build a dialog); 100 Trying never gets a tag.
    """
    reason = reason or REASONS.get(status, "Unknown")
    lines = [f"SIP/2.0 {status} {reason}"]
    dialog_building = 101 <= status < 300
    to_value = ""
    for name, value in request.headers:
        if name == "to":
            to_value = value
        elif name in _RESPONSE_COPIED and (name != "record-route" or dialog_building):
            lines.append(f"{_DISPLAY[name]}: {value}")
    if to_tag and status != 100 and not request.to_tag:
        to_value = f"{to_value};tag={to_tag}"
    lines.append(f"To: {to_value}")
    if contact and dialog_building:
        lines.append(f"Contact: <{contact}>")
    lines.extend(_content_lines(body, content_type))
    return _finish(lines, body)


def format_directive(directive: Directive) -> str:
    """The X-Rig-Outcome value: `answered;hangup=uas;hold=2.5`."""
    text = directive.outcome
    if directive.hangup != "uac":
        text += f";hangup={directive.hangup};hold={directive.hold:g}"
    return text


def parse_directive(value: str | None) -> Directive:
    """X-Rig-Outcome -> Directive; a missing header (SIPp, a softphone) means answered."""
    if value is None:
        return Directive()
    outcome, *params = [p.strip() for p in value.split(";")]
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown {RIG_HEADER} {outcome!r} (allowed: {', '.join(OUTCOMES)})")
    fields = dict(p.partition("=")[::2] for p in params)
    hangup = fields.get("hangup", "uac")
    if hangup not in ("uac", "uas"):
        raise ValueError(f"bad hangup={hangup!r} in {RIG_HEADER} (allowed: uac, uas)")
    try:
        hold = float(fields.get("hold", "0"))
    except ValueError:
        raise ValueError(f"bad hold= in {RIG_HEADER}: {value!r}") from None
    return Directive(outcome=outcome, hangup=hangup, hold=hold)


class IdSource:
    """Unique branches, tags and Call-IDs: a per-source prefix plus a counter (cheap)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._counter = itertools.count(1)

    def branch(self) -> str:
        return f"{BRANCH_MAGIC}{self.prefix}{next(self._counter):x}"

    def tag(self) -> str:
        return f"{self.prefix}{next(self._counter):x}"

    def call_id(self, host: str) -> str:
        return f"{self.prefix}{next(self._counter):x}@{host}"
