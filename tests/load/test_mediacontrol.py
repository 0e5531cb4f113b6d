import asyncio
import inspect

import pytest

from rig.load.mediacontrol import MediaControl, NgMediaControl, NoMediaControl
from rig.wire.ng import NgError

OFFER = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 40000 RTP/AVP 0\r\n"


class FakeClient:
    """Stands in for NgClient: records commands, answers from a table or raises."""

    def __init__(self, replies: dict[str, dict], fail: set[str] = frozenset()) -> None:
        self.replies = replies
        self.fail = fail
        self.commands: list[tuple[str, dict]] = []

    async def command(self, command: str, **keys: object) -> dict:
        self.commands.append((command, keys))
        if command in self.fail:
            raise NgError(f"NG {command} failed: Unknown call-id", reason="Unknown call-id")
        return self.replies.get(command, {"result": "ok"})


def control(client: FakeClient) -> NgMediaControl:
    return NgMediaControl(client)  # type: ignore[arg-type]


@pytest.mark.parametrize("implementation", [NoMediaControl, NgMediaControl])
@pytest.mark.parametrize("method", ["offer", "answer", "delete"])
def test_implementations_match_the_protocol(implementation: type, method: str) -> None:
    expected = inspect.signature(getattr(MediaControl, method))
    actual = inspect.signature(getattr(implementation, method))
    assert actual == expected
    assert inspect.iscoroutinefunction(getattr(implementation, method))


def test_no_media_control_passes_sdp_unchanged() -> None:
    media = NoMediaControl()
    assert asyncio.run(media.offer("c", "f", OFFER)) == OFFER
    assert asyncio.run(media.answer("c", "f", "t", OFFER)) == OFFER
    assert asyncio.run(media.delete("c", "f")) is None


def test_offer_sends_module_keys_and_returns_rewritten_sdp() -> None:
    client = FakeClient({"offer": {"result": "ok", "sdp": "rewritten"}})
    assert asyncio.run(control(client).offer("call-1", "tag-a", OFFER)) == "rewritten"
    assert client.commands == [("offer", {"call_id": "call-1", "from_tag": "tag-a",
                                          "sdp": OFFER})]


def test_answer_adds_to_tag() -> None:
    client = FakeClient({"answer": {"result": "ok", "sdp": b"bytes sdp"}})
    assert asyncio.run(control(client).answer("call-1", "a", "b", OFFER)) == "bytes sdp"
    assert client.commands[0][1] == {"call_id": "call-1", "from_tag": "a", "to_tag": "b",
                                     "sdp": OFFER}


def test_delete_sends_to_tag_only_when_known() -> None:
    client = FakeClient({})
    media = control(client)
    asyncio.run(media.delete("c", "a"))
    asyncio.run(media.delete("c", "a", "b"))
    assert [keys for _, keys in client.commands] == [
        {"call_id": "c", "from_tag": "a"}, {"call_id": "c", "from_tag": "a", "to_tag": "b"}]
    assert media.delete_errors == 0


def test_delete_errors_are_counted_not_raised() -> None:
    media = control(FakeClient({}, fail={"delete"}))
    asyncio.run(media.delete("c", "a"))
    asyncio.run(media.delete("d", "a"))
    assert media.delete_errors == 2
    assert "Unknown call-id" in media.last_delete_error


def test_offer_errors_are_raised() -> None:
    with pytest.raises(NgError, match="Unknown call-id"):
        asyncio.run(control(FakeClient({}, fail={"offer"})).offer("c", "f", OFFER))


def test_reply_without_sdp_is_an_error() -> None:
    with pytest.raises(NgError, match="offer reply carries no SDP"):
        asyncio.run(control(FakeClient({"offer": {"result": "ok"}})).offer("c", "f", OFFER))
