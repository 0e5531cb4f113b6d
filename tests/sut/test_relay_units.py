"""The relay's pure parts on plain values: NG framing, SDP rewrite, reply cache, counters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from relay_helpers import RELAY_DIR, answer_sdp, offer_sdp

Importer = Callable[[Path, str], ModuleType]


@pytest.fixture(scope="module")
def mods(import_from: Importer) -> dict[str, ModuleType]:
    names = ("ngwire", "sdprewrite", "control", "relaystats", "ports", "relaylog", "media")
    return {name: import_from(RELAY_DIR, name) for name in names}


# --- NG framing ---------------------------------------------------------------------------


def test_cookie_is_cut_at_the_first_space(mods: dict[str, ModuleType]) -> None:
    datagram = mods["ngwire"].split_cookie(b"5_1 d7:command4:pinge")
    assert datagram.cookie == b"5_1"
    assert datagram.body == b"d7:command4:pinge"


@pytest.mark.parametrize("data", [b"nospace", b" d7:command4:pinge", b""])
def test_no_cookie_means_no_reply(mods: dict[str, ModuleType], data: bytes) -> None:
    assert mods["ngwire"].split_cookie(data) is None


@pytest.mark.parametrize("body", [b"d7:command4:pi", b"i42e", b"l4:pinge", b"\xff\x00", b""])
def test_broken_bencode_is_an_ng_error(mods: dict[str, ModuleType], body: bytes) -> None:
    ngwire = mods["ngwire"]
    with pytest.raises(ngwire.NgError, match="Could not decode bencode dictionary"):
        ngwire.decode_request(body)


def test_wrong_type_and_missing_key_name_the_key(mods: dict[str, ModuleType]) -> None:
    ngwire = mods["ngwire"]
    with pytest.raises(ngwire.NgError, match='key "sdp"'):
        ngwire.required_str({"sdp": 5}, "sdp")
    with pytest.raises(ngwire.NgError, match="No call-id"):
        ngwire.required_str({}, "call-id")
    with pytest.raises(ngwire.NgError, match='key "limit"'):
        ngwire.optional_int({"limit": "x"}, "limit")


def test_reply_encoding_turns_floats_into_decimal_strings(mods: dict[str, ModuleType]) -> None:
    encoded = mods["ngwire"].encode_reply(b"c", {"result": "ok", "rate": 1.5, "on": True})
    assert encoded == b"c d2:oni1e4:rate8:1.5000006:result2:oke"


# --- SDP ----------------------------------------------------------------------------------


def test_media_endpoints_come_from_media_or_session_connection(mods: dict[str, ModuleType]) -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\n"
    )
    media = mods["sdprewrite"].parse_media(sdp)
    assert [(m.kind, m.address, m.port) for m in media] == [
        ("audio", "10.0.0.1", 4000),
        ("video", "10.0.0.2", 4002),
    ]


def test_rewrite_matches_what_rtpengine_returns(mods: dict[str, ModuleType]) -> None:
    # The expected body is what rtpengine 10.5 answered to this offer (ports aside).
    rewritten = mods["sdprewrite"].rewrite(offer_sdp("127.0.2.11", 2010), "127.0.2.250", [40000])
    assert rewritten == (
        "v=0\r\no=- 1 1 IN IP4 127.0.2.11\r\ns=rig\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 8 101\r\nc=IN IP4 127.0.2.250\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\na=sendrecv\r\na=rtcp:40001\r\na=ptime:20\r\n"
    )


def test_rewrite_adds_static_rtpmap_and_keeps_direction(mods: dict[str, ModuleType]) -> None:
    sdp = ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
           "m=audio 4000 RTP/AVP 8\na=recvonly\n")
    rewritten = mods["sdprewrite"].rewrite(sdp, "127.0.0.9", [30000])
    assert "c=IN IP4 127.0.0.9\r\n" in rewritten
    assert "m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=recvonly\r\n" in rewritten
    assert "10.0.0.1" in rewritten  # the origin line is not the connection


@pytest.mark.parametrize(
    "sdp, reason",
    [
        ("garbage", "does not start with v="),
        ("v=0\r\n", "no m= line"),
        ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "no c= address"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "bad port"),
        ("v=0\r\nc=IN IP4 media.example.com\r\nm=audio 4000 RTP/AVP 0\r\n",
         "c= address 'media.example.com' is not an IP address"),
        ("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 localhost\r\n",
         "c= address 'localhost' is not an IP address"),
    ],
)
def test_unusable_sdp_names_the_problem(mods: dict[str, ModuleType], sdp: str, reason: str) -> None:
    sdprewrite = mods["sdprewrite"]
    with pytest.raises(sdprewrite.SdpError, match=reason):
        sdprewrite.parse_media(sdp)


def test_answer_sdp_keeps_its_codec(mods: dict[str, ModuleType]) -> None:
    rewritten = mods["sdprewrite"].rewrite(answer_sdp("127.0.2.12", 2012), "127.0.2.3", [40014])
    assert "m=audio 40014 RTP/AVP 0\r\n" in rewritten
    assert "a=rtpmap:0 PCMU/8000" in rewritten


# --- control: cache and dispatch ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_control(mods: dict[str, ModuleType], clock: Clock) -> tuple[Any, list[str]]:
    executed: list[str] = []

    def offer(request: dict[str, Any]) -> dict[str, Any]:
        executed.append(request["call-id"])
        return {"result": "ok", "n": len(executed)}

    def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    logged: list[str] = []
    control = mods["control"].Control(
        {"offer": offer, "broken": broken}, lambda level, text: logged.append(level), clock
    )
    return control, executed


def test_repeated_cookie_gets_the_cached_reply_and_runs_once(mods: dict[str, ModuleType]) -> None:
    clock = Clock()
    control, executed = make_control(mods, clock)
    request = b"abc d7:call-id1:x7:command5:offere"
    first = control.handle(request)
    assert control.handle(request) == first
    assert executed == ["x"]
    assert control.handle(b"abd d7:call-id1:x7:command5:offere") != first
    assert executed == ["x", "x"]


def test_cached_reply_expires(mods: dict[str, ModuleType]) -> None:
    clock = Clock()
    control, executed = make_control(mods, clock)
    control.handle(b"abc d7:call-id1:x7:command5:offere")
    clock.now += 31
    control.handle(b"abc d7:call-id1:x7:command5:offere")
    assert executed == ["x", "x"]


def test_reply_cache_is_bounded(mods: dict[str, ModuleType]) -> None:
    cache = mods["control"].ReplyCache(size=2, ttl=30)
    for cookie in (b"a", b"b", b"c"):
        cache.put(cookie, cookie.upper(), 0.0)
    assert cache.get(b"a", 0.0) is None
    assert cache.get(b"c", 0.0) == b"C"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"d7:command5:boguse", b"Unrecognized command"),
        (b"d4:call1:xe", b"No command in message"),
        (b"d7:commandi5ee", b'Wrong type for key "command"'),
        (b"d7:command6:brokene", b"Internal error: boom"),
    ],
)
def test_bad_requests_get_error_replies(
    mods: dict[str, ModuleType], body: bytes, reason: bytes
) -> None:
    control, _ = make_control(mods, Clock())
    reply = control.handle(b"k " + body)
    assert reply.startswith(b"k d12:error-reason")
    assert reason in reply
    assert reply.endswith(b"6:result5:errore")


def test_ping_is_always_there(mods: dict[str, ModuleType]) -> None:
    control, _ = make_control(mods, Clock())
    assert control.handle(b"p d7:command4:pinge") == b"p d6:result4:ponge"


# --- counters, ports, log -------------------------------------------------------------------


def test_rate_meter_reports_per_second_over_the_last_full_second(
    mods: dict[str, ModuleType],
) -> None:
    meter = mods["relaystats"].RateMeter()
    assert meter.observe(10.0, 0) == 0
    assert meter.observe(10.5, 400) == 0  # less than a second: previous rate
    assert meter.observe(12.0, 1000) == 500
    assert meter.observe(12.2, 5000) == 500


def test_sites_are_always_listed(mods: dict[str, ModuleType]) -> None:
    sites = mods["relaystats"].all_sites({"ssrc_entry": {"count": 2, "bytes": 512}})
    assert sites == {
        "stream_stats": {"count": 0, "bytes": 0},
        "ssrc_entry": {"count": 2, "bytes": 512},
        "payload_type": {"count": 0, "bytes": 0},
    }


def test_dump_lines_have_the_contract_shape(mods: dict[str, ModuleType]) -> None:
    stats = mods["relaystats"]
    traffic = stats.Traffic(
        sessions=1,
        streams=2,
        packets_relayed=3,
        bytes_relayed=4,
        packets_dropped=0,
        deleted_sessions=0,
    )
    lines = stats.dump_lines(traffic, {"pins": 2}, {"stream_stats": {"count": 2, "bytes": 1024}})
    assert lines[0] == "statistics sessions=1 streams=2 packets_relayed=3 packets_dropped=0 pins=2"
    assert lines[1] == "alloc_site site=stream_stats count=2 bytes=1024"
    assert len(lines) == 4


@pytest.mark.parametrize("text", ["30000", "30001-30001", "b-c", "0-10", "30000-70000"])
def test_bad_port_ranges_are_refused(mods: dict[str, ModuleType], text: str) -> None:
    with pytest.raises(ValueError, match="port range"):
        mods["ports"].parse_port_range(text)


def test_ports_are_even_round_robin_and_skip_unbindable(mods: dict[str, ModuleType]) -> None:
    ports = mods["ports"].PortRange(30001, 30009)

    def bind(port: int) -> int:
        if port == 30004:
            raise OSError("in use")
        return port

    assert [ports.take(bind)[0] for _ in range(3)] == [30002, 30006, 30008]
    with pytest.raises(mods["ports"].OutOfPorts):
        ports.take(bind)
    ports.give_back(30006)
    assert ports.take(bind)[0] == 30006


def test_log_line_format(mods: dict[str, ModuleType]) -> None:
    relaylog = mods["relaylog"]
    line = relaylog.format_line(1700000000.5, "CRIT", "worker-1", "Failed to pin")
    assert line == "[1700000000.500000] CRIT: [worker-1] Failed to pin"
    with pytest.raises(ValueError, match="allowed"):
        relaylog.format_line(0.0, "LOUD", "t", "x")


def test_rtp_ssrc(mods: dict[str, ModuleType]) -> None:
    media = mods["media"]
    assert media.rtp_ssrc(bytes([0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34])) == 0x1234
    assert media.rtp_ssrc(b"short") is None
