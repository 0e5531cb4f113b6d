"""The UAC and UAS on loopback (127.N.3.x in the process's own block): every outcome, exact
counts, retransmissions."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rig.load.calls import (
    VANISH_NOTICE_S,
    CallResult,
    CallSpec,
    OfferRefused,
    Uac,
    Uas,
    UasCounts,
)
from rig.topology.destinations import UnsafeDestination
from rig.topology.loopback import block_host
from rig.wire.sip import (
    RIG_HEADER,
    Directive,
    Leg,
    SipMessage,
    build_request,
    build_response,
    format_directive,
    parse_message,
)
from rig.wire.transaction import SipTimers

# SIP timers and exact counts under load: one worker at a time (the timing group)
pytestmark = pytest.mark.timing

UAC_HOST, UAS_HOST, PEER_HOST = block_host("3.1"), block_host("3.2"), block_host("3.3")
FAST = SipTimers(t1=0.05, t2=0.2, timeout=3.0)  # short T1; a generous bound for a busy CI box
GIVE_UP_SOON = SipTimers(t1=0.05, t2=0.2, timeout=1.0)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run(coro: Awaitable[Any], bound: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, bound))  # type: ignore[arg-type]


class RawPeer(asyncio.DatagramProtocol):
    """A scripted SIP peer: records what arrives and lets the test answer by hand."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[SipMessage, Any]] = asyncio.Queue()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.put_nowait((parse_message(data), addr))

    async def next(self, method: str, timeout: float = 2.0) -> tuple[SipMessage, Any]:
        while True:
            message, addr = await asyncio.wait_for(self.inbox.get(), timeout)
            if message.method == method:
                return message, addr

    def send(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


@asynccontextmanager
async def raw_peer(host: str) -> AsyncIterator[tuple[RawPeer, int]]:
    port = free_port(host)
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=(host, port))
    try:
        yield peer, port
    finally:
        transport.close()


async def with_pair(
    job: Callable[[Uac, Uas], Awaitable[Any]], timers: SipTimers = FAST, **uas_options: Any
) -> Any:
    uas_port = free_port(UAS_HOST)
    async with Uas((UAS_HOST, uas_port), timers, **uas_options) as uas, Uac(
        (UAC_HOST, free_port(UAC_HOST)), (UAS_HOST, uas_port), timers=timers
    ) as uac:
        return await job(uac, uas)


async def until_idle(uas: Uas, seconds: float = 3.0) -> None:
    """Wait (bounded) until the UAS has seen the last ACK or 200 of every call."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while uas.active and loop.time() < deadline:
        await asyncio.sleep(0.005)


SPECS = {
    "answered": CallSpec("answered", hold=0.05),
    "answered_uas_bye": CallSpec("answered", hold=0.05, hangup="uas"),
    "busy": CallSpec("busy"),
    "cancel": CallSpec("cancel", cancel_after=0.02),
    "no_answer": CallSpec("no_answer", no_answer_timeout=0.1),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_each_outcome_completes_on_both_sides(name: str) -> None:
    spec = SPECS[name]

    async def job(uac: Uac, uas: Uas) -> CallResult:
        result = await uac.call(spec, sdp="v=0\r\n")
        await until_idle(uas)
        assert (uas.counts.completed, uas.counts.failed, uas.active) == (1, 0, 0)
        assert uac.active == 0
        return result

    result = run(with_pair(job))
    assert result.completed, result.reason
    assert result.status == {"answered": 200, "busy": 486}.get(spec.outcome, 487)


def test_a_vanished_caller_leaves_the_callee_to_hang_up_unanswered() -> None:
    ended: list[str] = []

    async def job(uac: Uac, uas: Uas) -> CallResult:
        result = await uac.call(CallSpec("vanish", hold=0.05), sdp="v=0\r\n")
        assert uas.active == 1  # the callee has not noticed yet
        await until_idle(uas, seconds=VANISH_NOTICE_S + GIVE_UP_SOON.timeout + 2.0)
        assert (uas.counts.completed, uas.counts.failed, uas.active) == (1, 0, 0)
        assert uac.stray >= 2  # the BYE and its retransmissions, dropped without a reply
        return result

    result = run(with_pair(job, GIVE_UP_SOON, on_end=ended.append))
    assert (result.completed, result.status) == (True, 200)
    assert ended == [result.call_id]


def test_uas_end_calls_sends_the_pending_bye_at_once() -> None:
    async def job(uac: Uac, uas: Uas) -> float:
        await uac.call(CallSpec("vanish", hold=0.0), sdp="v=0\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        uas.end_calls()
        while uac.stray == 0 and loop.time() - started < 3 * VANISH_NOTICE_S:
            await asyncio.sleep(0.005)
        return loop.time() - started

    assert run(with_pair(job, GIVE_UP_SOON)) < VANISH_NOTICE_S / 2


def test_a_mixed_batch_is_counted_exactly() -> None:
    specs = [SPECS[name] for name in SPECS for _ in range(20)]

    async def job(uac: Uac, uas: Uas) -> list[CallResult]:
        results = await asyncio.gather(*(uac.call(spec) for spec in specs))
        await until_idle(uas)
        assert uas.counts.invites == len(specs)
        assert (uas.counts.completed, uas.counts.failed) == (len(specs), 0)
        assert uas.counts.outcomes == {"answered": 40, "busy": 20, "cancel": 20, "no_answer": 20}
        return results

    results = run(with_pair(job))
    assert [r.completed for r in results] == [True] * len(specs)
    assert len({r.call_id for r in results}) == len(specs)


def test_answer_hook_gets_the_answer_and_offer_hook_the_offer() -> None:
    offers: list[tuple[str, str]] = []
    ended: list[str] = []
    answers: list[tuple[str, str]] = []

    def on_offer(call_id: str, sdp: str) -> str:
        offers.append((call_id, sdp))
        return "v=0\r\ns=answer\r\n"

    async def on_answered(to_tag: str, sdp: str) -> None:
        answers.append((to_tag, sdp))

    async def job(uac: Uac, uas: Uas) -> CallResult:
        result = await uac.call(SPECS["answered"], "v=0\r\ns=offer\r\n", on_answered, "cid-1")
        await until_idle(uas)
        return result

    result = run(with_pair(job, on_offer=on_offer, on_end=ended.append))
    assert result.completed
    assert offers == [("cid-1", "v=0\r\ns=offer\r\n")]
    assert [sdp for _, sdp in answers] == ["v=0\r\ns=answer\r\n"] and answers[0][0]
    assert ended == ["cid-1"]


def test_an_offer_the_hook_refuses_gets_488_and_counts_as_neither_completed_nor_failed() -> None:
    def on_offer(call_id: str, sdp: str) -> str:
        raise OfferRefused("every media section is rejected (port 0)")

    async def job(uac: Uac, uas: Uas) -> tuple[CallResult, UasCounts]:
        result = await uac.call(SPECS["answered"], "v=0\r\nm=audio 0 RTP/AVP 0\r\n")
        await until_idle(uas)
        return result, uas.counts

    result, counts = run(with_pair(job, on_offer=on_offer))
    assert not result.completed and result.status == 488
    assert (counts.refused, counts.completed, counts.failed) == (1, 0, 0)


def test_unanswered_invite_is_retransmitted_with_doubling_intervals_then_fails() -> None:
    async def job() -> tuple[CallResult, list[float]]:
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        async with raw_peer(PEER_HOST) as (peer, port), Uac(
            (UAC_HOST, free_port(UAC_HOST)), (PEER_HOST, port), timers=GIVE_UP_SOON
        ) as uac:
            call = asyncio.ensure_future(uac.call(CallSpec()))
            while not call.done():
                try:
                    await peer.next("INVITE", timeout=0.3)
                    arrivals.append(loop.time())
                except TimeoutError:
                    pass
            return call.result(), arrivals

    result, arrivals = run(job())
    assert not result.completed and result.reason == "no final response to INVITE"
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) >= 3  # sent, then retransmitted at T1 and 2*T1 at least
    assert all(later > earlier * 1.5 for earlier, later in zip(gaps, gaps[1:], strict=False))


def test_lost_ack_makes_the_uas_retransmit_its_200_until_the_ack_comes() -> None:
    async def job(uas_port: int, uas: Uas, peer: RawPeer) -> None:
        invite = (
            f"INVITE sip:rig-uas@{UAS_HOST}:{uas_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PEER_HOST};branch=z9hG4bKlost\r\n"
            "From: <sip:p@h>;tag=p1\r\nTo: <sip:u@h>\r\nCall-ID: lost-ack\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:p@{PEER_HOST}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        peer.send(invite, (UAS_HOST, uas_port))
        first, _ = await peer.next("INVITE")
        while first.status != 200:
            first, _ = await peer.next("INVITE")
        again, _ = await peer.next("INVITE")  # no ACK sent: the 200 comes back
        assert (again.status, again.to_tag) == (200, first.to_tag)
        ack = invite.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
        ack = ack.replace(b"To: <sip:u@h>", f"To: <sip:u@h>;tag={first.to_tag}".encode())
        peer.send(ack, (UAS_HOST, uas_port))
        bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"1 ACK", b"2 BYE")
        bye = bye.replace(b"z9hG4bKlost", b"z9hG4bKbye")
        peer.send(bye, (UAS_HOST, uas_port))
        ok, _ = await peer.next("BYE")
        assert ok.status == 200
        peer.send(bye, (UAS_HOST, uas_port))  # a retransmitted BYE gets the same 200
        ok_again, _ = await peer.next("BYE")
        assert ok_again.status == 200
        assert (uas.counts.completed, uas.counts.failed) == (1, 0)

    async def main() -> None:
        port = free_port(UAS_HOST)
        async with Uas((UAS_HOST, port), FAST) as uas, raw_peer(PEER_HOST) as (peer, _):
            await job(port, uas, peer)

    run(main())


@pytest.mark.parametrize(("outcome", "status"), [("answered", 200), ("busy", 486)])
def test_a_retransmitted_invite_gets_the_same_final_and_makes_no_second_call(
    outcome: str, status: int
) -> None:
    async def main() -> None:
        port = free_port(UAS_HOST)
        # T1 far beyond the test: any second final is the answer to the second INVITE
        slow = SipTimers(t1=10.0, t2=10.0, timeout=20.0)
        async with Uas((UAS_HOST, port), slow) as uas, raw_peer(PEER_HOST) as (peer, _):
            invite = (
                f"INVITE sip:u@{UAS_HOST}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {PEER_HOST};branch=z9hG4bKre\r\n"
                "From: <sip:p@h>;tag=p1\r\nTo: <sip:u@h>\r\nCall-ID: re-invite\r\n"
                f"CSeq: 1 INVITE\r\nX-Rig-Outcome: {outcome}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            peer.send(invite, (UAS_HOST, port))
            first, _ = await peer.next("INVITE")
            while first.status < 200:
                first, _ = await peer.next("INVITE")
            peer.send(invite, (UAS_HOST, port))  # as if the final had been lost
            again, _ = await peer.next("INVITE")
            assert (again.status, again.to_tag) == (status, first.to_tag)
            assert again.headers == first.headers
            assert (uas.counts.invites, uas.active) == (1, 1)

    run(main())


def test_uas_rejects_an_unknown_outcome_and_answers_stray_requests() -> None:
    async def main() -> None:
        port = free_port(UAS_HOST)
        async with Uas((UAS_HOST, port), FAST) as uas, raw_peer(PEER_HOST) as (peer, _):
            head = (
                f"Via: SIP/2.0/UDP {PEER_HOST};branch=z9hG4bKs\r\nFrom: <sip:p@h>;tag=p\r\n"
                "To: <sip:u@h>\r\nCall-ID: stray\r\n"
            )
            peer.send(f"INVITE sip:u@h SIP/2.0\r\n{head}CSeq: 1 INVITE\r\n"
                      "X-Rig-Outcome: maybe\r\n\r\n".encode(), (UAS_HOST, port))
            rejected, _ = await peer.next("INVITE")
            assert rejected.status == 400 and "maybe" in rejected.reason
            bye = f"BYE sip:u@h SIP/2.0\r\n{head}CSeq: 2 BYE\r\n\r\n"
            peer.send(bye.encode(), (UAS_HOST, port))
            assert (await peer.next("BYE"))[0].status == 481
            peer.send(f"OPTIONS sip:u@h SIP/2.0\r\n{head}CSeq: 3 OPTIONS\r\n\r\n".encode(),
                      (UAS_HOST, port))
            assert (await peer.next("OPTIONS"))[0].status == 501
            assert (uas.counts.invites, uas.counts.failed) == (1, 1)

    run(main())


def test_in_dialog_requests_follow_the_record_route() -> None:
    """ACK and BYE go to the Record-Route hop (a proxy), with Route, to the Contact URI."""

    async def main() -> None:
        async with raw_peer(UAS_HOST) as (uas, uas_port), raw_peer(PEER_HOST) as (
            proxy, proxy_port
        ), Uac((UAC_HOST, free_port(UAC_HOST)), (UAS_HOST, uas_port), timers=FAST) as uac:
            call = asyncio.ensure_future(uac.call(CallSpec(hold=0.01)))
            invite, addr = await uas.next("INVITE")
            ok = build_response(invite, 200, "u1", f"sip:callee@{UAS_HOST}:{uas_port}")
            record_route = f"Record-Route: <sip:{PEER_HOST}:{proxy_port};lr>\r\nTo:"
            ok = ok.replace(b"To:", record_route.encode())
            uas.send(ok, addr)
            ack, _ = await proxy.next("ACK")
            bye, bye_from = await proxy.next("BYE")
            for request in (ack, bye):
                assert request.uri == f"sip:callee@{UAS_HOST}:{uas_port}"
                assert request.header_values("route") == [f"<sip:{PEER_HOST}:{proxy_port};lr>"]
                assert request.to_tag == "u1"
            proxy.send(build_response(bye, 200), bye_from)
            result = await call
            assert result.completed, result.reason

    run(main())


@pytest.mark.parametrize(("hop", "shown"), [
    ("198.51.100.9:5060", "198.51.100.9:5060"),
    ("proxy.example.com:5060", "'proxy.example.com':5060"),
])
def test_a_foreign_record_route_is_refused_before_the_ack_is_sent(hop: str, shown: str) -> None:
    async def main() -> None:
        async with raw_peer(UAS_HOST) as (uas, uas_port), Uac(
            (UAC_HOST, free_port(UAC_HOST)), (UAS_HOST, uas_port), timers=FAST
        ) as uac:
            call = asyncio.ensure_future(uac.call(CallSpec(hold=0.01)))
            invite, addr = await uas.next("INVITE")
            ok = build_response(invite, 200, "u1", f"sip:callee@{UAS_HOST}:{uas_port}")
            uas.send(ok.replace(b"To:", f"Record-Route: <sip:{hop};lr>\r\nTo:".encode()), addr)
            with pytest.raises(UnsafeDestination) as caught:
                await call
            assert str(caught.value).startswith(
                f"refusing to send to {shown} (SIP Record-Route of the 2xx to INVITE): not ")

    run(main())


def test_the_uas_reports_a_bye_hop_the_guard_refused() -> None:
    refused: list[UnsafeDestination] = []

    async def main() -> None:
        async with raw_peer(UAC_HOST) as (uac, uac_port), Uas(
            (UAS_HOST, free_port(UAS_HOST)), FAST, on_refused=refused.append
        ) as uas:
            leg = Leg(call_id="rr1", local_uri=f"sip:a@{UAC_HOST}:{uac_port}", local_tag="t1",
                      remote_uri=f"sip:b@{uas.local[0]}:{uas.local[1]}", remote_tag="",
                      target=f"sip:b@{uas.local[0]}:{uas.local[1]}",
                      contact=f"sip:a@{UAC_HOST}:{uac_port}", sent_by=f"{UAC_HOST}:{uac_port}")
            invite = build_request(leg, "INVITE", 1, "z9hG4bKrr1", extra=(
                (RIG_HEADER, format_directive(Directive("answered", "uas", 0.01))),
                ("Record-Route", "<sip:192.0.2.44:5060;lr>")))
            uac.send(invite, uas.local)
            ok, _ = await uac.next("INVITE")  # the 200 goes back to the INVITE's source
            acked = replace(leg, remote_tag=ok.to_tag)
            uac.send(build_request(acked, "ACK", 1, "z9hG4bKrr1ack"), uas.local)
            deadline = asyncio.get_running_loop().time() + 2.0
            while not refused and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            uas.close()

    run(main())
    assert [str(r) for r in refused][:1] == [
        "refusing to send to 192.0.2.44:5060 (SIP Record-Route of the INVITE): not loopback, "
        "not the rig's own and not in targets.allow"]


def test_end_calls_cuts_long_holds_short() -> None:
    async def job(uac: Uac, uas: Uas) -> list[CallResult]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        calls = [asyncio.ensure_future(uac.call(CallSpec(hold=30.0, hangup=h)))
                 for h in ("uac", "uas", "uac")]
        calls.append(asyncio.ensure_future(uac.call(CallSpec("no_answer", no_answer_timeout=30))))
        await asyncio.sleep(0.2)
        uac.end_calls()
        results = await asyncio.gather(*calls)
        assert loop.time() - started < 2.0
        return results

    results = run(with_pair(job))
    assert [r.completed for r in results] == [True] * 4


# ---- interop with SIPp (sip-tester), on loopback ----------------------------------------

SIPP = shutil.which("sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (sip-tester) is not installed")
SIPP_HOST = block_host("3.5")


@asynccontextmanager
async def sipp(args: list[str], folder: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """SIPp with a bounded global timeout, killed on the way out whatever happened."""
    assert SIPP is not None
    process = await asyncio.create_subprocess_exec(
        SIPP, *args, "-timeout", "15s", "-nostdin", "-trace_screen",
        "-screen_file", str(folder / "screen.log"), cwd=folder,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def sipp_successful_calls(screen: Path) -> int:
    """The cumulative 'Successful call' count of SIPp's last statistics screen."""
    lines = [line for line in screen.read_text().splitlines() if "Successful call" in line]
    return int(lines[-1].split("|")[-1].strip())


@pytest.mark.e2e
@needs_sipp
def test_the_uas_answers_sipps_default_uac_scenario(tmp_path: Path) -> None:
    calls = 20

    async def main() -> tuple[int | None, UasCounts]:
        port = free_port(UAS_HOST)
        async with Uas((UAS_HOST, port), FAST) as uas, sipp(
            ["-sn", "uac", "-i", SIPP_HOST, "-p", str(free_port(SIPP_HOST)),
             f"{UAS_HOST}:{port}", "-m", str(calls), "-r", "50"], tmp_path,
        ) as process:
            await asyncio.wait_for(process.wait(), 20)
            return process.returncode, uas.counts

    code, counts = run(main())
    assert code == 0
    assert sipp_successful_calls(tmp_path / "screen.log") == calls
    assert (counts.invites, counts.completed, counts.failed) == (calls, calls, 0)


@pytest.mark.e2e
@needs_sipp
def test_the_uac_completes_calls_against_sipps_default_uas_scenario(tmp_path: Path) -> None:
    calls = 20

    async def main() -> tuple[int | None, list[CallResult]]:
        port = free_port(SIPP_HOST)
        async with sipp(["-sn", "uas", "-i", SIPP_HOST, "-p", str(port), "-m", str(calls)],
                        tmp_path) as process:
            await asyncio.sleep(0.3)  # SIPp binds its socket after start-up
            async with Uac((UAC_HOST, free_port(UAC_HOST)), (SIPP_HOST, port)) as uac:
                results = await asyncio.gather(
                    *(uac.call(CallSpec(hold=0.05), sdp="v=0\r\n") for _ in range(calls)))
            await asyncio.wait_for(process.wait(), 20)
            return process.returncode, results

    code, results = run(main())
    assert [r.reason for r in results if not r.completed] == []
    assert code == 0
    assert sipp_successful_calls(tmp_path / "screen.log") == calls


SHIM_HOST = block_host("3.6")
LOSS = 0.05  # of the datagrams, each way, through the shim


class LossyShim(asyncio.DatagramProtocol):
    """A UDP hop between a client and a server that drops a share of datagrams both ways.

    The client is whoever last sent from elsewhere than the server; what the server sends
    goes back to it. The drops are drawn from a seeded generator, so a run is repeatable
    up to the order in which datagrams arrive.
    """

    def __init__(self, server: tuple[str, int], loss: float, seed: int) -> None:
        self.server, self.loss = server, loss
        self.random = random.Random(seed)
        self.client: tuple[str, int] | None = None
        self.transport: Any = None
        self.passed = self.dropped = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        target: tuple[str, int] | None = self.server
        if addr == self.server:
            target = self.client
        else:
            self.client = addr
        if target is None:
            return
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.passed += 1
        self.transport.sendto(data, target)


# 1,000 calls at 500/s take 2 s; a call whose messages are lost twice takes a few more, and
# SIPp on a busy 2-core machine falls behind its rate: a bound, not a measurement.
LOSSY_BOUND = 50.0
LOSSY_FAILURES_ALLOWED = 2


@asynccontextmanager
async def lossy_shim(server: tuple[str, int], loss: float, seed: int = 11) -> AsyncIterator[
        tuple[LossyShim, tuple[str, int]]]:
    address = (SHIM_HOST, free_port(SHIM_HOST))
    transport, shim = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: LossyShim(server, loss, seed), local_addr=address)
    try:
        yield shim, address
    finally:
        transport.close()


def uac_scenario_matching_the_bye_response(folder: Path) -> Path:
    """SIPp's own uac scenario, but the 200 it waits for after BYE must answer the BYE.

    The default takes any 200: when its ACK and BYE are both lost, the UAS's retransmitted
    200 to INVITE ends SIPp's call as a success and the UAS never hears of it again.
    """
    assert SIPP is not None
    # -sd prints the scenario and exits non-zero (99), as SIPp does after any dump
    default = subprocess.run([SIPP, "-sd", "uac"], capture_output=True, text=True,
                             check=False).stdout
    bye_send, bye_response = '<send retrans="500">', '<recv response="200" crlf="true">'
    head, sep, bye = default.rpartition(bye_send)  # the last send with retrans is the BYE
    assert sep and bye.count(bye_response) == 1, "SIPp's default uac scenario has changed"
    bye = bye.replace(bye_response, '<recv response="200" crlf="true" response_txn="bye">')
    path = folder / "uac-bye-txn.xml"
    path.write_text(head + '<send retrans="500" start_txn="bye">' + bye)
    return path


@pytest.mark.e2e
@needs_sipp
def test_sipps_uac_completes_every_call_with_the_uas_through_5_percent_loss(
    tmp_path: Path,
) -> None:
    calls, rate = 1000, 500
    scenario = uac_scenario_matching_the_bye_response(tmp_path)

    async def main() -> tuple[int | None, UasCounts, LossyShim]:
        port = free_port(UAS_HOST)
        async with Uas((UAS_HOST, port), FAST) as uas, lossy_shim(
            (UAS_HOST, port), LOSS
        ) as (shim, (shim_host, shim_port)), sipp(
            ["-sf", str(scenario), "-i", SIPP_HOST, "-p", str(free_port(SIPP_HOST)),
             f"{shim_host}:{shim_port}", "-m", str(calls), "-r", str(rate), "-l", "300",
             # a 200 to INVITE repeated after the BYE went (its ACK was lost) is not the
             # BYE's; no reason to abort: the BYE's own retransmission settles the call
             "-default_behaviors", "all,-abortunexp"],
            tmp_path,
        ) as process:
            await asyncio.wait_for(process.wait(), LOSSY_BOUND)
            await until_idle(uas)
            return process.returncode, uas.counts, shim

    code, counts, shim = run(main(), LOSSY_BOUND + 10)
    assert shim.dropped > 0.02 * (shim.passed + shim.dropped)  # the loss did happen
    # Random loss: one call in a few thousand has been seen to fail on SIPp's side (cause
    # not yet known, see the note); more than two in 1,000 is a defect, not bad luck.
    succeeded = sipp_successful_calls(tmp_path / "screen.log")
    assert succeeded >= calls - LOSSY_FAILURES_ALLOWED
    assert code == (0 if succeeded == calls else 1)  # SIPp exits 1 when a call failed
    assert counts.invites == calls
    assert counts.completed >= calls - LOSSY_FAILURES_ALLOWED


@pytest.mark.e2e
@needs_sipp
def test_the_uac_completes_every_call_with_sipps_uas_through_5_percent_loss(
    tmp_path: Path,
) -> None:
    calls, rate = 1000, 500

    async def main() -> tuple[int | None, list[CallResult], LossyShim]:
        port = free_port(SIPP_HOST)
        # an INVITE repeated after its 180 and 200 were lost is no reason for SIPp to abort
        # (its default): the 200's own retransmission gets through
        async with sipp(["-sn", "uas", "-i", SIPP_HOST, "-p", str(port), "-m", str(calls),
                         "-default_behaviors", "all,-abortunexp"],
                        tmp_path) as process, lossy_shim((SIPP_HOST, port), LOSS) as (
                shim, shim_address):
            await asyncio.sleep(0.3)  # SIPp binds its socket after start-up
            loop = asyncio.get_running_loop()
            async with Uac((UAC_HOST, free_port(UAC_HOST)), shim_address,
                           timers=SipTimers(t1=0.5, t2=4.0, timeout=8.0)) as uac:
                started, placed = loop.time(), []
                for i in range(calls):  # paced at `rate`, as SIPp's -r would
                    await asyncio.sleep(max(0.0, started + i / rate - loop.time()))
                    placed.append(asyncio.ensure_future(uac.call(CallSpec(hold=0.05))))
                results = await asyncio.gather(*placed)
            await asyncio.wait_for(process.wait(), LOSSY_BOUND)
            return process.returncode, results, shim

    code, results, shim = run(main(), LOSSY_BOUND + 10)
    assert shim.dropped > 0.02 * (shim.passed + shim.dropped)
    assert [r.reason for r in results if not r.completed] == []
    assert code == 0
    assert sipp_successful_calls(tmp_path / "screen.log") == calls
