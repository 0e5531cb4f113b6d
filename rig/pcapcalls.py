"""Calls out of a run's capture.pcap: each call's SIP, NG and RTP, and its ladder diagram.

Frames are decoded by hand (Ethernet, IPv4, UDP): a run's capture holds tens of thousands of
RTP packets and only their addresses matter here. scapy only reads and writes the file.
Who is who comes from the ports of the run's topology (Endpoints): the rig's UAC 5060,
Kamailio 5070, the rig's UAS 5080, the relay's NG 2223 and its RTP range.
"""

from __future__ import annotations

import html
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rig.atomic import atomic_path
from rig.wire.sip import SipMessage, parse_message

if TYPE_CHECKING:
    from rig.summary import Capture

ROLES_BY_PORT = {5060: "UAC", 5070: "proxy", 5080: "UAS", 2223: "relay"}
RELAY_RTP = (30000, 31999)
COLUMNS = ("UAC", "proxy", "UAS", "relay")
ETH_HEADER, ETH_IPV4, UDP_PROTO = 14, 0x0800, 17
NG_CALL_ID = re.compile(rb"7:call-id(\d+):")
NG_COMMAND = re.compile(rb"7:command(\d+):")
SDP_MEDIA = re.compile(r"^m=audio (\d+) ", re.M)
SDP_CONN = re.compile(r"^c=IN IP4 (\S+)", re.M)


@dataclass(frozen=True)
class Datagram:
    t: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes
    frame: bytes


def udp_of_frame(frame: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    """(src, dst, payload) of an Ethernet/IPv4/UDP frame; None for anything else."""
    if len(frame) < ETH_HEADER + 28 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV4:
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != UDP_PROTO or len(ip) < ihl + 8:
        return None
    src_ip, dst_ip = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
    payload = ip[ihl + 8: ihl + max(length, 8)]
    return (src_ip, sport), (dst_ip, dport), payload


def read_datagrams(path: Path) -> Iterator[Datagram]:
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(path)) as reader:
        for frame, meta in reader:
            udp = udp_of_frame(frame)
            if udp is not None:
                t = meta.sec + meta.usec / 1e6
                yield Datagram(t, udp[0], udp[1], udp[2], frame)


def role_of(port: int) -> str | None:
    if port in ROLES_BY_PORT:
        return ROLES_BY_PORT[port]
    if RELAY_RTP[0] <= port <= RELAY_RTP[1]:
        return "relay"
    return None


def ng_field(payload: bytes, key: re.Pattern[bytes]) -> str | None:
    """A string field of a bencoded NG message, found without decoding all of it."""
    match = key.search(payload)
    if match is None:
        return None
    start = match.end()
    return payload[start: start + int(match.group(1))].decode(errors="replace")


@dataclass(frozen=True)
class Step:
    """One arrow of a ladder."""

    t: float
    src: str
    dst: str
    label: str


@dataclass
class CallTrace:
    call_id: str
    sip: list[tuple[Datagram, SipMessage]] = field(default_factory=list)
    ng: list[Datagram] = field(default_factory=list)
    media: set[tuple[str, int]] = field(default_factory=set)  # RTP endpoints from the SDPs

    @property
    def outcome(self) -> str:
        """From the INVITE's final response: answered, busy, cancelled, failed NNN or
        unanswered (no final response: a failed call)."""
        finals = [m.status for _, m in self.sip
                  if not m.is_request and m.method == "INVITE" and m.status >= 200]
        if not finals:
            return "unanswered"
        code = finals[0]
        return {200: "answered", 486: "busy", 487: "cancelled"}.get(code, f"failed {code}")

    @property
    def failed(self) -> bool:
        return self.outcome == "unanswered" or self.outcome.startswith("failed")

    def steps(self) -> list[Step]:
        sips = [Step(d.t, role_of(d.src[1]) or str(d.src[1]), role_of(d.dst[1]) or str(d.dst[1]),
                     sip_label(m)) for d, m in self.sip]
        ngs = [Step(d.t, role_of(d.src[1]) or "proxy", role_of(d.dst[1]) or "proxy",
                    f"NG {ng_field(d.payload, NG_COMMAND) or 'reply'}") for d in self.ng]
        return sorted(sips + ngs, key=lambda s: s.t)


def sip_label(message: SipMessage) -> str:
    if message.is_request:
        return message.method
    return f"{message.status} {message.reason} ({message.method})"


def collect_calls(datagrams: Iterable[Datagram]) -> dict[str, CallTrace]:
    """Every call's SIP and NG; NG replies are matched to requests by their cookie."""
    calls: dict[str, CallTrace] = {}
    cookies: dict[bytes, str] = {}
    for d in datagrams:
        if 2223 in (d.src[1], d.dst[1]):
            cookie = d.payload.split(b" ", 1)[0]
            call_id = ng_field(d.payload, NG_CALL_ID)
            if call_id is not None:
                cookies[cookie] = call_id
            else:
                call_id = cookies.pop(cookie, None)
            if call_id is not None:
                calls.setdefault(call_id, CallTrace(call_id)).ng.append(d)
            continue
        if role_of(d.src[1]) is None and role_of(d.dst[1]) is None:
            continue
        try:
            message = parse_message(d.payload)
        except (ValueError, UnicodeDecodeError):
            continue
        trace = calls.setdefault(message.call_id, CallTrace(message.call_id))
        trace.sip.append((d, message))
        trace.media |= sdp_endpoints(message.body)
    return {cid: trace for cid, trace in calls.items() if trace.sip}


def sdp_endpoints(body: str) -> set[tuple[str, int]]:
    conn, port = SDP_CONN.search(body), SDP_MEDIA.search(body)
    if conn is None or port is None:
        return set()
    return {(conn.group(1), int(port.group(1)))}


def pick_calls(calls: dict[str, CallTrace], failed_max: int = 3) -> list[CallTrace]:
    """The failed calls first (a few), then one call of each other outcome."""
    ordered = sorted(calls.values(), key=lambda c: c.sip[0][0].t)
    chosen = [c for c in ordered if c.failed][:failed_max]
    seen = {c.outcome for c in chosen}
    for call in ordered:
        if call.outcome not in seen:
            chosen.append(call)
            seen.add(call.outcome)
    return chosen


def ladder_text(call: CallTrace) -> str:
    steps = call.steps()
    start = steps[0].t if steps else 0.0
    lines = [f"call {call.call_id}: {call.outcome}"]
    lines += [f"  {s.t - start:8.3f}  {s.src:>5} -> {s.dst:<5}  {s.label}" for s in steps]
    return "\n".join(lines)


def ladder_svg(call: CallTrace, row: int = 20, col: int = 150) -> str:
    """An SVG ladder: one lifeline per party, one arrow per message, times at the left."""
    steps = call.steps()
    parties = [p for p in COLUMNS if any(p in (s.src, s.dst) for s in steps)]
    parties += sorted({p for s in steps for p in (s.src, s.dst)} - set(parties))
    x = {p: 90 + i * col for i, p in enumerate(parties)}
    height = 40 + row * (len(steps) + 1)
    width = 90 + col * max(len(parties), 1)
    start = steps[0].t if steps else 0.0
    out = [f'<svg class="ladder" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" font-family="monospace" font-size="11">']
    for party, px in x.items():
        out.append(f'<text x="{px}" y="14" text-anchor="middle" font-weight="bold">'
                   f"{html.escape(party)}</text>")
        out.append(f'<line x1="{px}" y1="20" x2="{px}" y2="{height - 5}" stroke="#999"/>')
    for i, step in enumerate(steps):
        y = 40 + i * row
        x1, x2 = x[step.src], x[step.dst]
        colour = "#c00" if step.label[:1] in "456" else ("#06c" if "NG" in step.label else "#000")
        out.append(f'<text x="4" y="{y + 4}">{step.t - start:7.3f}</text>')
        out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}"/>')
        tip = 6 if x2 > x1 else -6
        out.append(f'<polygon points="{x2},{y} {x2 - tip},{y - 3} {x2 - tip},{y + 3}" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{(x1 + x2) / 2}" y="{y - 3}" text-anchor="middle" '
                   f'fill="{colour}">{html.escape(step.label[:40])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def call_frames(datagrams: Iterable[Datagram], call: CallTrace) -> list[Datagram]:
    """The call's SIP, its NG and the RTP to or from the media endpoints of its SDPs."""
    keys = {(d.t, d.src, d.dst) for d, _ in call.sip} | {(d.t, d.src, d.dst) for d in call.ng}
    return [d for d in datagrams
            if (d.t, d.src, d.dst) in keys or d.src in call.media or d.dst in call.media]


def write_frames(path: Path, datagrams: Iterable[Datagram]) -> int:
    from scapy.utils import RawPcapWriter

    count = 0
    with atomic_path(path) as tmp:
        writer = RawPcapWriter(str(tmp), linktype=1, snaplen=262144)
        writer.write_header(None)
        try:
            for d in datagrams:
                sec = int(d.t)
                writer.write_packet(d.frame, sec=sec, usec=int(round((d.t - sec) * 1e6)))
                count += 1
        finally:
            writer.close()
    return count


def capture_html(folder: Path, block: Capture | None, report_dir: Path) -> str:
    """The report's capture part: the link, what the capture holds, and a few ladders."""
    import os

    path = folder / "capture.pcap"
    if block is None or not path.is_file():
        reason = block.reason if block is not None else None
        return f"<p>no capture{': ' + html.escape(str(reason)) if reason else ''}</p>"
    link = os.path.relpath(path, report_dir)
    note = (f"{block.written} packets, {block.bytes} bytes"
            + (f"; {block.dropped_middle} packets in the middle left out (size cap)"
               if block.truncated else ""))
    parts = [f'<p><a href="{html.escape(link)}">capture.pcap</a> ({html.escape(note)})</p>']
    calls = collect_calls(read_datagrams(path))
    for call in pick_calls(calls):
        parts.append(f"<h4>call {html.escape(call.call_id)}: {html.escape(call.outcome)}</h4>")
        parts.append(ladder_svg(call))
    return "\n".join(parts)
