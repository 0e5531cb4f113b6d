"""The rig's SIP user agents over asyncio UDP: a UAC that places calls and a UAS that answers.

The UAC runs one coroutine per call; the UAS is a callback state machine (no task per
call), because it only reacts. Retransmissions and give-ups are the RFC 3261 transaction
machines of rig.wire.transaction, bounded by `SipTimers.timeout`, so every call ends.
The UAS picks the outcome of each call from the X-Rig-Outcome header the UAC sets; without
it (SIPp, a softphone) it answers.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from rig.topology.destinations import LOOPBACK_ONLY, Destinations, UnsafeDestination
from rig.wire.sip import (
    RIG_HEADER,
    Directive,
    IdSource,
    Leg,
    SipMessage,
    build_request,
    build_response,
    format_directive,
    host_port,
    parse_directive,
    parse_message,
    uri_of,
)
from rig.wire.transaction import (
    RFC_TIMERS,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    SipTimers,
    State,
)

Address = tuple[str, int]
REPLY_ORIGIN = "the source of a SIP message"  # responses go back where the request came from


class OfferRefused(ValueError):
    """Raised by an offer hook: the callee cannot use this offer (the UAS answers 488)."""


EXPECTED_FINAL = {"answered": 200, "busy": 486, "cancel": 487, "no_answer": 487, "vanish": 200}
# vanish: the callee notices the silent caller this long after the caller went (RTP timeout)
VANISH_NOTICE_S = 1.0
VANISHED_REMEMBERED = 100_000  # call-ids whose requests are dropped unanswered
SOCKET_BUFFER = 4 * 1024 * 1024
READ_BATCH = 64
REFUSED = "refused"  # the outcome of an INVITE answered 488 for its offer
MAX_DATAGRAM = 65535
AnsweredHook = Callable[[str, str], Awaitable[None]]  # (to_tag, answer sdp)


@dataclass(frozen=True)
class CallSpec:
    """One call the UAC places: the outcome to ask for and its timings."""

    outcome: str = "answered"
    hold: float = 0.0
    hangup: str = "uac"  # "uas": the UAS sends BYE after `hold`
    no_answer_timeout: float = 2.0  # no_answer: CANCEL after this long without an answer
    cancel_after: float = 0.0  # cancel: CANCEL this long after the first provisional


@dataclass(frozen=True)
class CallResult:
    call_id: str
    outcome: str
    completed: bool
    reason: str = ""  # why a call failed
    status: int = 0  # final response to the INVITE, 0 if none came


@dataclass
class UasCounts:
    invites: int = 0
    completed: int = 0
    failed: int = 0
    refused: int = 0  # INVITEs whose offer the callee cannot use (488), e.g. hostile ones
    outcomes: dict[str, int] = field(default_factory=dict)


class _Endpoint:
    """One UDP socket read straight from the event loop's selector.

    Each readiness event drains up to READ_BATCH datagrams (asyncio's datagram transport
    reads one per loop turn, which caps the call rate); each datagram is parsed and handed
    on. Malformed datagrams, ICMP errors and full send buffers are counted, not raised:
    retransmission covers a lost datagram and a transaction timeout a dead peer.
    """

    def __init__(self, sock: socket.socket, on_message: Callable[[SipMessage, Address], None],
                 destinations: Destinations = LOOPBACK_ONLY):
        self.sock = sock
        self.on_message = on_message
        self.destinations = destinations
        self.loop = asyncio.get_running_loop()
        self.malformed = self.errors = self.dropped = 0
        self._outbox: list[tuple[bytes, Address]] = []
        self.loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        receive, handle = self.sock.recvfrom, self.on_message
        for _ in range(READ_BATCH):
            try:
                data, addr = receive(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1  # e.g. ICMP port unreachable from a peer that went away
                return
            try:
                message = parse_message(data)
            except ValueError:
                self.malformed += 1
                continue
            handle(message, addr)

    def send(self, data: bytes, addr: Address, origin: str) -> None:
        """Queue a datagram; the queue goes out once this turn of the event loop is done.

        `origin` says where `addr` came from; an address the destination guard refuses
        raises UnsafeDestination and nothing is queued. On loopback each sendto wakes the
        peer at once; sending a turn's datagrams together lets the peer take them in one
        batch instead of one wake-up each.
        """
        self.destinations.check(addr[0], addr[1], origin)
        if not self._outbox:
            self.loop.call_soon(self._flush)
        self._outbox.append((data, addr))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        send = self.sock.sendto
        for data, addr in outbox:
            try:
                send(data, addr)
            except (BlockingIOError, InterruptedError):
                self.dropped += 1
            except OSError:
                self.errors += 1

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._flush()
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def open_endpoint(
    local: Address, on_message: Callable[[SipMessage, Address], None],
    destinations: Destinations = LOOPBACK_ONLY,
) -> _Endpoint:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(local)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind SIP UDP socket {local[0]}:{local[1]}: {exc}") from exc
    return _Endpoint(sock, on_message, destinations)


class _Mailbox:
    """Messages for one call, and a way for its coroutine to wait for the next (or a wake-up)."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[tuple[SipMessage, Address]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, item: tuple[SipMessage, Address]) -> None:
        self.items.append(item)
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self, timeout: float) -> tuple[SipMessage, Address] | None:
        """The next message, or None after `timeout` seconds or a wake-up."""
        if not self.items:
            if timeout <= 0:
                return None
            loop = asyncio.get_running_loop()
            self.waiter = waiter = loop.create_future()
            handle = loop.call_later(timeout, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self.waiter = None
            if not self.items:
                return None
        return self.items.popleft()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Uac:
    """Places calls to a UAS (directly, or through `proxy`) from one local UDP socket."""

    def __init__(
        self,
        local: Address,
        remote: Address,
        proxy: Address | None = None,
        timers: SipTimers = RFC_TIMERS,
        destinations: Destinations = LOOPBACK_ONLY,
    ) -> None:
        self.local, self.remote, self.proxy, self.timers = local, remote, proxy, timers
        self.destinations = destinations
        self._ids = IdSource(f"c{os.getpid():x}{id(self) & 0xFFFF:x}.")
        self._calls: dict[str, _Mailbox] = {}
        self._endpoint: _Endpoint | None = None
        self._ending = False
        self._vanished: OrderedDict[str, None] = OrderedDict()
        self.stray = 0

    async def start(self) -> None:
        self._endpoint = await open_endpoint(self.local, self._on_message, self.destinations)

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
        self._endpoint = None

    async def __aenter__(self) -> Uac:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> int:
        return len(self._calls)

    def end_calls(self) -> None:
        """Hang up (BYE) or CANCEL every call now, and every call placed from now on."""
        self._ending = True
        for box in self._calls.values():
            box.wake()

    def vanish(self, call_id: str) -> None:
        """From now on, act as a caller that is gone: requests of this call get no answer."""
        self._vanished[call_id] = None
        while len(self._vanished) > VANISHED_REMEMBERED:
            self._vanished.popitem(last=False)

    def _on_message(self, message: SipMessage, addr: Address) -> None:
        box = self._calls.get(message.call_id)
        if box is not None:
            box.put((message, addr))
        elif message.call_id in self._vanished:
            self.stray += 1
        elif message.is_request and message.method != "ACK":
            self._send(build_response(message, 481), addr)
        else:
            self.stray += 1  # a late retransmission of a call that has ended

    def _send(self, data: bytes, addr: Address, origin: str = REPLY_ORIGIN) -> None:
        if self._endpoint is None:
            raise RuntimeError("UAC is not started")
        self._endpoint.send(data, addr, origin)

    def _send_on(self, leg: Leg, data: bytes) -> None:
        """Send a request of `leg` to its next hop: the first Record-Route, else the proxy,
        else the UAS."""
        if leg.routes:
            self._send(data, host_port(leg.routes[0]), "SIP Record-Route of the 2xx to INVITE")
        elif self.proxy is not None:
            self._send(data, self.proxy, "the SIP proxy")
        else:
            self._send(data, self.remote, "the UAS")

    def _first_leg(self, call_id: str, from_tag: str) -> Leg:
        host, port = self.local
        rhost, rport = self.remote
        return Leg(
            call_id=call_id,
            local_uri=f"sip:rig-uac@{host}:{port}",
            local_tag=from_tag,
            remote_uri=f"sip:rig-uas@{rhost}:{rport}",
            remote_tag="",
            target=f"sip:rig-uas@{rhost}:{rport}",
            contact=f"sip:rig-uac@{host}:{port}",
            sent_by=f"{host}:{port}",
        )

    def new_call_id(self) -> str:
        return self._ids.call_id(self.local[0])

    def new_tag(self) -> str:
        return self._ids.tag()

    async def call(
        self,
        spec: CallSpec,
        sdp: str = "",
        on_answered: AnsweredHook | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
    ) -> CallResult:
        """Place one call and see it to its end; never raises for a SIP failure.

        `on_answered(to_tag, answer_sdp)` runs after the ACK, before the hold (media starts
        there). `call_id` and `from_tag` (from new_call_id/new_tag) let the caller name the
        call before it exists, e.g. for a media offer.
        """
        leg = self._first_leg(call_id or self.new_call_id(), from_tag or self.new_tag())
        box = _Mailbox()
        self._calls[leg.call_id] = box
        try:
            return await _UacCall(self, leg, spec, box).run(sdp, on_answered)
        finally:
            del self._calls[leg.call_id]


class _UacCall:
    """The flow of one UAC call: INVITE transaction, then ACK, hold and BYE, or CANCEL."""

    def __init__(self, uac: Uac, leg: Leg, spec: CallSpec, box: _Mailbox) -> None:
        self.uac, self.leg, self.spec, self.box = uac, leg, spec, box
        self.timers = uac.timers
        self.loop = asyncio.get_running_loop()
        self.ack: bytes = b""

    def result(self, completed: bool, reason: str = "", status: int = 0) -> CallResult:
        return CallResult(self.leg.call_id, self.spec.outcome, completed, reason, status)

    async def run(self, sdp: str, on_answered: AnsweredHook | None) -> CallResult:
        spec = self.spec
        directive = Directive(spec.outcome, spec.hangup, spec.hold)
        if spec.outcome == "vanish":  # the callee hangs up once it notices the silence
            directive = Directive("vanish", "uas", spec.hold + VANISH_NOTICE_S)
        branch = self.uac._ids.branch()
        invite = build_request(self.leg, "INVITE", 1, branch, sdp,
                               extra=((RIG_HEADER, format_directive(directive)),))
        tx = ClientInvite(invite, self.timers, self.loop.time(), ring_limit=self.timers.timeout)
        final = await self.invite_transaction(tx, branch)
        if final is None:
            return self.result(False, "no final response to INVITE")
        status = final.status
        if status >= 300:
            self.ack_failure(tx, final, branch)
            if status == EXPECTED_FINAL[spec.outcome]:
                return self.result(True, status=status)
            return self.result(False, f"unexpected {status} to INVITE", status)
        self.confirm(final)
        if spec.outcome not in ("answered", "vanish"):
            await self.bye()
            return self.result(False, f"answered although {spec.outcome} was asked", status)
        if on_answered is not None:
            await on_answered(final.to_tag, final.body)
        return await self.hang_up(status)

    async def invite_transaction(self, tx: ClientInvite, branch: str) -> SipMessage | None:
        """Send the INVITE, let its transaction retransmit, CANCEL when due; the final or None.
        """
        now = self.loop.time()
        cancel_at = math.inf
        if self.spec.outcome == "no_answer":
            cancel_at = now + self.spec.no_answer_timeout
        cancel: ClientNonInvite | None = None
        send = self.uac._send_on
        send(self.leg, tx.request)
        while True:
            now = self.loop.time()
            for due in (tx, cancel):
                if due is not None and now >= due.wake_at:
                    step = due.fire(now)
                    if step.send is not None:
                        send(self.leg, step.send)
                    if step.timed_out and due is tx:
                        return None
            ringing = tx.state is State.PROCEEDING
            if ringing and cancel is None and (now >= cancel_at or self.uac._ending):
                cancel = ClientNonInvite(build_request(self.leg, "CANCEL", 1, branch),
                                         self.timers, now)
                send(self.leg, cancel.request)
            wake = min(tx.wake_at, cancel.wake_at if cancel is not None else math.inf,
                       cancel_at if ringing and cancel is None else math.inf)
            item = await self.box.get(wake - now)
            if item is None:
                continue
            message = item[0]
            if message.is_request or message.branch != branch:
                continue
            now = self.loop.time()
            if message.method == "CANCEL":
                if cancel is not None:
                    cancel.response(message.status, now)  # answered; the INVITE's 487 follows
            elif message.method == "INVITE":
                step = tx.response(message.status, now)
                if step.send is not None:
                    send(self.leg, step.send)
                if not step.deliver:
                    continue
                if message.status >= 200:
                    return message
                if not ringing and self.spec.outcome == "cancel":
                    cancel_at = now + self.spec.cancel_after

    def ack_failure(self, tx: ClientInvite, final: SipMessage, branch: str) -> None:
        """ACK a non-2xx final: same branch as the INVITE, hop by hop."""
        leg = replace(self.leg, remote_tag=final.to_tag)
        self.uac._send_on(self.leg, tx.send_ack(build_request(leg, "ACK", 1, branch)))

    def confirm(self, final: SipMessage) -> None:
        """The dialog from a 2xx: peer tag, Contact, route set; then the ACK (new branch)."""
        contact = final.header("contact")
        routes = tuple(uri_of(v) for v in reversed(final.header_values("record-route")))
        leg = self.leg
        self.leg = Leg(leg.call_id, leg.local_uri, leg.local_tag, leg.remote_uri, final.to_tag,
                       uri_of(contact) if contact else leg.target, leg.contact, leg.sent_by,
                       routes)
        self.ack = build_request(self.leg, "ACK", 1, self.uac._ids.branch())
        self.uac._send_on(self.leg, self.ack)

    async def hang_up(self, status: int) -> CallResult:
        spec = self.spec
        if spec.outcome == "vanish":
            if not await self.wait_for_bye(self.loop.time() + spec.hold):
                self.uac.vanish(self.leg.call_id)  # no BYE; the callee's BYE goes unanswered
            return self.result(True, status=status)
        if spec.hangup == "uas":
            if await self.wait_for_bye(self.loop.time() + spec.hold + self.timers.timeout):
                return self.result(True, status=status)
            if self.uac._ending:
                return self.result(await self.bye(), "", status)
            await self.bye()
            return self.result(False, "no BYE from the UAS", status)
        if await self.wait_for_bye(self.loop.time() + spec.hold):
            return self.result(True, status=status)  # the peer hung up first: fine
        ok = await self.bye()
        return self.result(ok, "" if ok else "BYE not answered with 2xx", status)

    async def wait_for_bye(self, until: float) -> bool:
        """Hold the dialog until `until` (or end_calls); True if the peer sent BYE (answered)."""
        while not self.uac._ending:
            left = until - self.loop.time()
            if left <= 0:
                return False
            item = await self.box.get(left)
            if item is None:
                continue
            message, addr = item
            if message.is_request and message.method == "BYE":
                self.uac._send(build_response(message, 200), addr)
                return True
            if not message.is_request and message.method == "INVITE" and message.status < 300:
                self.uac._send_on(self.leg, self.ack)  # our ACK was lost
        return False

    async def bye(self) -> bool:
        """BYE as a non-INVITE client transaction; True on a 2xx."""
        branch = self.uac._ids.branch()
        data = build_request(self.leg, "BYE", 2, branch)
        response = await non_invite_transaction(
            self.box, lambda datagram: self.uac._send_on(self.leg, datagram), data, branch,
            "BYE", self.timers, on_other=self.answer_in_dialog)
        return response is not None and 200 <= response.status < 300

    def answer_in_dialog(self, message: SipMessage, addr: Address) -> None:
        if message.is_request and message.method == "BYE":
            self.uac._send(build_response(message, 200), addr)  # BYEs crossed


async def non_invite_transaction(
    box: _Mailbox,
    send: Callable[[bytes], None],
    request: bytes,
    branch: str,
    method: str,
    timers: SipTimers,
    on_other: Callable[[SipMessage, Address], None] | None = None,
) -> SipMessage | None:
    """Send, let the transaction retransmit (Timer E) until a final response; None when it
    gives up (Timer F)."""
    loop = asyncio.get_running_loop()
    tx = ClientNonInvite(request, timers, loop.time())
    send(request)
    while True:
        now = loop.time()
        if now >= tx.wake_at:
            step = tx.fire(now)
            if step.timed_out:
                return None
            if step.send is not None:
                send(step.send)
        item = await box.get(tx.wake_at - now)
        if item is None:
            continue
        message, addr = item
        if not message.is_request and message.branch == branch and message.method == method:
            if tx.response(message.status, loop.time()).deliver and message.status >= 200:
                return message
        elif on_other is not None:
            on_other(message, addr)


OfferHook = Callable[[str, str], str]  # (call_id, offer sdp) -> answer sdp
EndHook = Callable[[str], None]  # call_id: the call is over (media may be released)


class _UasCall:
    __slots__ = ("invite", "addr", "to_tag", "directive", "tx", "state", "timer")

    def __init__(
        self, invite: SipMessage, addr: Address, to_tag: str, directive: Directive,
        tx: ServerInvite,
    ) -> None:
        self.invite, self.addr, self.to_tag, self.directive = invite, addr, to_tag, directive
        self.tx = tx  # the INVITE's server transaction: its responses and their timers
        self.state = "ringing"  # -> answered | rejected -> confirmed -> (removed)
        self.timer: asyncio.TimerHandle | None = None  # ring limit, retransmission or hold


class Uas:
    """Answers calls on one local UDP socket, with the outcome each INVITE asks for.

    `on_offer(call_id, offer)` returns the answer SDP (the driver opens RTP there);
    `on_end(call_id)` runs once when a call that got an answer SDP is over.
    """

    def __init__(
        self,
        local: Address,
        timers: SipTimers = RFC_TIMERS,
        on_offer: OfferHook | None = None,
        on_end: EndHook | None = None,
        ring_limit: float = 60.0,
        destinations: Destinations = LOOPBACK_ONLY,
        on_refused: Callable[[UnsafeDestination], None] | None = None,
    ) -> None:
        self.local, self.timers = local, timers
        self.destinations, self.on_refused = destinations, on_refused
        self.on_offer, self.on_end, self.ring_limit = on_offer, on_end, ring_limit
        self.contact = f"sip:rig-uas@{local[0]}:{local[1]}"
        self.counts = UasCounts()
        self._ids = IdSource(f"s{os.getpid():x}{id(self) & 0xFFFF:x}.")
        self._calls: dict[str, _UasCall] = {}
        # answers to retransmitted BYEs, kept for `timeout` (Timer J)
        self._ended: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._byes: dict[str, _Mailbox] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoint: _Endpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ending = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._endpoint = await open_endpoint(self.local, self._on_message, self.destinations)

    def close(self) -> None:
        for call in self._calls.values():
            if call.timer is not None:
                call.timer.cancel()
        for task in self._tasks:
            task.cancel()
        if self._endpoint is not None:
            self._endpoint.close()
        self._endpoint = None

    async def __aenter__(self) -> Uas:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> int:
        return len(self._calls)

    def end_calls(self) -> None:
        """Send now the BYEs this side was going to send later, and from now on hang up at
        the ACK (the load is over)."""
        self._ending = True
        for call in list(self._calls.values()):
            if call.state == "confirmed" and call.timer is not None:
                call.timer.cancel()
                self._start_bye(call)

    def _send(self, data: bytes, addr: Address, origin: str = REPLY_ORIGIN) -> None:
        """Send, or drop a datagram to a refused address and say so through `on_refused`
        (this runs in the socket's read callback, where raising would help no one)."""
        if self._endpoint is None:
            return
        try:
            self._endpoint.send(data, addr, origin)
        except UnsafeDestination as refused:
            if self.on_refused is None:
                raise
            self.on_refused(refused)

    def _on_message(self, message: SipMessage, addr: Address) -> None:
        if not message.is_request:
            box = self._byes.get(message.call_id)
            if box is not None:
                box.put((message, addr))
            return
        handler = self._handlers.get(message.method)
        if handler is not None:
            handler(self, message, addr)
        elif message.method != "ACK":
            self._send(build_response(message, 501, reason="Not Implemented"), addr)

    def _on_invite(self, invite: SipMessage, addr: Address) -> None:
        call = self._calls.get(invite.call_id)
        if call is not None:
            step = call.tx.request("INVITE", self._now())  # a retransmission
            if step.send is not None:
                self._send(step.send, addr)
            return
        if invite.to_tag:  # a re-INVITE: keep the session as it is
            self._send(build_response(invite, 488, reason="Not Acceptable Here"), addr)
            return
        self.counts.invites += 1
        try:
            directive = parse_directive(invite.header(RIG_HEADER))
        except ValueError as exc:
            self.counts.failed += 1
            self._send(build_response(invite, 400, reason=str(exc)[:80]), addr)
            return
        call = _UasCall(invite, addr, self._ids.tag(), directive,
                        ServerInvite(self.timers, self._now()))
        self._calls[invite.call_id] = call
        outcome = directive.outcome
        self.counts.outcomes[outcome] = self.counts.outcomes.get(outcome, 0) + 1
        if outcome == "busy":
            self._final(call, 486)
        elif outcome in ("answered", "vanish"):
            self._respond(call, 180)
            try:
                answer = self.on_offer(invite.call_id, invite.body) if self.on_offer else ""
            except OfferRefused as exc:
                self._refuse(call, str(exc))
                return
            self._final(call, 200, answer)
        else:
            self._respond(call, 100)
            self._respond(call, 180)
            call.timer = self._later(self.ring_limit, self._ring_limit_reached, call)

    def _refuse(self, call: _UasCall, problem: str) -> None:
        """488 to an offer the hook cannot use, retransmitted until the ACK like any final;
        the call counts as neither completed nor failed."""
        self.counts.refused += 1
        call.directive = replace(call.directive, outcome=REFUSED)
        self._final(call, 488, reason=f"Not Acceptable Here: {problem}"[:100])

    def _respond(self, call: _UasCall, status: int, body: str = "", reason: str = "") -> None:
        response = build_response(call.invite, status, call.to_tag, self.contact, body,
                                  reason)
        self._send(call.tx.respond(response, status, self._now()), call.addr)

    def _final(self, call: _UasCall, status: int, body: str = "", reason: str = "") -> None:
        """A final response, retransmitted by its transaction (Timer G) until the ACK."""
        self._respond(call, status, body, reason)
        call.state = "answered" if status < 300 else "rejected"
        if call.timer is not None:
            call.timer.cancel()
        self._retransmit_at_wake(call)

    def _retransmit_at_wake(self, call: _UasCall) -> None:
        call.timer = self._later(call.tx.wake_at - self._now(), self._retransmit_final, call)

    def _retransmit_final(self, call: _UasCall) -> None:
        step = call.tx.fire(self._now())
        if step.timed_out:
            self._finish(call, completed=False)  # no ACK came (Timer H)
            return
        if step.send is not None:
            self._send(step.send, call.addr)
        self._retransmit_at_wake(call)

    def _ring_limit_reached(self, call: _UasCall) -> None:
        self.counts.failed += 1  # counted here; the 480 below only ends the transaction
        call.directive = replace(call.directive, outcome="expired")
        self._final(call, 480, "")

    def _on_ack(self, ack: SipMessage, addr: Address) -> None:
        call = self._calls.get(ack.call_id)
        if call is None or not call.tx.request("ACK", self._now()).deliver:
            return
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if call.state == "rejected":
            self._finish(call, completed=call.directive.outcome != "expired")
            return
        call.state = "confirmed"
        if call.directive.hangup == "uas":
            hold = 0.0 if self._ending else call.directive.hold
            call.timer = self._later(hold, self._start_bye, call)

    def _on_cancel(self, cancel: SipMessage, addr: Address) -> None:
        call = self._calls.get(cancel.call_id)
        if call is None:
            self._send(build_response(cancel, 481), addr)
            return
        self._send(build_response(cancel, 200, call.to_tag), addr)
        if call.state == "ringing":
            self._final(call, 487)

    def _on_bye(self, bye: SipMessage, addr: Address) -> None:
        call = self._calls.get(bye.call_id)
        if call is None:
            ended = self._ended.get(bye.call_id)
            self._send(ended[1] if ended else build_response(bye, 481), addr)
            return
        ok = build_response(bye, 200)
        self._send(ok, addr)
        self._remember_end(bye.call_id, ok)
        self._finish(call, completed=call.state in ("answered", "confirmed"))

    _handlers: dict[str, Callable[[Uas, SipMessage, Address], None]] = {
        "INVITE": _on_invite,
        "ACK": _on_ack,
        "CANCEL": _on_cancel,
        "BYE": _on_bye,
    }

    def _finish(self, call: _UasCall, completed: bool) -> None:
        if self._calls.pop(call.invite.call_id, None) is None:
            return
        if call.timer is not None:
            call.timer.cancel()
        if call.directive.outcome not in ("expired", REFUSED):
            if completed:
                self.counts.completed += 1
            else:
                self.counts.failed += 1
        if self.on_end is not None and call.directive.outcome in ("answered", "vanish"):
            self.on_end(call.invite.call_id)

    def _remember_end(self, call_id: str, response: bytes) -> None:
        now = self._now()
        self._ended[call_id] = (now, response)
        while self._ended:
            first = next(iter(self._ended.values()))
            if now - first[0] < self.timers.timeout:
                break
            self._ended.popitem(last=False)

    def _start_bye(self, call: _UasCall) -> None:
        call.timer = None
        task = asyncio.ensure_future(self._bye(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bye(self, call: _UasCall) -> None:
        invite = call.invite
        contact = invite.header("contact")
        routes = tuple(uri_of(v) for v in invite.header_values("record-route"))
        leg = Leg(
            call_id=invite.call_id,
            local_uri=uri_of(invite.header("to") or ""),
            local_tag=call.to_tag,
            remote_uri=uri_of(invite.header("from") or ""),
            remote_tag=invite.from_tag,
            target=uri_of(contact) if contact else uri_of(invite.header("from") or ""),
            contact=self.contact,
            sent_by=f"{self.local[0]}:{self.local[1]}",
            routes=routes,
        )
        hop, origin = ((host_port(routes[0]), "SIP Record-Route of the INVITE") if routes
                       else (call.addr, "the source of the INVITE"))
        branch = self._ids.branch()
        data = build_request(leg, "BYE", 1, branch)
        box = self._byes[invite.call_id] = _Mailbox()
        try:
            response = await non_invite_transaction(
                box, lambda datagram: self._send(datagram, hop, origin), data, branch, "BYE",
                self.timers)
        finally:
            del self._byes[invite.call_id]
        answered = response is not None and 200 <= response.status < 300
        # A vanished caller cannot answer: the BYE (or the proxy's 408) is all there is.
        self._finish(call, completed=answered or call.directive.outcome == "vanish")

    def _later(
        self, delay: float, fn: Callable[[_UasCall], None], call: _UasCall
    ) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, fn, call)

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()
