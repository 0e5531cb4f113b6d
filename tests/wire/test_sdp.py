"""SDP building, reading and comparing on plain strings."""

from __future__ import annotations

import pytest

from rig.wire.sdp import (
    audio_shape,
    build_sdp,
    media_address,
    rewrite_media_address,
    shape_differences,
)

# The shape of an offer as rtpengine rewrites it: new address and port, extra attributes.
RELAYED = (
    "v=0\r\no=rig 7 7 IN IP4 127.0.3.1\r\ns=rig\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\n"
    "m=audio 30002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    "a=rtcp:30003\r\n"
)


def test_built_offer_names_its_address_port_and_codec() -> None:
    sdp = build_sdp("127.0.3.1", 40000, 7)
    assert media_address(sdp) == ("127.0.3.1", 40000)
    assert "a=rtpmap:0 PCMU/8000\r\n" in sdp and "a=ptime:20\r\n" in sdp
    assert sdp.endswith("\r\n")
    pcma = build_sdp("127.0.3.1", 40000, 7, payload_type=8, ptime_ms=30)
    assert audio_shape(pcma).rtpmaps == ("8 PCMA/8000",)
    assert audio_shape(pcma).ptime == "30"


def test_media_level_connection_wins_over_session_level() -> None:
    sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 127.0.0.7\r\n"
    assert media_address(sdp) == ("127.0.0.7", 5004)
    assert media_address("v=0\nc=IN IP4 127.0.0.8\nm=audio 6000/2 RTP/AVP 0\n") == (
        "127.0.0.8", 6000)


@pytest.mark.parametrize(
    ("sdp", "complaint"),
    [
        ("v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m=audio"),
        ("v=0\r\nm=audio 5004 RTP/AVP 0\r\n", "no c= line"),
        ("v=0\r\nc=IN IP4\r\nm=audio 5004 RTP/AVP 0\r\n", "bad SDP connection"),
        ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n", "bad SDP media"),
    ],
)
def test_bad_sdp_raises_a_clear_value_error(sdp: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        media_address(sdp)


def test_build_rejects_unknown_codec_and_bad_port() -> None:
    with pytest.raises(ValueError, match="unsupported payload type 18"):
        build_sdp("127.0.0.1", 4000, 1, payload_type=18)
    with pytest.raises(ValueError, match="RTP port out of range"):
        build_sdp("127.0.0.1", 0, 1)


def test_relay_rewrite_keeps_the_structure() -> None:
    offer = build_sdp("127.0.3.1", 40000, 7)
    assert shape_differences(offer, RELAYED) == []
    rewritten = rewrite_media_address(offer, "127.0.0.50", 30002)
    assert media_address(rewritten) == ("127.0.0.50", 30002)
    assert shape_differences(offer, rewritten) == []


def test_structure_differences_are_named() -> None:
    offer = build_sdp("127.0.3.1", 40000, 7)
    other = build_sdp("127.0.3.1", 40000, 7, payload_type=8, ptime_ms=30)
    differences = shape_differences(offer, other)
    assert [d.split(":")[0] for d in differences] == ["media", "rtpmaps", "ptime"]
    inactive = offer.replace("a=sendrecv", "a=inactive")
    assert shape_differences(offer, inactive) == ["direction: 'sendrecv' != 'inactive'"]
