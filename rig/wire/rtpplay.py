"""RTP played back from a capture (as SIPp's pcap_play): one stream's payloads and timing.

Pure: (time, UDP payload) pairs in, a Recording out; `Recording.packet(n)` is the n-th
packet a call sends, looping the recording for as long as the call holds. Each loop starts
one mean packet gap after the last one ended, sequence numbers run on, and the RTP
timestamps keep the capture's own steps and carry on across loops, so a receiver sees one
continuous stream with the capture's payloads, sizes, marker bits and jitter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rig.wire.rtp import RtpPacket, parse_rtp

MAX_PACKETS = 200_000  # an hour of 20 ms packets; a bigger capture is cut here


@dataclass(frozen=True)
class Recorded:
    offset: float  # seconds after the recording's first packet
    ts_offset: int  # RTP timestamp units after the first packet's
    payload_type: int
    marker: bool
    payload: bytes


@dataclass(frozen=True)
class Played:
    """What to send for packet n of a call: when (seconds after its first packet), and the
    header fields relative to the call's own random sequence and timestamp bases."""

    at: float
    sequence_offset: int
    ts_offset: int
    payload_type: int
    marker: bool
    payload: bytes


@dataclass(frozen=True)
class Recording:
    packets: tuple[Recorded, ...]

    def __post_init__(self) -> None:
        if not self.packets:
            raise ValueError("a recording needs at least one RTP packet")

    @property
    def payload_type(self) -> int:
        """The payload type most of its packets carry (what the call's SDP must offer)."""
        types = [p.payload_type for p in self.packets]
        return max(set(types), key=types.count)

    @property
    def gap(self) -> float:
        """The mean time between packets (20 ms for one packet alone)."""
        if len(self.packets) < 2:
            return 0.02
        return self.packets[-1].offset / (len(self.packets) - 1)

    @property
    def period(self) -> float:
        """Seconds from one loop's first packet to the next loop's."""
        return self.packets[-1].offset + self.gap

    @property
    def ts_period(self) -> int:
        """Timestamp units from one loop's first packet to the next loop's."""
        last = self.packets[-1].ts_offset
        if len(self.packets) < 2:
            return max(1, round(8000 * self.gap))
        return last + max(1, round(last / (len(self.packets) - 1)))

    def packet(self, n: int) -> Played:
        loop, index = divmod(n, len(self.packets))
        rec = self.packets[index]
        return Played(
            at=loop * self.period + rec.offset,
            sequence_offset=n,
            ts_offset=loop * self.ts_period + rec.ts_offset,
            payload_type=rec.payload_type,
            marker=rec.marker or n == 0,
            payload=rec.payload,
        )


def rtp_or_none(data: bytes) -> RtpPacket | None:
    try:
        packet = parse_rtp(data)
    except ValueError:
        return None
    # RTCP shares the version bits; its packet types 200-204 read as payload types 72-76
    return None if 72 <= packet.payload_type <= 76 else packet


def recording_from(datagrams: Iterable[tuple[float, bytes]]) -> Recording:
    """The first RTP stream (by SSRC) among the UDP payloads of a capture, in capture order;
    anything that is not RTP is skipped. ValueError when there is no RTP at all."""
    first: tuple[float, RtpPacket] | None = None
    packets: list[Recorded] = []
    for t, data in datagrams:
        rtp = rtp_or_none(data)
        if rtp is None:
            continue
        if first is None:
            first = (t, rtp)
        elif rtp.ssrc != first[1].ssrc:
            continue
        packets.append(Recorded(
            offset=max(0.0, t - first[0]),
            ts_offset=(rtp.timestamp - first[1].timestamp) & 0xFFFFFFFF,
            payload_type=rtp.payload_type, marker=rtp.marker, payload=rtp.payload))
        if len(packets) >= MAX_PACKETS:
            break
    if not packets:
        raise ValueError("no RTP packet in it")
    return Recording(tuple(packets))
