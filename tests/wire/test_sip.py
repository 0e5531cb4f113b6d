"""SIP building and parsing on plain values."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rig.wire.sip import (
    Directive,
    IdSource,
    Leg,
    build_request,
    build_response,
    format_directive,
    header_param,
    host_port,
    parse_directive,
    parse_message,
    split_header_list,
    transaction_key,
    uri_of,
)

LEG = Leg(
    call_id="abc@127.0.3.1",
    local_uri="sip:alice@127.0.3.1:5070",
    local_tag="t1",
    remote_uri="sip:bob@127.0.3.2:5080",
    remote_tag="",
    target="sip:bob@127.0.3.2:5080",
    contact="sip:alice@127.0.3.1:5070",
    sent_by="127.0.3.1:5070",
)
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.3.1\r\ns=-\r\n"


def invite(body: str = SDP) -> bytes:
    return build_request(LEG, "INVITE", 1, "z9hG4bKone", body, extra=(("X-Rig-Outcome", "busy"),))


def test_request_round_trip() -> None:
    message = parse_message(invite())
    assert message.is_request
    assert (message.method, message.uri) == ("INVITE", "sip:bob@127.0.3.2:5080")
    assert message.call_id == "abc@127.0.3.1"
    assert (message.cseq, message.branch) == (1, "z9hG4bKone")
    assert (message.from_tag, message.to_tag) == ("t1", "")
    assert message.header("max-forwards") == "70"
    assert message.header("CONTACT") == "<sip:alice@127.0.3.1:5070>"
    assert message.header("x-rig-outcome") == "busy"
    assert message.header("content-length") == str(len(SDP))
    assert message.body == SDP


def test_request_without_body_has_zero_length_and_no_type() -> None:
    message = parse_message(build_request(LEG, "BYE", 2, "z9hG4bKtwo"))
    assert message.header("content-length") == "0"
    assert message.header("content-type") is None
    assert message.body == ""
    assert message.header("contact") is None


def test_in_dialog_request_carries_to_tag_and_routes() -> None:
    leg = replace(LEG, remote_tag="t2", routes=("sip:127.0.0.9;lr",))
    message = parse_message(build_request(leg, "BYE", 2, "z9hG4bKtwo"))
    assert message.to_tag == "t2"
    assert message.header_values("route") == ["<sip:127.0.0.9;lr>"]


def test_compact_forms_and_any_case_parse() -> None:
    raw = (
        b"BYE sip:bob@h SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKc\r\n"
        b"f: <sip:a@h>;tag=x\r\nt: <sip:b@h>;tag=y\r\n"
        b"i: cid\r\nCSEQ: 7 BYE\r\nl: 0\r\n\r\n"
    )
    message = parse_message(raw)
    assert (message.call_id, message.cseq, message.branch) == ("cid", 7, "z9hG4bKc")
    assert (message.from_tag, message.to_tag) == ("x", "y")
    assert message.header("Call-ID") == message.header("i") == "cid"


def test_folded_header_and_bare_newlines() -> None:
    raw = (
        b"OPTIONS sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKf\nFrom: <sip:a@h>;tag=1\n"
        b"To: <sip:b@h>\nCall-ID: c\nCSeq: 1 OPTIONS\nSubject: first\n  second\n\n"
    )
    assert parse_message(raw).header("subject") == "first second"


def test_several_vias_in_one_line_top_one_gives_the_branch() -> None:
    raw = (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP p:5060;branch=z9hG4bKtop, SIP/2.0/UDP u:5070;branch=z9hG4bKlow\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
    )
    message = parse_message(raw)
    assert message.branch == "z9hG4bKtop"
    assert len(message.header_values("via")) == 2
    assert (message.status, message.method) == (200, "BYE")


def test_response_copies_vias_record_route_and_adds_to_tag() -> None:
    raw = (
        b"INVITE sip:b@h SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy:5060;branch=z9hG4bKp\r\n"
        b"Via: SIP/2.0/UDP uac:5070;branch=z9hG4bKu\r\n"
        b"Record-Route: <sip:proxy:5060;lr>\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    request = parse_message(raw)
    ok = parse_message(build_response(request, 200, "totag", "sip:b@uas:5080", SDP))
    assert ok.header_values("via") == [
        "SIP/2.0/UDP proxy:5060;branch=z9hG4bKp",
        "SIP/2.0/UDP uac:5070;branch=z9hG4bKu",
    ]
    assert ok.header_values("record-route") == ["<sip:proxy:5060;lr>"]
    assert (ok.status, ok.reason, ok.to_tag, ok.method) == (200, "OK", "totag", "INVITE")
    assert ok.body == SDP
    trying = parse_message(build_response(request, 100, "totag", "sip:b@uas:5080"))
    assert trying.to_tag == ""
    assert trying.header("record-route") is None and trying.header("contact") is None
    busy = parse_message(build_response(request, 486, "totag"))
    assert (busy.reason, busy.header("record-route")) == ("Busy Here", None)


def test_response_keeps_an_existing_to_tag() -> None:
    bye = parse_message(build_request(replace(LEG, remote_tag="r"), "BYE", 2, "z9hG4bKb"))
    assert parse_message(build_response(bye, 200, "other")).to_tag == "r"


def test_transaction_key_maps_ack_to_its_invite_and_keeps_cancel_apart() -> None:
    ack = parse_message(build_request(LEG, "ACK", 1, "z9hG4bKone"))
    cancel = parse_message(build_request(LEG, "CANCEL", 1, "z9hG4bKone"))
    assert transaction_key(parse_message(invite())) == ("z9hG4bKone", "INVITE")
    assert transaction_key(ack) == ("z9hG4bKone", "INVITE")
    assert transaction_key(cancel) == ("z9hG4bKone", "CANCEL")
    response = parse_message(build_response(cancel, 200, "x"))
    assert transaction_key(response) == ("z9hG4bKone", "CANCEL")


GOOD_HEAD = (
    b"Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
    b"Call-ID: c\r\nCSeq: 1 INVITE\r\n"
)


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD, "no blank line"),
        (b"INVITE sip:b@h\r\n" + GOOD_HEAD + b"\r\n", "bad SIP request line"),
        (b"INVITE sip:b@h SIP/3.0\r\n" + GOOD_HEAD + b"\r\n", "bad SIP request line"),
        (b"SIP/2.0 2x0 OK\r\n" + GOOD_HEAD + b"\r\n", "bad SIP status line"),
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD.replace(b"Call-ID: c\r\n", b"") + b"\r\n",
         "lacks the call-id header"),
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD.replace(b"CSeq: 1", b"CSeq: x") + b"\r\n",
         "bad CSeq"),
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD + b"garbage\r\n\r\n", "bad SIP header line"),
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD + b"Content-Length: 10\r\n\r\nabc",
         "Content-Length says 10"),
        (b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD + b"Content-Length: ten\r\n\r\n",
         "bad Content-Length"),
        (b"INVITE sip:\xff SIP/2.0\r\n" + GOOD_HEAD + b"\r\n", "not UTF-8"),
    ],
)
def test_malformed_messages_raise_a_clear_value_error(raw: bytes, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_message(raw)


def test_body_is_cut_at_content_length() -> None:
    raw = b"INVITE sip:b@h SIP/2.0\r\n" + GOOD_HEAD + b"Content-Length: 3\r\n\r\nabcdef"
    assert parse_message(raw).body == "abc"


def test_helpers_for_uris_and_parameters() -> None:
    assert uri_of('"Bob" <sip:b@h;transport=udp>;tag=9') == "sip:b@h;transport=udp"
    assert uri_of("sip:b@h;tag=9") == "sip:b@h"
    assert header_param('"Bob" <sip:b@h;tag=no>;tag=9', "tag") == "9"
    assert header_param("<sip:b@h;tag=no>", "tag") == ""
    assert host_port("sip:user@127.0.0.1:5080;lr") == ("127.0.0.1", 5080)
    assert host_port("sip:127.0.0.2;lr") == ("127.0.0.2", 5060)
    assert split_header_list('<sip:a,b@h>, "x,y" <sip:c@h>') == ['<sip:a,b@h>', '"x,y" <sip:c@h>']
    with pytest.raises(ValueError, match="unclosed"):
        uri_of("<sip:b@h")
    with pytest.raises(ValueError, match="bad port"):
        host_port("sip:h:50x")


def test_directive_round_trip_and_errors() -> None:
    directive = Directive("answered", "uas", 2.5)
    assert format_directive(directive) == "answered;hangup=uas;hold=2.5"
    assert parse_directive(format_directive(directive)) == directive
    assert parse_directive("busy") == Directive("busy")
    assert parse_directive(None) == Directive("answered")
    with pytest.raises(ValueError, match="unknown X-Rig-Outcome 'maybe'"):
        parse_directive("maybe")
    with pytest.raises(ValueError, match="bad hangup"):
        parse_directive("answered;hangup=both")
    with pytest.raises(ValueError, match="bad hold"):
        parse_directive("answered;hangup=uas;hold=soon")


def test_id_source_gives_unique_rfc3261_branches() -> None:
    ids = IdSource("p.")
    branches = {ids.branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith("z9hG4bK") for b in branches)
    assert ids.tag() != ids.tag()
