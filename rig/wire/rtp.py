"""RTP packets and RFC 3550 receiver statistics: pure values and arithmetic, no I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from rig.wire import wire_errors

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
HEADER_SIZE = HEADER.size

PCMU_PAYLOAD_TYPE = 0
PCMA_PAYLOAD_TYPE = 8
CLOCK_RATES = {PCMU_PAYLOAD_TYPE: 8000, PCMA_PAYLOAD_TYPE: 8000}
# G.711 silence (mu-law 0xFF, A-law 0xD5), so a listener on the relay hears nothing
SILENCE_BYTE = {PCMU_PAYLOAD_TYPE: 0xFF, PCMA_PAYLOAD_TYPE: 0xD5}

SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100


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


@dataclass(slots=True)
class SourceStats:
    """RFC 3550 appendix A.1 and A.8 for one SSRC (without the probation period)."""

    clock_rate: int
    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    bad_seq: int = SEQ_MOD + 1
    received: int = 0
    jitter: float = 0.0  # in timestamp units, as RFC 3550 keeps it
    _last_transit: float | None = None

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        if self.base_seq < 0:
            self._restart(sequence)
        elif not self._accept_sequence(sequence):
            return
        self.received += 1
        self._update_jitter(timestamp, arrival_s)

    def _restart(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.received = 0

    def _accept_sequence(self, sequence: int) -> bool:
        delta = (sequence - self.max_seq) % SEQ_MOD
        if delta < MAX_DROPOUT:
            if sequence < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = sequence
            return True
        if delta <= SEQ_MOD - MAX_MISORDER:
            # a big jump: believe it only when the next packet follows it (the sender restarted)
            if sequence == self.bad_seq:
                self._restart(sequence)
                return True
            self.bad_seq = (sequence + 1) % SEQ_MOD
            return False
        return True  # a duplicate or a packet reordered within MAX_MISORDER

    def _update_jitter(self, timestamp: int, arrival_s: float) -> None:
        transit = arrival_s * self.clock_rate - timestamp
        if self._last_transit is not None:
            d = transit - self._last_transit
            # the RTP timestamp wraps at 2**32: take the difference modulo that
            d = (d + 2**31) % 2**32 - 2**31
            self.jitter += (abs(d) - self.jitter) / 16
        self._last_transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.base_seq >= 0 else 0

    @property
    def lost(self) -> int:
        """Expected minus received; negative when duplicates arrived (RFC 3550 6.4.1)."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate


@dataclass
class ReceiverStats:
    """Receiver statistics of one endpoint, one SourceStats per SSRC heard."""

    clock_rate: int = 8000
    sources: dict[int, SourceStats] = field(default_factory=dict)

    def update(self, packet: RtpPacket, arrival_s: float) -> None:
        self.update_header(packet.ssrc, packet.sequence, packet.timestamp, arrival_s)

    def update_header(self, ssrc: int, sequence: int, timestamp: int, arrival_s: float) -> None:
        """Same as update(), for a receive loop that only unpacked the fixed header."""
        source = self.sources.get(ssrc)
        if source is None:
            source = self.sources[ssrc] = SourceStats(self.clock_rate)
        source.update(sequence, timestamp, arrival_s)

    @property
    def received(self) -> int:
        return sum(s.received for s in self.sources.values())

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.sources.values())

    @property
    def lost(self) -> int:
        """Packets missing, per source never below zero (duplicates do not hide losses)."""
        return sum(max(0, s.lost) for s in self.sources.values())

    @property
    def jitter_ms(self) -> float:
        return max((s.jitter_ms for s in self.sources.values()), default=0.0)
