"""Every datagram the callback engine sends is a SIP message the full parser reads back,
for every outcome and both hang-up sides, and the calls still end as asked."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from rig.load.calls import CallResult, CallSpec, Uac, Uas
from rig.topology.loopback import block_host
from rig.wire.sip import parse_message
from rig.wire.transaction import SipTimers

pytestmark = pytest.mark.timing

UAC_HOST, UAS_HOST = block_host("3.21"), block_host("3.22")
FAST = SipTimers(t1=0.05, t2=0.2, timeout=3.0)
SPECS = [
    CallSpec("answered", hold=0.02),
    CallSpec("answered", hold=0.02, hangup="uas"),
    CallSpec("busy"),
    CallSpec("cancel", cancel_after=0.01),
    CallSpec("no_answer", no_answer_timeout=0.05),
    CallSpec("vanish", hold=0.02),
]
SDP = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 9 RTP/AVP 0\r\n")


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def recorded(agent: Any, sent: list[bytes]) -> None:
    """Keep a copy of every datagram the agent's socket is given to send."""
    send = agent._endpoint.send

    def keep(data: bytes, addr: Any, origin: str) -> None:
        sent.append(data)
        send(data, addr, origin)

    agent._endpoint.send = keep


async def calls_of_every_kind() -> tuple[list[bytes], list[bytes], list[CallResult], Uas]:
    uas_port = free_port(UAS_HOST)
    uac_sent: list[bytes] = []
    uas_sent: list[bytes] = []
    async with Uas((UAS_HOST, uas_port), FAST, on_offer=lambda cid, sdp: SDP) as uas, Uac(
            (UAC_HOST, free_port(UAC_HOST)), (UAS_HOST, uas_port), timers=FAST) as uac:
        recorded(uac, uac_sent)
        recorded(uas, uas_sent)
        results = await asyncio.gather(*[uac.call(spec, SDP) for spec in SPECS for _ in range(3)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8.0  # vanish: the notice, then the unanswered BYE times out
        while uas.active and loop.time() < deadline:
            await asyncio.sleep(0.01)
    return uac_sent, uas_sent, list(results), uas


def test_every_message_the_engine_sends_parses_back() -> None:
    uac_sent, uas_sent, results, uas = asyncio.run(calls_of_every_kind())
    assert all(r.completed for r in results), [r for r in results if not r.completed]
    uac_requests = [parse_message(d) for d in uac_sent]
    uas_messages = [parse_message(d) for d in uas_sent]
    assert {m.method for m in uac_requests} == {"INVITE", "ACK", "BYE", "CANCEL"}
    assert {100, 180, 200, 486, 487} <= {m.status for m in uas_messages}
    assert any(m.is_request and m.method == "BYE" for m in uas_messages)  # the UAS hung up
    for message in uac_requests + uas_messages:
        assert message.call_id and message.branch.startswith("z9hG4bK")
        if message.is_request and message.method == "INVITE":
            assert message.body == SDP
    assert uas.counts.completed == len(SPECS) * 3
