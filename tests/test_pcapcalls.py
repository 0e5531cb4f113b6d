"""Calls out of a capture: frames decoded, SIP and NG grouped per call, outcomes, the calls a
report shows, ladders, and `rig pcap` on a capture written with scapy."""

from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from rig.cli import main
from rig.pcapcalls import (
    Datagram,
    collect_calls,
    ladder_svg,
    ladder_text,
    pick_calls,
    read_datagrams,
    udp_of_frame,
)

H = "127.5.6.7"


def sip(first: str, call_id: str, cseq: str, body: str = "") -> bytes:
    return (f"{first}\r\nVia: SIP/2.0/UDP {H}:5060;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:a@{H}>;tag=1\r\nTo: <sip:b@{H}>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def sdp(port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {H}\r\ns=-\r\nc=IN IP4 {H}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n")


def call(call_id: str, final: str | None, t0: float) -> list[tuple[float, int, int, bytes]]:
    """(time, sport, dport, payload) of one call from the UAC (5060) to the UAS (5080)."""
    port = 40000 + 2 * int(t0 % 100)  # each call's RTP on a port of its own
    invite = sip(f"INVITE sip:b@{H}:5080 SIP/2.0", call_id, "1 INVITE", sdp(port))
    packets = [(t0, 5060, 5080, invite),
               (t0 + 0.01, 12345, 2223, b"c1 d7:call-id%d:%s7:command5:offere"
                % (len(call_id), call_id.encode())),
               (t0 + 0.02, 2223, 12345, b"c1 d6:result2:oke")]
    if final is not None:
        packets.append((t0 + 0.03, 5080, 5060, sip(f"SIP/2.0 {final}", call_id, "1 INVITE")))
    packets.append((t0 + 0.05, port, 30010, b"\x80\x00" + b"\x00" * 170))  # RTP of the call
    return packets


def frames(packets: list[tuple[float, int, int, bytes]]) -> list:
    out = []
    for t, sport, dport, payload in packets:
        frame = Ether() / IP(src=H, dst=H) / UDP(sport=sport, dport=dport) / Raw(payload)
        frame.time = t
        out.append(frame)
    return out


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    packets = (call("ok", "200 OK", 100.0) + call("busy", "486 Busy Here", 101.0)
               + call("lost", None, 102.0) + call("ok2", "200 OK", 103.0)
               + call("bad", "503 Service Unavailable", 104.0))
    path = tmp_path / "capture.pcap"
    wrpcap(str(path), frames(packets))
    return path


def test_udp_of_frame_and_what_is_not_udp() -> None:
    frame = bytes(Ether() / IP(src="127.1.1.1", dst="127.2.2.2") / UDP(sport=1, dport=2) / b"x")
    assert udp_of_frame(frame) == (("127.1.1.1", 1), ("127.2.2.2", 2), b"x")
    assert udp_of_frame(bytes(Ether() / IP(src=H, dst=H, proto=6) / (b"\0" * 20))) is None
    assert udp_of_frame(b"short") is None


def test_calls_outcomes_and_the_calls_a_report_shows(capture: Path) -> None:
    calls = collect_calls(read_datagrams(capture))
    assert {cid: c.outcome for cid, c in calls.items()} == {
        "ok": "answered", "busy": "busy", "lost": "unanswered", "ok2": "answered",
        "bad": "failed 503"}
    assert len(calls["ok"].ng) == 2  # the offer and its reply, matched by the cookie
    assert calls["ok"].media == {(H, 40000)} and calls["busy"].media == {(H, 40002)}
    assert [c.call_id for c in pick_calls(calls)] == ["lost", "bad", "ok", "busy"]


def test_ladders_name_the_parties_and_the_messages(capture: Path) -> None:
    call = collect_calls(read_datagrams(capture))["busy"]
    text = ladder_text(call)
    assert text.splitlines()[0] == "call busy: busy"
    assert "UAC -> UAS    INVITE" in text and "UAS -> UAC    486 Busy Here (INVITE)" in text
    assert "proxy -> relay  NG offer" in text
    svg = ladder_svg(call)
    assert svg.startswith("<svg") and ">UAC</text>" in svg and ">relay</text>" in svg
    assert "486 Busy Here" in svg


def test_rig_pcap_lists_prints_and_extracts_one_call(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pcap", str(capture.parent)]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("5 calls in ") and "  busy  busy  2 SIP, 2 NG" in listing
    assert main(["pcap", str(capture), "--call", "lost"]) == 0
    assert "call lost: unanswered" in capsys.readouterr().out
    out = tmp_path / "one.pcap"
    assert main(["pcap", str(capture), "--call", "ok", "--out", str(out)]) == 0
    kept = list(read_datagrams(out))
    assert len(kept) == 5  # INVITE, 200, the offer, its reply; and the RTP of its SDP
    assert {d.dst[1] for d in kept} == {5080, 5060, 2223, 12345, 30010}


def test_rig_pcap_bad_input_is_one_line_and_exit_2(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pcap", str(tmp_path / "nothing")]) == 2
    assert "no capture" in capsys.readouterr().err
    assert main(["pcap", str(capture), "--call", "nope"]) == 2
    assert "call 'nope' is not in" in capsys.readouterr().err
    assert main(["pcap", str(capture), "--out", str(tmp_path / "x.pcap")]) == 2
    assert "--out needs --call" in capsys.readouterr().err


def test_datagram_is_plain_data() -> None:
    d = Datagram(1.0, (H, 1), (H, 2), b"", b"")
    assert d.src == (H, 1)
