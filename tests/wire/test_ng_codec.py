import pytest

from rig.wire.ng import (
    NgError,
    NgProtocolError,
    check_reply,
    command_message,
    cookie_prefix,
    decode_ng,
    encode_ng,
)


def test_encode_decode_round_trip() -> None:
    data = encode_ng("c1", {"command": "offer", "call-id": "x", "flags": ["a", "b"], "n": 3})
    assert data.startswith(b"c1 d")
    assert decode_ng(data) == ("c1", {"command": "offer", "call-id": "x",
                                      "flags": ["a", "b"], "n": 3})


def test_decode_keeps_undecodable_strings_as_bytes() -> None:
    _, message = decode_ng(b"k d3:raw2:\xff\xfee")
    assert message == {"raw": b"\xff\xfe"}


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"nocookie", "without a cookie"), (b"c1 i3e", "not a dictionary"),
     (b"c1 d3:abc", "bad bencoded"), (b" d1:ai1ee", "without a cookie")],
)
def test_decode_rejects_bad_datagrams(data: bytes, message: str) -> None:
    with pytest.raises(NgProtocolError, match=message):
        decode_ng(data)


def test_encode_rejects_bad_cookie_and_message() -> None:
    with pytest.raises(ValueError, match="cookie"):
        encode_ng("a b", {})
    with pytest.raises(TypeError, match="dict"):
        encode_ng("c", ["x"])  # type: ignore[arg-type]


def test_command_message_spells_keys_the_ng_way() -> None:
    assert command_message("offer", call_id="c", from_tag="f", sdp="v=0") == {
        "command": "offer", "call-id": "c", "from-tag": "f", "sdp": "v=0"}


def test_check_reply_raises_the_error_reason() -> None:
    assert check_reply("ping", {"result": "pong"}) == {"result": "pong"}
    with pytest.raises(NgError, match="NG query failed: Unknown call-id") as info:
        check_reply("query", {"result": "error", "error-reason": "Unknown call-id"})
    assert info.value.reason == "Unknown call-id"
    with pytest.raises(NgError, match="no error-reason given"):
        check_reply("query", {"result": "error"})


def test_cookie_prefix_is_pid_and_nonce_in_hex_without_spaces() -> None:
    prefix = cookie_prefix(0x1F2, b"\x00\xab")
    assert prefix == "1f200ab"
    assert encode_ng(prefix + "_1", {}).startswith(b"1f200ab_1 ")
