import pytest

from rig.wire.rtp import (
    ReceiverStats,
    RtpPacket,
    SourceStats,
    build_rtp,
    parse_rtp,
    samples_per_packet,
)

PCMU_SILENCE = b"\xff" * 160


def packet(sequence: int, timestamp: int = 0, ssrc: int = 0x1234ABCD) -> RtpPacket:
    return RtpPacket(0, sequence, timestamp, ssrc, PCMU_SILENCE)


def feed(seqs: list[int], ptime: float = 0.02) -> SourceStats:
    stats = SourceStats(8000)
    for i, seq in enumerate(seqs):
        stats.update(seq, i * 160, i * ptime)
    return stats


def test_build_then_parse_round_trips() -> None:
    p = RtpPacket(0, 65535, 0xFFFFFFFF, 0xDEADBEEF, PCMU_SILENCE, marker=True)
    data = build_rtp(p)
    assert len(data) == 12 + 160
    assert data[:2] == b"\x80\x80"
    assert parse_rtp(data) == p


def test_build_writes_network_order_header() -> None:
    data = build_rtp(RtpPacket(8, 0x0102, 0x03040506, 0x0708090A, b"xy"))
    assert data == bytes([0x80, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) + b"xy"


def test_parse_skips_csrcs_extension_and_padding() -> None:
    header = bytes([0x80 | 0x20 | 0x10 | 0x01, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 5])
    csrc = b"\x00\x00\x00\x01"
    extension = b"\xbe\xde\x00\x01" + b"\x00" * 4
    data = header + csrc + extension + b"abc" + b"\x00\x02"
    p = parse_rtp(data)
    assert (p.sequence, p.timestamp, p.ssrc, p.payload) == (7, 9, 5, b"abc")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00", "too short"),
        (bytes([0x40]) + b"\x00" * 11, "version"),
        (bytes([0x8F]) + b"\x00" * 11, "longer than the packet"),
        (bytes([0x90]) + b"\x00" * 11, "extension truncated"),
    ],
)
def test_parse_rejects_bad_packets(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rtp(data)


def test_build_rejects_payload_type_out_of_range() -> None:
    with pytest.raises(ValueError, match="payload type"):
        build_rtp(RtpPacket(128, 0, 0, 0, b""))


def test_pcmu_packet_size() -> None:
    assert samples_per_packet(0, 20) == 160
    assert samples_per_packet(8, 30) == 240
    with pytest.raises(ValueError, match="unsupported RTP payload type 96"):
        samples_per_packet(96, 20)
    with pytest.raises(ValueError, match="ptime"):
        samples_per_packet(0, 0)


def test_in_order_stream_has_no_loss() -> None:
    stats = feed(list(range(100, 150)))
    assert (stats.received, stats.expected, stats.lost) == (50, 50, 0)


def test_gaps_count_as_lost() -> None:
    stats = feed([1, 2, 5, 6, 10])
    assert (stats.expected, stats.received, stats.lost) == (10, 5, 5)


def test_reordered_packets_are_not_lost() -> None:
    stats = feed([1, 3, 2, 4, 6, 5])
    assert (stats.expected, stats.received, stats.lost) == (6, 6, 0)
    assert stats.extended_max == 6


def test_duplicates_make_loss_negative_per_rfc_but_receiver_clamps() -> None:
    stats = feed([1, 2, 2, 3])
    assert stats.lost == -1
    receiver = ReceiverStats()
    for seq in [1, 2, 2, 3, 4, 4]:
        receiver.update(packet(seq), 0.0)
    assert (receiver.received, receiver.lost) == (6, 0)


def test_sequence_wrap_around_extends_the_count() -> None:
    seqs = [65533, 65534, 65535, 0, 1, 3]
    stats = feed(seqs)
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + 3
    assert (stats.expected, stats.received, stats.lost) == (7, 6, 1)


def test_reorder_across_wrap_does_not_add_a_cycle() -> None:
    stats = feed([65534, 0, 65535, 1])
    assert stats.cycles == 65536
    assert (stats.expected, stats.lost) == (4, 0)


def test_big_jump_is_ignored_once_then_accepted_as_restart() -> None:
    stats = feed([10, 11, 30000])
    assert (stats.received, stats.max_seq) == (2, 11)
    stats.update(30001, 0, 1.0)
    assert (stats.base_seq, stats.received, stats.expected) == (30001, 1, 1)


def test_jitter_is_zero_for_perfect_pacing() -> None:
    stats = feed(list(range(50)))
    assert stats.jitter_ms == 0.0


def test_jitter_follows_rfc_3550_estimator() -> None:
    stats = SourceStats(8000)
    arrivals = [0.0, 0.020, 0.045, 0.060]  # transit changes: 0, +5 ms, -5 ms
    for i, arrival in enumerate(arrivals):
        stats.update(i, i * 160, arrival)
    j = 0.0
    for d in (0.0, 40.0, 40.0):  # |D| in timestamp units (5 ms at 8 kHz = 40)
        j += (d - j) / 16
    assert stats.jitter == pytest.approx(j)
    assert stats.jitter_ms == pytest.approx(j / 8)


def test_jitter_survives_timestamp_wrap() -> None:
    stats = SourceStats(8000)
    start = 2**32 - 320
    for i in range(5):
        stats.update(i, (start + i * 160) % 2**32, i * 0.020)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_receiver_keeps_sources_apart() -> None:
    receiver = ReceiverStats()
    for seq in (1, 2, 4):
        receiver.update(packet(seq, ssrc=1), 0.0)
    for seq in (100, 101):
        receiver.update(packet(seq, ssrc=2), 0.0)
    assert sorted(receiver.sources) == [1, 2]
    assert (receiver.received, receiver.expected, receiver.lost) == (5, 6, 1)
