"""The hot path agrees with the full parser and builder on plain values."""

from __future__ import annotations

import pytest

from rig.wire.sip import Leg, build_request, build_response, parse_message
from rig.wire.sipfast import Template, body_of, peek, response_to

LEG = Leg(call_id="c1.5@127.0.0.1", local_uri="sip:rig-uac@127.0.0.1:5070", local_tag="t9",
          remote_uri="sip:rig-uas@127.0.0.2:5080", remote_tag="",
          target="sip:rig-uas@127.0.0.2:5080", contact="sip:rig-uac@127.0.0.1:5070",
          sent_by="127.0.0.1:5070")
DIALOG = Leg(LEG.call_id, LEG.local_uri, LEG.local_tag, LEG.remote_uri, "s77", LEG.target,
             LEG.contact, LEG.sent_by, ("sip:127.0.0.9:5060;lr",))
SDP = "v=0\r\no=rig 1 1 IN IP4 127.0.0.1\r\ns=rig\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
      "m=audio 4000 RTP/AVP 0\r\n"


@pytest.mark.parametrize(("leg", "method", "cseq", "extra", "body"), [
    (LEG, "INVITE", 1, "X-Rig-Outcome", SDP),
    (LEG, "INVITE", 1, "", ""),
    (LEG, "CANCEL", 1, "", ""),
    (DIALOG, "ACK", 1, "", ""),
    (DIALOG, "BYE", 2, "", ""),
])
def test_a_template_renders_what_the_builder_builds(leg: Leg, method: str, cseq: int,
                                                    extra: str, body: str) -> None:
    template = Template.request(leg, method, cseq, extra, with_body=bool(body))
    values = {"branch": "z9hG4bKab1", "call_id": "x.42@127.0.0.1", "local_tag": "tag7",
              "remote_tag": "peer3", "extra": "busy", "body": body}
    built_leg = Leg(values["call_id"], leg.local_uri, "tag7", leg.remote_uri,
                    "peer3" if leg.remote_tag else "", leg.target, leg.contact, leg.sent_by,
                    leg.routes)
    expected = build_request(built_leg, method, cseq, "z9hG4bKab1", body,
                             ((extra, "busy"),) if extra else ())
    rendered = template.render(**values)
    assert rendered == expected
    parsed = parse_message(rendered)
    assert (parsed.method, parsed.call_id, parsed.branch, parsed.body) == (
        method, "x.42@127.0.0.1", "z9hG4bKab1", body)


def messages() -> list[bytes]:
    invite = build_request(LEG, "INVITE", 1, "z9hG4bKi1", SDP, (("X-Rig-Outcome", "answered"),))
    request = parse_message(invite)
    return [
        invite,
        build_request(DIALOG, "BYE", 2, "z9hG4bKb2"),
        build_request(DIALOG, "ACK", 1, "z9hG4bKa3"),
        build_response(request, 100),
        build_response(request, 180, "s77", "sip:rig-uas@127.0.0.2:5080"),
        build_response(request, 200, "s77", "sip:rig-uas@127.0.0.2:5080", SDP),
        build_response(request, 486, "s77"),
        # SIPp's spelling, compact headers, two Vias: the slow path must agree as well
        invite.replace(b"Call-ID:", b"i:"),
        invite.replace(b"Content-Length: ", b"Content-Length:   "),  # SIPp pads [len]
        invite.replace(b"\r\nTo:", b"\r\nTO :"),
        invite.replace(b"Via: ", b"Via: SIP/2.0/UDP 127.0.0.8:5060;branch=z9hG4bKp0,\r\n "),
        invite.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP 127.0.0.8:5060;branch=z9hG4bKp0"
                       b"\r\nVia: SIP/2.0/UDP", 1),
    ]


@pytest.mark.parametrize("data", messages())
def test_peek_reads_what_the_parser_reads(data: bytes) -> None:
    full = parse_message(data)
    fast = peek(data)
    assert (fast.status, fast.method, fast.call_id, fast.branch, fast.to_tag, fast.cseq) == (
        full.status, full.method, full.call_id, full.branch, full.to_tag, full.cseq)
    assert fast.message() == full
    if full.body:
        assert body_of(data) == full.body


@pytest.mark.parametrize("data", [
    b"INVITE sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n",  # no CSeq, Via, To
    messages()[0][:-10],  # body shorter than its Content-Length
    b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a>\r\n"
    b"Call-ID: a\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
])
def test_peek_refuses_what_the_parser_refuses(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_message(data)
    with pytest.raises(ValueError):
        peek(data)


@pytest.mark.parametrize(("status", "tag", "contact", "body"), [
    (100, "s1", "", ""), (180, "s1", "sip:uas@h:1", ""), (200, "s1", "sip:uas@h:1", SDP),
    (486, "s1", "", ""), (200, "", "", ""),
])
def test_a_response_from_raw_lines_is_the_builders(status: int, tag: str, contact: str,
                                                   body: str) -> None:
    invite = build_request(LEG, "INVITE", 1, "z9hG4bKi1", SDP).replace(
        b"Max-Forwards", b"Record-Route: <sip:127.0.0.9;lr>\r\nMax-Forwards")
    assert response_to(invite, status, tag, contact, body) == build_response(
        parse_message(invite), status, tag, contact, body)
    bye = build_request(DIALOG, "BYE", 2, "z9hG4bKb2")
    assert response_to(bye, 200) == build_response(parse_message(bye), 200)
