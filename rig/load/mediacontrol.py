"""Media control: what Kamailio's rtpengine module does for a call, played by the rig.

offer on the INVITE, answer on the 200, delete on BYE or failure. NoMediaControl leaves
the SDP alone (a proxy manages media, or nobody does).
"""

from __future__ import annotations

from typing import Protocol

from rig.load.ng import NgClient
from rig.wire.ng import NgError


class MediaControl(Protocol):
    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str: ...

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str: ...

    async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None: ...


class NoMediaControl:
    """The SDP passes unchanged."""

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        return sdp

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        return sdp

    async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
        return None


class NgMediaControl:
    """offer/answer/delete over NG; the relay's rewritten SDP is what the peer sees.

    A failed delete is counted, not raised: the call is over either way, and the relay's
    own session count is what the checks look at.
    """

    def __init__(self, client: NgClient) -> None:
        self.client = client
        self.delete_errors = 0
        self.last_delete_error = ""

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        reply = await self.client.command("offer", call_id=call_id, from_tag=from_tag, sdp=sdp)
        return _sdp_of("offer", reply)

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        reply = await self.client.command(
            "answer", call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp
        )
        return _sdp_of("answer", reply)

    async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
        keys: dict[str, object] = {"call_id": call_id, "from_tag": from_tag}
        if to_tag is not None:
            keys["to_tag"] = to_tag
        try:
            await self.client.command("delete", **keys)
        except NgError as exc:
            self.delete_errors += 1
            self.last_delete_error = str(exc)


def _sdp_of(command: str, reply: dict) -> str:
    sdp = reply.get("sdp")
    if isinstance(sdp, bytes):
        sdp = sdp.decode("utf-8", "replace")
    if not isinstance(sdp, str) or not sdp:
        raise NgError(f"NG {command} reply carries no SDP: {sorted(reply)}")
    return sdp
