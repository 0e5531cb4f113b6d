"""RTP receiver statistics: RFC 3550 per source, and a mergeable summary of many streams.

`SourceStats` is the state of one SSRC as a receiver sees it (RFC 3550 appendix A.1 for the
sequence numbers, A.8 for the interarrival jitter), plus a window of the last
`WINDOW` sequence numbers so that a duplicate is told apart from a late (reordered) packet.
`RtpStats` is what a stream, an engine or a process reports: plain integers only, so that
`merge` is exact, associative and commutative, and N processes merged equal one process
that saw every stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rig.wire.rtp import RtpPacket

SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# every packet MAX_MISORDER behind the highest is still inside the window
WINDOW = 128
WINDOW_MASK = (1 << WINDOW) - 1


@dataclass(frozen=True, slots=True)
class RtpStats:
    """Counters of one or many streams; `merge` adds counts and keeps the worst jitter.

    received counts every packet accepted, duplicates included (as RFC 3550 does); lost is
    the packets expected and never seen, so duplicates cannot hide a loss. Jitter is kept in
    whole microseconds (per stream: the RFC 3550 estimate at the end) so sums stay exact.
    """

    streams: int = 0  # sources heard (SSRCs)
    sent: int = 0
    received: int = 0
    expected: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0  # packets that arrived after a higher sequence number
    send_errors: int = 0
    invalid: int = 0  # datagrams that were not RTP
    jitter_us_max: int = 0
    jitter_us_sum: int = 0  # over the streams, for the mean

    def merge(self, other: RtpStats) -> RtpStats:
        return RtpStats(
            streams=self.streams + other.streams,
            sent=self.sent + other.sent,
            received=self.received + other.received,
            expected=self.expected + other.expected,
            lost=self.lost + other.lost,
            duplicates=self.duplicates + other.duplicates,
            reordered=self.reordered + other.reordered,
            send_errors=self.send_errors + other.send_errors,
            invalid=self.invalid + other.invalid,
            jitter_us_max=max(self.jitter_us_max, other.jitter_us_max),
            jitter_us_sum=self.jitter_us_sum + other.jitter_us_sum,
        )

    @classmethod
    def of_sources(cls, sources: Iterable[SourceStats], sent: int = 0) -> RtpStats:
        """The counts of many sources in one pass (an engine holds thousands), equal to
        merging each source's stats()."""
        streams = received = expected = lost = duplicates = reordered = 0
        jitter_max = jitter_sum = 0
        for s in sources:
            streams += 1
            received += s.received
            expected += s.expected
            lost += s.missing
            duplicates += s.duplicates
            reordered += s.reordered
            jitter = s.jitter_us
            jitter_max = max(jitter_max, jitter)
            jitter_sum += jitter
        return cls(streams=streams, sent=sent, received=received, expected=expected, lost=lost,
                   duplicates=duplicates, reordered=reordered, jitter_us_max=jitter_max,
                   jitter_us_sum=jitter_sum)

    @classmethod
    def merged(cls, parts: Iterable[RtpStats]) -> RtpStats:
        total = cls()
        for part in parts:
            total = total.merge(part)
        return total

    @property
    def jitter_ms_max(self) -> float:
        return self.jitter_us_max / 1000.0

    @property
    def jitter_ms_mean(self) -> float:
        return self.jitter_us_sum / self.streams / 1000.0 if self.streams else 0.0

    @property
    def loss_fraction(self) -> float:
        return self.lost / self.expected if self.expected else 0.0


@dataclass(slots=True)
class SourceStats:
    """RFC 3550 appendix A.1 and A.8 for one SSRC (without the probation period)."""

    clock_rate: int
    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    bad_seq: int = SEQ_MOD + 1
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    jitter: float = 0.0  # in timestamp units, as RFC 3550 keeps it
    window: int = 0  # bit k: max_seq - k was seen
    _last_transit: float | None = None

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        """One packet; this runs once per packet received, so it is kept flat."""
        if self.base_seq < 0:
            self._restart(sequence)
        else:
            delta = (sequence - self.max_seq) & 0xFFFF
            if 0 < delta < MAX_DROPOUT:
                if sequence < self.max_seq:
                    self.cycles += SEQ_MOD
                self.max_seq = sequence
                self.window = ((self.window << delta) | 1) & WINDOW_MASK
            elif delta == 0 or delta > SEQ_MOD - MAX_MISORDER:
                bit = 1 << ((SEQ_MOD - delta) & 0xFFFF)
                if self.window & bit:
                    self.received += 1
                    self.duplicates += 1
                    return  # a copy says nothing new about transit time
                self.window |= bit
                self.reordered += 1
            elif sequence == self.bad_seq:
                # a big jump followed by its successor: the sender restarted
                self._restart(sequence)
            else:
                self.bad_seq = (sequence + 1) & 0xFFFF
                return
        self.received += 1
        transit = arrival_s * self.clock_rate - timestamp
        last = self._last_transit
        if last is not None:
            # the RTP timestamp wraps at 2**32: take the difference modulo that
            d = (transit - last + 2**31) % 2**32 - 2**31
            self.jitter += (abs(d) - self.jitter) / 16
        self._last_transit = transit

    def _restart(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.window = 1

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
    def missing(self) -> int:
        """Packets expected and never seen: duplicates do not make up for them."""
        return max(0, self.expected - (self.received - self.duplicates))

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    @property
    def jitter_us(self) -> int:
        return round(self.jitter * 1_000_000 / self.clock_rate)

    def stats(self) -> RtpStats:
        return RtpStats.of_sources([self])


@dataclass
class ReceiverStats:
    """Receiver statistics of one endpoint, one SourceStats per SSRC heard."""

    clock_rate: int = 8000
    sources: dict[int, SourceStats] = field(default_factory=dict)

    def update(self, packet: RtpPacket, arrival_s: float) -> None:
        self.update_header(packet.ssrc, packet.sequence, packet.timestamp, arrival_s)

    def update_header(self, ssrc: int, sequence: int, timestamp: int, arrival_s: float) -> None:
        """One packet, from a receive loop that only unpacked the fixed header."""
        self.source(ssrc).update(sequence, timestamp, arrival_s)

    def source(self, ssrc: int) -> SourceStats:
        """The statistics of one SSRC, new when it was not heard before."""
        source = self.sources.get(ssrc)
        if source is None:
            source = self.sources[ssrc] = SourceStats(self.clock_rate)
        return source

    def stats(self) -> RtpStats:
        return RtpStats.of_sources(list(self.sources.values()))

    @property
    def received(self) -> int:
        return sum(s.received for s in self.sources.values())

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.sources.values())

    @property
    def lost(self) -> int:
        """Packets missing, per source never below zero (duplicates do not hide losses)."""
        return sum(s.missing for s in self.sources.values())

    @property
    def jitter_ms(self) -> float:
        return max((s.jitter_ms for s in self.sources.values()), default=0.0)
