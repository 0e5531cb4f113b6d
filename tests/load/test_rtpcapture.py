"""load.rtp.pcap end to end: a capture written with scapy, read back, played by the
MediaEngine with its payloads and timing; bad captures are one UsageError line."""

import socket
import time
from pathlib import Path

import pytest

from rig.errors import UsageError
from rig.load.media import MediaEngine
from rig.load.rtpcapture import load_recording
from rig.plan import check_recording
from rig.topology.loopback import block_host
from rig.wire.rtp import RtpPacket, build_rtp, parse_rtp

HOST = block_host("77.2")
GAPS = (0.02, 0.02, 0.06)  # seconds to the next packet: a pause the player must keep


def write_capture(path: Path, link: str = "ether") -> Path:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import CookedLinux, Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    frames, t, ts = [], 1000.0, 0
    for i, gap in enumerate(GAPS):
        payload = build_rtp(RtpPacket(0, i, ts, 99, bytes([i]) * (160 if i != 1 else 80)))
        top = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") if link == "ether" \
            else CookedLinux()
        frame = top / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=4000, dport=5000) / Raw(
            payload)
        frame.time = t
        frames.append(frame)
        t, ts = t + gap, ts + round(gap * 8000)
    wrpcap(str(path), frames)
    return path


@pytest.mark.parametrize("link", ["ether", "cooked"])
def test_a_capture_of_any_link_type_gives_its_rtp_stream(tmp_path: Path, link: str):
    rec = load_recording(write_capture(tmp_path / "call.pcap", link))
    assert [len(p.payload) for p in rec.packets] == [160, 80, 160]
    assert [round(p.offset, 3) for p in rec.packets] == [0.0, 0.02, 0.04]
    check_recording(rec, "PCMU", "call.pcap")
    with pytest.raises(UsageError, match="its RTP is PCMU, load.rtp.codec is PCMA"):
        check_recording(rec, "PCMA", "call.pcap")


def test_bad_captures_are_one_line(tmp_path: Path):
    with pytest.raises(UsageError, match="no such file"):
        load_recording(tmp_path / "none.pcap")
    (tmp_path / "text.pcap").write_text("not a capture")
    with pytest.raises(UsageError, match="^load.rtp.pcap: .*text.pcap: not a readable capture"):
        load_recording(tmp_path / "text.pcap")
    from scapy.utils import wrpcap

    wrpcap(str(tmp_path / "empty.pcap"), [])
    with pytest.raises(UsageError, match="no RTP packet in it"):
        load_recording(tmp_path / "empty.pcap")


def test_the_engine_plays_the_payloads_at_the_captures_timing(tmp_path: Path):
    rec = load_recording(write_capture(tmp_path / "call.pcap"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, MediaEngine(
            HOST, (42100, 42163), seed=3, recording=rec) as media:
        sink.bind((HOST, 0))
        sink.settimeout(2.0)
        port = media.open_endpoint()
        media.prepare_stream(port, sink.getsockname())
        media.start_streams([port])
        arrivals = []
        for _ in range(7):
            arrivals.append((time.monotonic(), parse_rtp(sink.recv(2048))))
        media.close_endpoint(port)
    packets = [p for _, p in arrivals]
    assert [p.payload[:1] for p in packets] == [bytes([i % 3]) for i in range(7)]
    assert [len(p.payload) for p in packets] == [160, 80, 160] * 2 + [160]
    assert [(p.sequence - packets[0].sequence) % 65536 for p in packets] == list(range(7))
    step = rec.ts_period
    assert [(p.timestamp - packets[0].timestamp) % 2**32 for p in packets[:4]] == [
        0, 160, 320, step]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    # packets 1 to 6 are paced by the engine: 0.02 s to 0.12 s after the first, never early
    assert arrivals[6][0] - arrivals[1][0] >= rec.packet(6).at - rec.packet(1).at - 0.005
