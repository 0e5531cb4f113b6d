"""What the rig's callee takes in an offer, on plain SDP."""

from __future__ import annotations

import pytest

from rig.wire.offers import MAX_MEDIA, offer_problem
from rig.wire.sdp import build_sdp

GOOD = build_sdp("127.0.0.1", 40000, 1)


def test_the_rigs_own_offer_is_usable() -> None:
    assert offer_problem(GOOD) is None


@pytest.mark.parametrize(("sdp", "problem"), [
    ("", "no media section"),
    ("v=0\r\ns=x\r\n", "no media section"),
    ("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n", "rejected (port 0)"),
    ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "no connection address"),
    ("v=0\r\nc=IN IP4 pbx.example\r\nm=audio 4000 RTP/AVP 0\r\n", "'pbx.example' is not an IP"),
    ("v=0\r\nc=IN IP4\r\nm=audio 4000 RTP/AVP 0\r\n", "bad connection line"),
    ("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio x RTP/AVP 0\r\n", "bad media line"),
    ("v=0\r\nc=IN IP4 127.0.0.1\r\n" + "m=audio 4000 RTP/AVP 0\r\n" * (MAX_MEDIA + 1),
     f"{MAX_MEDIA + 1} media sections"),
])
def test_unusable_offers_say_why(sdp: str, problem: str) -> None:
    found = offer_problem(sdp)
    assert found is not None and problem in found


def test_a_media_level_address_serves_where_the_session_has_none() -> None:
    sdp = "v=0\r\nm=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::1\r\n"
    assert offer_problem(sdp) is None
