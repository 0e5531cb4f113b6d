"""SDP as the relay sees it: where each media stream wants RTP, and the body rewritten to the relay.

Pure: strings in, strings out. The rewrite follows what rtpengine returns by default: every
`c=` names the relay, each `m=` carries the relay's port, codecs are kept (with an `a=rtpmap`
added for static payload types that had none), then the direction (default `sendrecv`),
`a=rtcp:<port+1>` and the original `a=ptime`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

STATIC_PAYLOAD_TYPES = {
    "0": "PCMU/8000",
    "3": "GSM/8000",
    "4": "G723/8000",
    "8": "PCMA/8000",
    "9": "G722/8000",
    "13": "CN/8000",
    "18": "G729/8000",
}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_CODEC_ATTRIBUTES = ("rtpmap", "fmtp", "rtcp-fb")


class SdpError(ValueError):
    """An SDP body the relay cannot work with."""


@dataclass(frozen=True)
class MediaEndpoint:
    """One `m=` section: where its sender wants to receive RTP."""

    kind: str
    address: str
    port: int
    protocol: str
    formats: tuple[str, ...]


@dataclass(frozen=True)
class _Section:
    lines: tuple[str, ...]


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line.rstrip("\r") for line in sdp.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("Failed to parse SDP: it does not start with v=")
    session: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    if not media:
        raise SdpError("Failed to parse SDP: no m= line")
    return session, media


def _connection_address(lines: Sequence[str]) -> str | None:
    for line in lines:
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) != 3:
                raise SdpError(f"Failed to parse SDP: bad connection line {line[:80]!r}")
            return _ip_literal(parts[2].split("/")[0])
    return None


def _ip_literal(address: str) -> str:
    """The c= address if it is an IP literal; the relay never resolves a host name."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise SdpError(
            f"Failed to parse SDP: c= address {address[:80]!r} is not an IP address"
        ) from None


def _media_line(line: str) -> tuple[str, int, str, tuple[str, ...]]:
    parts = line[2:].split()
    if len(parts) < 3:
        raise SdpError(f"Failed to parse SDP: bad media line {line!r}")
    port_text = parts[1].split("/")[0]
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise SdpError(f"Failed to parse SDP: bad port in {line!r}")
    return parts[0], int(port_text), parts[2], tuple(parts[3:])


def parse_media(sdp: str) -> tuple[MediaEndpoint, ...]:
    """Every media stream of the body, in order, with its address (media- or session-level)."""
    session, sections = _split(sdp)
    default_address = _connection_address(session)
    endpoints = []
    for index, section in enumerate(sections, start=1):
        kind, port, protocol, formats = _media_line(section[0])
        address = _connection_address(section[1:]) or default_address
        if address is None:
            raise SdpError(f"Failed to parse SDP: media {index} has no c= address")
        endpoints.append(MediaEndpoint(kind, address, port, protocol, formats))
    return tuple(endpoints)


def _connection(address: str) -> str:
    family = "IP6" if ":" in address else "IP4"
    return f"c=IN {family} {address}"


def _attribute_name(line: str) -> str:
    return line[2:].split(":", 1)[0].split(" ", 1)[0]


def _payload_type(line: str) -> str:
    return line[2:].split(":", 1)[1].split(" ", 1)[0] if ":" in line else ""


def _codec_lines(formats: Sequence[str], attributes: Sequence[str]) -> list[str]:
    out = []
    for pt in formats:
        mine = [a for a in attributes if _payload_type(a) == pt]
        if not any(_attribute_name(a) == "rtpmap" for a in mine) and pt in STATIC_PAYLOAD_TYPES:
            out.append(f"a=rtpmap:{pt} {STATIC_PAYLOAD_TYPES[pt]}")
        for name in _CODEC_ATTRIBUTES:
            out.extend(a for a in mine if _attribute_name(a) == name)
    return out


def _rewrite_section(section: Sequence[str], address: str, port: int) -> list[str]:
    kind, old_port, protocol, formats = _media_line(section[0])
    new_port = 0 if old_port == 0 else port
    out = [" ".join([f"m={kind}", str(new_port), protocol, *formats])]
    attributes = [line for line in section[1:] if line.startswith("a=")]
    direction = next((_attribute_name(a) for a in attributes if _attribute_name(a) in DIRECTIONS),
                     "sendrecv")
    ptime = [a for a in attributes if _attribute_name(a) == "ptime"]
    rest = [a for a in attributes
            if _attribute_name(a) not in (*DIRECTIONS, *_CODEC_ATTRIBUTES, "rtcp", "ptime")]
    others = [line for line in section[1:] if not line.startswith("a=")]
    for line in others:
        out.append(_connection(address) if line.startswith("c=") else line)
    out.extend(_codec_lines(formats, attributes))
    out.extend(rest)
    out.append(f"a={direction}")
    if new_port:
        out.append(f"a=rtcp:{new_port + 1}")
    out.extend(ptime)
    return out


def rewrite(sdp: str, address: str, ports: Sequence[int]) -> str:
    """The body with the relay's address and one relay port per media section, in order."""
    session, sections = _split(sdp)
    if len(ports) != len(sections):
        raise SdpError(f"Error rewriting SDP: {len(sections)} media, {len(ports)} ports")
    out = [_connection(address) if line.startswith("c=") else line for line in session]
    for section, port in zip(sections, ports, strict=True):
        out.extend(_rewrite_section(section, address, port))
    return "\r\n".join(out) + "\r\n"
