"""RTP from a capture, on plain values: which packets form the stream and how it loops."""

import pytest

from rig.wire.rtp import RtpPacket, build_rtp
from rig.wire.rtpplay import Recording, recording_from


def rtp(seq: int, ts: int, payload: bytes, ssrc: int = 7, pt: int = 0,
        marker: bool = False) -> bytes:
    return build_rtp(RtpPacket(pt, seq, ts, ssrc, payload, marker))


# three packets 20 ms apart, then a 40 ms gap (a lost one), on 8 kHz timestamps
CAPTURE = [
    (100.000, rtp(1, 1000, b"a" * 160)),
    (100.010, b"SIP/2.0 200 OK\r\n\r\n"),                  # not RTP
    (100.020, rtp(2, 1160, b"b" * 160)),
    (100.030, rtp(9, 5000, b"x" * 160, ssrc=8)),         # another stream
    (100.035, bytes([0x80, 200]) + b"\x00" * 26),         # RTCP sender report
    (100.080, rtp(4, 1640, b"d" * 80, marker=True)),
]


def test_the_first_stream_is_kept_with_its_offsets_payloads_and_markers():
    rec = recording_from(CAPTURE)
    assert [p.payload[:1] for p in rec.packets] == [b"a", b"b", b"d"]
    assert [round(p.offset, 3) for p in rec.packets] == [0.0, 0.02, 0.08]
    assert [p.ts_offset for p in rec.packets] == [0, 160, 640]
    assert [p.marker for p in rec.packets] == [False, False, True]
    assert rec.payload_type == 0 and rec.gap == pytest.approx(0.04)


def test_played_packets_loop_on_with_continuous_sequence_time_and_timestamps():
    rec = recording_from(CAPTURE)
    played = [rec.packet(n) for n in range(7)]
    assert [round(p.at, 3) for p in played] == [0.0, 0.02, 0.08, 0.12, 0.14, 0.2, 0.24]
    assert [p.sequence_offset for p in played] == list(range(7))
    # the next loop starts one mean step (320) after the last timestamp
    assert [p.ts_offset for p in played] == [0, 160, 640, 960, 1120, 1600, 1920]
    assert [p.payload[:1] for p in played] == [b"a", b"b", b"d", b"a", b"b", b"d", b"a"]
    assert played[0].marker and not played[3].marker and played[5].marker
    assert all(b.at > a.at for a, b in zip(played, played[1:], strict=False))


def test_one_packet_alone_repeats_every_20_ms():
    rec = recording_from([(5.0, rtp(1, 0, b"z" * 160, pt=8))])
    assert [rec.packet(n).at for n in range(3)] == [0.0, 0.02, 0.04]
    assert rec.payload_type == 8 and rec.packet(2).ts_offset == 320


def test_a_capture_without_rtp_is_refused():
    with pytest.raises(ValueError, match="no RTP packet"):
        recording_from([(0.0, b"hello"), (0.1, bytes([0x80, 201]) + b"\x00" * 10)])
    with pytest.raises(ValueError, match="at least one"):
        Recording(())
