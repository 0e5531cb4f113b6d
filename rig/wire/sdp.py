"""Minimal SDP for one audio stream: build an offer/answer, read where media goes, compare.

Pure: strings in, strings or values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.wire import wire_errors

CODECS = {0: "PCMU/8000", 8: "PCMA/8000"}


@dataclass(frozen=True)
class AudioShape:
    """What must survive a relay's rewrite of an SDP: not addresses, ports or ids."""

    media: tuple[str, ...]  # "audio RTP/AVP 0" per m= line, ports left out
    rtpmaps: tuple[str, ...]
    ptime: str
    direction: str


def build_sdp(
    address: str, port: int, session_id: int, payload_type: int = 0, ptime_ms: int = 20
) -> str:
    """An offer or answer for one audio stream of one codec (PCMU by default)."""
    if payload_type not in CODECS:
        allowed = ", ".join(str(pt) for pt in CODECS)
        raise ValueError(f"unsupported payload type {payload_type} (allowed: {allowed})")
    if not 0 < port < 65536:
        raise ValueError(f"RTP port out of range: {port}")
    lines = [
        "v=0",
        f"o=rig {session_id} {session_id} IN IP4 {address}",
        "s=rig",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} {CODECS[payload_type]}",
        f"a=ptime:{ptime_ms}",
        "a=sendrecv",
        "",
    ]
    return "\r\n".join(lines)


def _lines(sdp: str) -> list[str]:
    return [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]


@wire_errors
def media_address(sdp: str) -> tuple[str, int]:
    """(connection address, port) of the first audio stream; a media-level c= wins.

    Raises WireFormatError (a ValueError) when there is no audio stream, its port is not
    0..65535, or it has no connection address.
    """
    session_c = ""
    media_c = ""
    port = -1
    for line in _lines(sdp):
        if line.startswith("m="):
            if port >= 0:
                break  # past the first audio stream
            fields = line[2:].split()
            if fields and fields[0] == "audio":
                if len(fields) < 3 or not fields[1].split("/")[0].isdigit():
                    raise ValueError(f"bad SDP media line: {line!r}")
                port = int(fields[1].split("/")[0])
                if port > 65535:
                    raise ValueError(f"SDP media port out of range: {line!r}")
        elif line.startswith("c="):
            if port >= 0:
                media_c = line
            elif not media_c:
                session_c = line
    if port < 0:
        raise ValueError("SDP has no m=audio line")
    connection = media_c or session_c
    if not connection:
        raise ValueError("SDP has no c= line for its audio stream")
    fields = connection[2:].split()
    if len(fields) != 3 or fields[0] != "IN":
        raise ValueError(f"bad SDP connection line: {connection!r}")
    return fields[2].split("/")[0], port


def rewrite_media_address(sdp: str, address: str, port: int) -> str:
    """The same SDP with every c= address and the first audio port replaced (what a relay does)."""
    out = []
    done = False
    for line in _lines(sdp):
        if line.startswith("c="):
            net, addrtype, _ = line[2:].split(maxsplit=2)
            line = f"c={net} {addrtype} {address}"
        elif line.startswith("m=audio ") and not done:
            _, _, rest = line[2:].split(" ", 2)
            line = f"m=audio {port} {rest}"
            done = True
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def audio_shape(sdp: str) -> AudioShape:
    """The parts of an SDP that describe the media itself (codecs, framing, direction)."""
    media, rtpmaps = [], []
    ptime, direction = "", "sendrecv"
    for line in _lines(sdp):
        if line.startswith("m="):
            fields = line[2:].split()
            media.append(" ".join([fields[0], *fields[2:]]))
        elif line.startswith("a=rtpmap:"):
            rtpmaps.append(line[9:])
        elif line.startswith("a=ptime:"):
            ptime = line[8:]
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            direction = line[2:]
    return AudioShape(tuple(media), tuple(rtpmaps), ptime, direction)


def shape_differences(a: str, b: str) -> list[str]:
    """What differs between two SDPs' media descriptions; [] when the structure matches."""
    left, right = audio_shape(a), audio_shape(b)
    return [
        f"{name}: {getattr(left, name)!r} != {getattr(right, name)!r}"
        for name in ("media", "rtpmaps", "ptime", "direction")
        if getattr(left, name) != getattr(right, name)
    ]
