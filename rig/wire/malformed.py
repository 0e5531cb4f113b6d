"""The rig's own hostile SIP: malformed messages and broken SDP offers, built as bytes.

Pure: values in, datagrams out; no sockets. Each kind is what a SIP proxy, a callee or a
media relay meets on a public address: messages cut short, a Content-Length that lies, a
header filling a whole datagram, a method nobody knows, offers without a usable address
(no c= line, a hostname, port 0 only, 2,000 media sections), bytes that are not UTF-8, and
the well-formed INVITE with SDP a toll-fraud scanner sends. Every message is a fresh
request with its own Call-ID, so the SUT's answer (and any media session it leaves) is
traced back to its kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KINDS: tuple[str, ...] = (
    "truncated",
    "bad_content_length",
    "huge_header",
    "unknown_method",
    "sdp_no_connection",
    "sdp_hostname",
    "sdp_port_zero",
    "sdp_many_media",
    "invalid_utf8",
    "scanner_invite",
)
# the largest UDP payload over IPv4 (65,535 less the IP and UDP headers): "64 KiB headers"
# must still fit one datagram to reach the SUT at all
MAX_DATAGRAM = 65_507
MANY_MEDIA = 2_000
LYING_EXTRA_BYTES = 400  # bad_content_length: the header claims this many bytes too many
UNKNOWN_METHOD = "FROBNICATE"
# a hostname that resolves from /etc/hosts, so a relay that looks it up sends no DNS query
HOSTNAME = "localhost"
SCANNER_USER_AGENT = "friendly-scanner"  # sipvicious's, which scanners keep
FRAUD_NUMBER = "00972592000000"  # scanners dial out internationally to test for toll fraud
DISCARD_PORT = 9  # where the offers ask for media: nothing is ever sent to a hostile call
NOT_UTF8 = b"\xff\xfe\xc3\x28"


@dataclass(frozen=True)
class Origin:
    """Where a hostile message comes from (the rig's hostile socket) and where it goes."""

    local: tuple[str, int]
    target: tuple[str, int]
    user_agent: str = "rig-hostile"


@dataclass(frozen=True)
class Hostile:
    """One message: its kind, its Call-ID and the datagram."""

    kind: str
    call_id: str
    data: bytes
    method: str


def call_id_for(kind: str, seq: int, local: tuple[str, int]) -> str:
    return f"hostile-{seq}-{kind.replace('_', '-')}@{local[0]}"


def extension(seq: int) -> str:
    """The user a message dials: a three-digit extension, as an enumeration would."""
    return str(100 + seq % 900)


def offer_sdp(address: str, *, connection: str | None = None, port: int = DISCARD_PORT,
              media: int = 1, session: str = "rig-hostile") -> str:
    """An SDP offer; `connection=None` leaves out every c= line, `media` repeats m=."""
    lines = ["v=0", f"o=- 1 1 IN IP4 {address}", f"s={session}"]
    if connection is not None:
        lines.append(f"c=IN IP4 {connection}")
    lines.append("t=0 0")
    for _ in range(media):
        lines.append(f"m=audio {port} RTP/AVP 0")
    return "\r\n".join(lines) + "\r\n"


def request(method: str, origin: Origin, call_id: str, seq: int, *, user: str | None = None,
            body: bytes = b"", content_length: int | None = None,
            extra: Sequence[str] = (), display: bytes = b"") -> bytes:
    """A request line and headers as a UAC would send them, with the body's length unless
    `content_length` says otherwise."""
    (lh, lp), (th, tp) = origin.local, origin.target
    user = user if user is not None else extension(seq)
    length = len(body) if content_length is None else content_length
    head = [
        f"{method} sip:{user}@{th}:{tp} SIP/2.0",
        f"Via: SIP/2.0/UDP {lh}:{lp};branch=z9hG4bK-h{seq}x{len(call_id)};rport",
        "Max-Forwards: 70",
        f"To: <sip:{user}@{th}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:hostile@{lh}:{lp}>",
        f"User-Agent: {origin.user_agent}",
        *extra,
    ]
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {length}")
    from_line = b"From: " + (b'"' + display + b'" ' if display else b"")
    from_line += f"<sip:hostile@{lh}>;tag=h{seq}".encode()
    lines = [head[0].encode(), head[1].encode(), from_line, *(h.encode() for h in head[2:])]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def invite(origin: Origin, call_id: str, seq: int, sdp: str | bytes, *, user: str | None = None,
           content_length: int | None = None, display: bytes = b"") -> bytes:
    body = sdp.encode() if isinstance(sdp, str) else sdp
    return request("INVITE", origin, call_id, seq, user=user, body=body,
                   content_length=content_length, display=display)


def truncated(origin: Origin, call_id: str, seq: int) -> bytes:
    """An INVITE cut off halfway through its headers: no blank line, no body."""
    whole = invite(origin, call_id, seq, offer_sdp(origin.local[0], connection=origin.local[0]))
    head_end = whole.index(b"\r\n\r\n")
    return whole[: head_end // 2]


def bad_content_length(origin: Origin, call_id: str, seq: int) -> bytes:
    sdp = offer_sdp(origin.local[0], connection=origin.local[0]).encode()
    return invite(origin, call_id, seq, sdp, content_length=len(sdp) + LYING_EXTRA_BYTES)


def huge_header(origin: Origin, call_id: str, seq: int) -> bytes:
    """An OPTIONS whose one extra header fills the datagram to the largest UDP payload."""
    bare = request("OPTIONS", origin, call_id, seq, extra=["X-Padding: "])
    pad = MAX_DATAGRAM - len(bare)
    return request("OPTIONS", origin, call_id, seq, extra=["X-Padding: " + "a" * pad])


def unknown_method(origin: Origin, call_id: str, seq: int) -> bytes:
    return request(UNKNOWN_METHOD, origin, call_id, seq)


def sdp_no_connection(origin: Origin, call_id: str, seq: int) -> bytes:
    return invite(origin, call_id, seq, offer_sdp(origin.local[0], connection=None))


def sdp_hostname(origin: Origin, call_id: str, seq: int) -> bytes:
    return invite(origin, call_id, seq, offer_sdp(origin.local[0], connection=HOSTNAME))


def sdp_port_zero(origin: Origin, call_id: str, seq: int) -> bytes:
    return invite(origin, call_id, seq,
                  offer_sdp(origin.local[0], connection=origin.local[0], port=0))


def sdp_many_media(origin: Origin, call_id: str, seq: int) -> bytes:
    return invite(origin, call_id, seq,
                  offer_sdp(origin.local[0], connection=origin.local[0], media=MANY_MEDIA))


def invalid_utf8(origin: Origin, call_id: str, seq: int) -> bytes:
    """An INVITE whose From display name and SDP session name are not UTF-8."""
    sdp = offer_sdp(origin.local[0], connection=origin.local[0], session="@@").encode()
    return invite(origin, call_id, seq, sdp.replace(b"@@", NOT_UTF8), display=NOT_UTF8)


def scanner_invite(origin: Origin, call_id: str, seq: int) -> bytes:
    """A well-formed INVITE with a usable offer from a scanner's User-Agent, dialling an
    international number: what a proxy must turn away before it reaches the media relay."""
    scanner = Origin(origin.local, origin.target, SCANNER_USER_AGENT)
    return invite(scanner, call_id, seq,
                  offer_sdp(origin.local[0], connection=origin.local[0]), user=FRAUD_NUMBER)


_BUILDERS = {
    "truncated": (truncated, "INVITE"),
    "bad_content_length": (bad_content_length, "INVITE"),
    "huge_header": (huge_header, "OPTIONS"),
    "unknown_method": (unknown_method, UNKNOWN_METHOD),
    "sdp_no_connection": (sdp_no_connection, "INVITE"),
    "sdp_hostname": (sdp_hostname, "INVITE"),
    "sdp_port_zero": (sdp_port_zero, "INVITE"),
    "sdp_many_media": (sdp_many_media, "INVITE"),
    "invalid_utf8": (invalid_utf8, "INVITE"),
    "scanner_invite": (scanner_invite, "INVITE"),
}
assert tuple(_BUILDERS) == KINDS


def build(kind: str, origin: Origin, seq: int) -> Hostile:
    """Message number `seq` of `kind`; an unknown kind lists the known ones."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown hostile kind {kind!r} (allowed: {', '.join(KINDS)})")
    builder, method = _BUILDERS[kind]
    call_id = call_id_for(kind, seq, origin.local)
    return Hostile(kind, call_id, builder(origin, call_id, seq), method)


def kind_at(kinds: Sequence[str], seq: int) -> str:
    """The kinds in turn, so every kind is sent whatever the count."""
    return kinds[seq % len(kinds)]


def messages_due(elapsed: float, rate: float, sent: int, cap: int | None = None) -> int:
    """How many more messages are due `elapsed` seconds in at `rate` per second (the first
    at once), never past `cap`."""
    if elapsed < 0 or rate <= 0:
        return 0
    due = int(elapsed * rate) + 1
    if cap is not None:
        due = min(due, cap)
    return max(0, due - sent)


def status_of(data: bytes) -> tuple[int, str] | None:
    """(status, Call-ID) of a SIP response datagram, else None; tolerant of anything."""
    if not data.startswith(b"SIP/2.0 ") or len(data) < 12 or not data[8:11].isdigit():
        return None
    call_id = ""
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i"):
            call_id = value.strip().decode("utf-8", "replace")
            break
    return int(data[8:11]), call_id


def ack_for(sent: bytes, response: bytes) -> bytes | None:
    """The ACK of a negative final answer to an INVITE (RFC 3261 17.1.1.3): the INVITE's
    request line, Via, From, Call-ID and CSeq number, the response's To (with its tag).
    None when either is not what that needs."""
    head, _, _ = sent.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"INVITE "):
        return None
    to = next((line for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
               if line.lower().startswith((b"to:", b"t:"))), None)
    if to is None:
        return None
    keep = [line for line in lines[1:]
            if line.lower().startswith((b"via:", b"from:", b"call-id:", b"max-forwards:"))]
    return b"\r\n".join([b"ACK" + lines[0][6:], *keep, b"To:" + to.partition(b":")[2],
                         b"CSeq: 1 ACK", b"Content-Length: 0"]) + b"\r\n\r\n"
