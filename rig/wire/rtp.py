"""RTP packets: pure values and arithmetic, no I/O.

The receiver statistics live in rig.wire.rtpstats; their names are kept here too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rig.wire import wire_errors
from rig.wire.rtpstats import (  # noqa: F401  (the names callers import from here)
    MAX_DROPOUT,
    MAX_MISORDER,
    SEQ_MOD,
    ReceiverStats,
    RtpStats,
    SourceStats,
)

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
HEADER_SIZE = HEADER.size
# bytes 2..7 of the fixed header: what changes from one packet of a stream to the next
SEQUENCE_TIMESTAMP = struct.Struct("!HI")
MARKER = 0x80

PCMU_PAYLOAD_TYPE = 0
PCMA_PAYLOAD_TYPE = 8
CLOCK_RATES = {PCMU_PAYLOAD_TYPE: 8000, PCMA_PAYLOAD_TYPE: 8000}
# G.711 silence (mu-law 0xFF, A-law 0xD5), so a listener on the relay hears nothing
SILENCE_BYTE = {PCMU_PAYLOAD_TYPE: 0xFF, PCMA_PAYLOAD_TYPE: 0xD5}



@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False


def clock_rate(payload_type: int) -> int:
    """Sampling clock of a static payload type the rig can send."""
    try:
        return CLOCK_RATES[payload_type]
    except KeyError:
        raise ValueError(
            f"unsupported RTP payload type {payload_type} (allowed: {sorted(CLOCK_RATES)})"
        ) from None


def samples_per_packet(payload_type: int, ptime_ms: int) -> int:
    """Timestamp step per packet; also the G.711 payload size in bytes (one byte a sample)."""
    if ptime_ms <= 0:
        raise ValueError(f"ptime must be positive, got {ptime_ms} ms")
    return clock_rate(payload_type) * ptime_ms // 1000


def build_rtp(p: RtpPacket) -> bytes:
    """Encode a packet with a plain 12-byte header (no CSRC, no extension, no padding)."""
    if not 0 <= p.payload_type <= 127:
        raise ValueError(f"RTP payload type out of range 0..127: {p.payload_type}")
    second = p.payload_type | (0x80 if p.marker else 0)
    header = HEADER.pack(
        RTP_VERSION << 6, second, p.sequence % SEQ_MOD, p.timestamp & 0xFFFFFFFF, p.ssrc
    )
    return header + p.payload


def packet_template(payload_type: int, ssrc: int, payload: bytes) -> bytearray:
    """A stream's packet, built once: a sender patches only the sequence number and the
    timestamp into it (`stamp`) before each send."""
    return bytearray(build_rtp(RtpPacket(payload_type, 0, 0, ssrc, payload)))


def stamp(packet: bytearray, sequence: int, timestamp: int) -> None:
    """Write the sequence number and timestamp into a template in place."""
    SEQUENCE_TIMESTAMP.pack_into(packet, 2, sequence & 0xFFFF, timestamp & 0xFFFFFFFF)


@wire_errors
def parse_rtp(data: bytes) -> RtpPacket:
    """Decode a packet; CSRCs, the header extension and padding are stripped."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"RTP packet too short: {len(data)} bytes")
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise ValueError(f"not RTP version 2 (version {first >> 6})")
    offset = HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < offset + 4:
            raise ValueError("RTP header extension truncated")
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if first & 0x20 and end > offset:
        end -= data[-1]
    if end < offset:
        raise ValueError("RTP header longer than the packet")
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
    )
