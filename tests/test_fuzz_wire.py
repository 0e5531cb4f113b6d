"""Fuzzing the wire parsers the SUT's traffic reaches: NG (bencode), SIP, SDP and RTP raise
nothing but the rig's own error for any datagram (hypothesis, the `rig` profile)."""

from hypothesis import example, given
from hypothesis import strategies as st

from rig.errors import RigError, WireFormatError
from rig.wire.ng import NgProtocolError, decode_ng, encode_ng
from rig.wire.rtp import parse_rtp
from rig.wire.sdp import media_address
from rig.wire.sip import parse_message

BENCODABLE = st.recursive(
    st.integers(-10**20, 10**20) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@given(st.binary(max_size=300))
@example(b"c " + b"l" * 100_000)
@example(b"c d1:ai" + b"9" * 5000 + b"ee")
@example(b"c d3:\xff\xfe\xfdi1ee")
def test_ng_decode_of_any_datagram(data):
    try:
        cookie, message = decode_ng(data)
    except NgProtocolError:
        return
    assert isinstance(cookie, str) and isinstance(message, dict)


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
       st.dictionaries(st.text(max_size=8), BENCODABLE, max_size=6))
def test_ng_round_trip(cookie, message):
    assert decode_ng(encode_ng(cookie, message)) == (cookie, message)


SIP_LINES = st.sampled_from([
    "INVITE sip:uas@127.0.0.1:5080 SIP/2.0", "SIP/2.0 200 OK", "SIP/2.0 ²00 OK",
    "BYE sip:x SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1", "Via: ,,,",
    "Call-ID: abc", "CSeq: 1 INVITE", "CSeq: ² INVITE", "CSeq: 99999999999999999999 BYE",
    "From: <sip:a@h>;tag=1", "To: <sip:b@h", "To: sip:b@h", "Content-Length: 5",
    "Content-Length: ²", "Content-Length: -1", "Content-Type: application/sdp", "l: 3",
    "Record-Route: <sip:127.0.0.2;lr>", "Contact: <sip:x@[::1]:99999>", "X:", ":", "",
    " folded continuation", "\t", "v=0", "c=IN IP4 127.0.0.1",
])


@given(st.lists(SIP_LINES | st.text(max_size=30), max_size=14), st.binary(max_size=40))
def test_sip_parse_of_any_datagram(lines, tail):
    data = "\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + tail
    try:
        message = parse_message(data)
    except RigError:
        return
    assert message.call_id is not None


@given(st.binary(max_size=200))
@example(b"\xff\xfe\r\n\r\n")
def test_sip_parse_of_any_bytes(data):
    try:
        parse_message(data)
    except RigError:
        pass


SDP_LINES = st.sampled_from([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "c=IN IP4", "c=IN IP6 ::1",
    "c=IN IP4 relay.example.org", "t=0 0", "m=audio 40000 RTP/AVP 0", "m=audio x RTP/AVP 0",
    "m=audio 99999 RTP/AVP 0", "m=audio", "m=video 5 RTP/AVP 96", "a=rtpmap:0 PCMU/8000",
    "c=", "m=audio -1 RTP/AVP 0", "m=audio ٣٠٠ RTP/AVP 0", "m=audio ²0 RTP/AVP 0",
])


@given(st.lists(SDP_LINES | st.text(max_size=30), max_size=10))
def test_sdp_media_address_of_any_body(lines):
    try:
        host, port = media_address("\r\n".join(lines))
    except RigError:
        return
    assert isinstance(host, str) and 0 <= port <= 65535  # a port sendto() takes


@given(st.binary(max_size=120))
@example(bytes([0x80 | 0x10, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]))
@example(bytes([0x80 | 0x20, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF]))
def test_rtp_parse_of_any_datagram(data):
    try:
        packet = parse_rtp(data)
    except RigError:
        return
    assert 0 <= packet.payload_type <= 127 and len(packet.payload) <= len(data)


def test_parse_errors_are_still_value_errors_for_their_callers():
    assert issubclass(WireFormatError, ValueError) and issubclass(WireFormatError, RigError)
    try:
        parse_rtp(b"short")
    except ValueError as err:
        assert isinstance(err, WireFormatError)
