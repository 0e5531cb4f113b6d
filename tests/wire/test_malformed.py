"""The hostile messages, built on plain values: each kind is broken exactly the way it says
and nothing else, so the SUT's answer can be read as an answer to that one flaw."""

from __future__ import annotations

import pytest

from rig.wire.malformed import (
    FRAUD_NUMBER,
    KINDS,
    LYING_EXTRA_BYTES,
    MANY_MEDIA,
    MAX_DATAGRAM,
    SCANNER_USER_AGENT,
    UNKNOWN_METHOD,
    Origin,
    ack_for,
    build,
    kind_at,
    messages_due,
    offer_sdp,
    status_of,
)
from rig.wire.offers import offer_problem
from rig.wire.sip import parse_message

ORIGIN = Origin(local=("127.0.9.1", 40000), target=("127.0.9.2", 5070))


def message(kind: str, seq: int = 3):
    return parse_message(build(kind, ORIGIN, seq).data)


def test_well_formed_kinds_parse_and_name_their_target_and_origin() -> None:
    for kind in ("unknown_method", "huge_header", "sdp_no_connection", "sdp_hostname",
                 "sdp_port_zero", "sdp_many_media", "scanner_invite"):
        parsed = message(kind)
        assert parsed.uri.endswith("@127.0.9.2:5070"), kind
        assert "127.0.9.1:40000" in parsed.top_via, kind
        assert parsed.call_id == build(kind, ORIGIN, 3).call_id


def test_truncated_stops_inside_the_headers() -> None:
    data = build("truncated", ORIGIN, 0).data
    assert data.startswith(b"INVITE sip:") and b"\r\n\r\n" not in data
    with pytest.raises(ValueError, match="no blank line"):
        parse_message(data)


def test_bad_content_length_claims_more_than_the_body() -> None:
    data = build("bad_content_length", ORIGIN, 0).data
    head, body = data.split(b"\r\n\r\n", 1)
    claimed = int(head.split(b"Content-Length: ")[1])
    assert claimed == len(body) + LYING_EXTRA_BYTES and b"m=audio" in body
    with pytest.raises(ValueError, match="Content-Length"):
        parse_message(data)


def test_huge_header_fills_the_largest_udp_datagram_with_one_header() -> None:
    hostile = build("huge_header", ORIGIN, 0)
    assert len(hostile.data) == MAX_DATAGRAM
    value = parse_message(hostile.data).header("x-padding")
    assert value is not None and len(value) > 65_000 and set(value) == {"a"}


def test_unknown_method_is_in_the_request_line_and_the_cseq() -> None:
    parsed = message("unknown_method")
    assert parsed.method == UNKNOWN_METHOD and parsed.header("cseq") == f"1 {UNKNOWN_METHOD}"


@pytest.mark.parametrize(("kind", "problem"), [
    ("sdp_no_connection", "no connection address"),
    ("sdp_hostname", "'localhost' is not an IP address"),
    ("sdp_port_zero", "rejected (port 0)"),
    ("sdp_many_media", f"{MANY_MEDIA} media sections"),
])
def test_each_broken_offer_is_broken_in_one_way(kind: str, problem: str) -> None:
    parsed = message(kind)
    assert parsed.header("content-type") == "application/sdp"
    found = offer_problem(parsed.body)
    assert found is not None and problem in found


def test_many_media_has_two_thousand_m_lines_in_one_datagram() -> None:
    data = build("sdp_many_media", ORIGIN, 0).data
    assert data.count(b"\r\nm=audio ") == MANY_MEDIA and len(data) <= MAX_DATAGRAM


def test_invalid_utf8_is_in_the_from_header_and_the_sdp() -> None:
    data = build("invalid_utf8", ORIGIN, 0).data
    head, body = data.split(b"\r\n\r\n", 1)
    from_line = next(line for line in head.split(b"\r\n") if line.startswith(b"From:"))
    for part in (from_line, body):
        with pytest.raises(UnicodeDecodeError):
            part.decode("utf-8")
    fixed = body.replace(b"\xff\xfe\xc3\x28", b"x").decode()
    assert offer_problem(fixed) is None  # the bytes are the only flaw


def test_scanner_invite_is_a_usable_call_from_a_scanner() -> None:
    parsed = message("scanner_invite")
    assert parsed.header("user-agent") == SCANNER_USER_AGENT
    assert parsed.uri.startswith(f"sip:{FRAUD_NUMBER}@")
    assert offer_problem(parsed.body) is None


def test_every_message_has_its_own_call_id_and_the_kinds_take_turns() -> None:
    ids = {build(kind_at(KINDS, seq), ORIGIN, seq).call_id for seq in range(3 * len(KINDS))}
    assert len(ids) == 3 * len(KINDS)
    assert [kind_at(("a", "b"), seq) for seq in range(5)] == ["a", "b", "a", "b", "a"]
    with pytest.raises(ValueError, match="allowed: truncated"):
        build("nonsense", ORIGIN, 0)


def test_messages_due_paces_the_rate_and_keeps_to_the_cap() -> None:
    assert messages_due(0.0, 10, 0) == 1  # the first at once
    assert messages_due(0.25, 10, 1) == 2
    assert messages_due(1.0, 10, 3) == 8
    assert messages_due(100.0, 10, 5, cap=7) == 2
    assert messages_due(-1.0, 10, 0) == 0 and messages_due(5.0, 0, 0) == 0


def test_status_of_reads_responses_and_ignores_the_rest() -> None:
    assert status_of(b"SIP/2.0 403 Forbidden\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n") == (
        403, "abc")
    assert status_of(b"SIP/2.0 200 OK\r\ni: compact\r\n\r\n") == (200, "compact")
    assert status_of(b"BYE sip:x SIP/2.0\r\n\r\n") is None
    assert status_of(b"SIP/2.0 4") is None and status_of(b"\xff\x00") is None


def test_ack_for_a_negative_final_keeps_the_invite_transaction_and_the_to_tag() -> None:
    sent = build("sdp_port_zero", ORIGIN, 5).data
    invite = parse_message(sent)
    response = (f"SIP/2.0 488 Not Acceptable Here\r\nVia: {invite.top_via}\r\n"
                f"To: <sip:105@127.0.9.2>;tag=callee\r\nCall-ID: {invite.call_id}\r\n"
                "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    ack = parse_message(ack_for(sent, response) or b"")
    assert (ack.method, ack.uri, ack.call_id, ack.cseq) == ("ACK", invite.uri, invite.call_id, 1)
    assert ack.branch == invite.branch and ack.to_tag == "callee"
    assert ack.from_tag == invite.from_tag
    assert ack_for(build("unknown_method", ORIGIN, 0).data, response) is None


def test_offer_sdp_defaults_are_a_usable_offer() -> None:
    assert offer_problem(offer_sdp("127.0.0.1", connection="127.0.0.1")) is None
