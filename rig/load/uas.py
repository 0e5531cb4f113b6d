"""The rig's UAS: answers calls on one UDP socket with the outcome each INVITE asks for.

A callback state machine per call (no task): the INVITE's server transaction retransmits
its final until the ACK, holds and the UAS's own BYE transaction are deadlines in one
timer heap. Only INVITEs are parsed whole (their SDP and X-Rig-Outcome are needed); ACK,
BYE and CANCEL are routed on what `peek` reads, and answered from their raw lines.
The outcome comes from the X-Rig-Outcome header the UAC sets; without it (SIPp, a
softphone) the UAS answers.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from rig.load.callspec import REFUSED, OfferRefused, UasCounts
from rig.load.sipio import Address, Agent, Endpoint, LoopTimers
from rig.topology.destinations import LOOPBACK_ONLY, Destinations, UnsafeDestination
from rig.wire.sip import (
    RIG_HEADER,
    Directive,
    IdSource,
    Leg,
    build_request,
    build_response,
    host_port,
    parse_directive,
    uri_of,
)
from rig.wire.sipfast import (
    Peek,
    ResponseHead,
    Unusual,
    body_of,
    head_end,
    header_value,
    peek,
    response_to,
)
from rig.wire.timerheap import Entry
from rig.wire.transaction import RFC_TIMERS, ClientNonInvite, ServerInvite, SipTimers

REPLY_ORIGIN = "the source of a SIP message"  # responses go back where the request came from
OfferHook = Callable[[str, str], str]  # (call_id, offer sdp) -> answer sdp
EndHook = Callable[[str], None]  # call_id: the call is over (media may be released)


DIRECTIVES_KEPT = 256  # parsed X-Rig-Outcome values; a run uses a handful
RIG_LINE = f"\r\n{RIG_HEADER}: ".encode()


class _UasCall:
    __slots__ = ("invite", "head", "call_id", "addr", "to_tag", "directive", "tx", "state",
                 "timer", "bye",
                 "bye_branch", "hop", "origin")

    def __init__(
        self, invite: Peek, addr: Address, to_tag: str, directive: Directive,
        tx: ServerInvite,
    ) -> None:
        self.invite, self.addr, self.to_tag, self.directive = invite, addr, to_tag, directive
        self.call_id = invite.call_id
        self.head: ResponseHead | None = None  # the INVITE's lines its responses copy
        self.tx = tx  # the INVITE's server transaction: its responses and their timers
        self.state = "ringing"  # -> answered | rejected -> confirmed -> (bye) -> (removed)
        self.timer: Entry | None = None  # ring limit, retransmission, hold or BYE timers
        self.bye: ClientNonInvite | None = None
        self.bye_branch = ""
        self.hop: Address = addr
        self.origin = ""


class Uas(Agent):
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
        self.malformed = 0
        self._ids = IdSource(f"s{os.getpid():x}{id(self) & 0xFFFF:x}.")
        self._calls: dict[str, _UasCall] = {}
        # answers to retransmitted BYEs, kept for `timeout` (Timer J)
        self._ended: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._endpoint: Endpoint | None = None
        self._clock: LoopTimers | None = None
        self._ending = False
        self._directives: dict[bytes | None, Directive] = {None: Directive()}

    @property
    def active(self) -> int:
        return len(self._calls)

    def end_calls(self) -> None:
        """Send now the BYEs this side was going to send later, and from now on hang up at
        the ACK (the load is over)."""
        self._ending = True
        for call in list(self._calls.values()):
            if call.state == "confirmed" and call.timer is not None and call.bye is None:
                self._cancel_timer(call)
                self._start_bye(call, self._now())

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

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        try:
            message = peek(data)
        except ValueError:
            self.malformed += 1
            return
        if not message.is_request:
            call = self._calls.get(message.call_id)
            if call is not None and call.bye is not None:
                self._on_bye_response(call, message)
            return
        method = message.method
        if method == "ACK":
            self._on_ack(message)
        elif method == "BYE":
            self._on_bye(message, addr)
        elif method == "INVITE":
            self._on_invite(message, addr)
        elif method == "CANCEL":
            self._on_cancel(message, addr)
        else:
            self._send(build_response(message.message(), 501, reason="Not Implemented"), addr)

    # ---- INVITE -------------------------------------------------------------------------

    def _on_invite(self, invite: Peek, addr: Address) -> None:
        call = self._calls.get(invite.call_id)
        if call is not None:
            step = call.tx.request("INVITE", self._now())  # a retransmission
            if step.send is not None:
                self._send(step.send, addr)
            return
        if invite.call_id in self._ended:
            return  # a late copy of the INVITE of a call that is over
        try:
            body = self._offer_of(invite)
        except ValueError:
            self.malformed += 1  # what parse_message refuses, as every INVITE once was
            return
        if invite.to_tag:  # a re-INVITE: keep the session as it is
            self._send(response_to(invite.data, 488, reason="Not Acceptable Here"), addr)
            return
        self.counts.invites += 1
        try:
            directive = self._directive(invite)
        except ValueError as exc:
            self.counts.failed += 1
            self._send(response_to(invite.data, 400, reason=str(exc)[:80]), addr)
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
                answer = self.on_offer(invite.call_id, body) if self.on_offer else ""
            except OfferRefused as exc:
                self._refuse(call, str(exc))
                return
            self._final(call, 200, answer)
        else:
            self._respond(call, 100)
            self._respond(call, 180)
            self._wake(call, self._now() + self.ring_limit, self._ring_limit_reached)

    @staticmethod
    def _offer_of(invite: Peek) -> str:
        """The INVITE's body; ValueError for what the full parser would refuse."""
        data = invite.data
        if not data[:head_end(data)].isascii():
            return invite.message().body  # UTF-8 headers parse, others raise
        return body_of(data)

    def _directive(self, invite: Peek) -> Directive:
        data = invite.data
        try:
            value = header_value(data, RIG_LINE, head_end(data))
        except Unusual:
            raw = invite.message().header(RIG_HEADER)
            return parse_directive(raw)
        directive = self._directives.get(value)
        if directive is None:
            directive = parse_directive(value.decode() if value is not None else None)
            if len(self._directives) < DIRECTIVES_KEPT:
                self._directives[value] = directive
        return directive

    def _refuse(self, call: _UasCall, problem: str) -> None:
        """488 to an offer the hook cannot use, retransmitted until the ACK like any final;
        the call counts as neither completed nor failed."""
        self.counts.refused += 1
        call.directive = replace(call.directive, outcome=REFUSED)
        self._final(call, 488, reason=f"Not Acceptable Here: {problem}"[:100])

    def _respond(self, call: _UasCall, status: int, body: str = "", reason: str = "") -> None:
        head = call.head
        if head is None:
            head = call.head = ResponseHead.of(call.invite.data)
        response = head.render(status, call.to_tag, self.contact, body, reason)
        self._send(call.tx.respond(response, status, self._now()), call.addr)

    def _final(self, call: _UasCall, status: int, body: str = "", reason: str = "") -> None:
        """A final response, retransmitted by its transaction (Timer G) until the ACK."""
        self._respond(call, status, body, reason)
        call.state = "answered" if status < 300 else "rejected"
        self._wake(call, call.tx.wake_at, self._retransmit_final)

    def _retransmit_final(self, call: _UasCall, now: float) -> None:
        call.timer = None
        step = call.tx.fire(now)
        if step.timed_out:
            self._finish(call, completed=False)  # no ACK came (Timer H)
            return
        if step.send is not None:
            self._send(step.send, call.addr)
        self._wake(call, call.tx.wake_at, self._retransmit_final)

    def _ring_limit_reached(self, call: _UasCall, now: float) -> None:
        call.timer = None
        self.counts.failed += 1  # counted here; the 480 below only ends the transaction
        call.directive = replace(call.directive, outcome="expired")
        self._final(call, 480, "")

    # ---- ACK, CANCEL, BYE ------------------------------------------------------------

    def _on_ack(self, ack: Peek) -> None:
        call = self._calls.get(ack.call_id)
        now = self._now()
        if call is None or not call.tx.request("ACK", now).deliver:
            return
        self._cancel_timer(call)
        if call.state == "rejected":
            self._finish(call, completed=call.directive.outcome != "expired")
            return
        call.state = "confirmed"
        if call.directive.hangup == "uas":
            hold = 0.0 if self._ending else call.directive.hold
            self._wake(call, now + hold, self._hold_over)

    def _on_cancel(self, cancel: Peek, addr: Address) -> None:
        call = self._calls.get(cancel.call_id)
        if call is None:
            self._send(build_response(cancel.message(), 481), addr)
            return
        self._send(build_response(cancel.message(), 200, call.to_tag), addr)
        if call.state == "ringing":
            self._cancel_timer(call)
            self._final(call, 487)

    def _on_bye(self, bye: Peek, addr: Address) -> None:
        call = self._calls.get(bye.call_id)
        if call is None:
            ended = self._ended.get(bye.call_id)
            self._send(ended[1] if ended else build_response(bye.message(), 481), addr)
            return
        ok = response_to(bye.data, 200)
        self._send(ok, addr)
        self._remember_end(bye.call_id, ok)
        self._finish(call, completed=call.state in ("answered", "confirmed"))

    def _finish(self, call: _UasCall, completed: bool) -> None:
        if self._calls.pop(call.call_id, None) is None:
            return
        self._cancel_timer(call)
        if call.directive.outcome not in ("expired", REFUSED):
            if completed:
                self.counts.completed += 1
            else:
                self.counts.failed += 1
        if self.on_end is not None and call.directive.outcome in ("answered", "vanish"):
            self.on_end(call.call_id)

    def _remember_end(self, call_id: str, response: bytes) -> None:
        now = self._now()
        self._ended[call_id] = (now, response)
        while self._ended:
            first = next(iter(self._ended.values()))
            if now - first[0] < self.timers.timeout:
                break
            self._ended.popitem(last=False)

    # ---- the UAS's own BYE -------------------------------------------------------------

    def _hold_over(self, call: _UasCall, now: float) -> None:
        call.timer = None
        self._start_bye(call, now)

    def _start_bye(self, call: _UasCall, now: float) -> None:
        invite = call.invite.message()
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
        call.hop, call.origin = ((host_port(routes[0]), "SIP Record-Route of the INVITE")
                                 if routes else (call.addr, "the source of the INVITE"))
        call.bye_branch = self._ids.branch()
        request = build_request(leg, "BYE", 1, call.bye_branch)
        call.bye = ClientNonInvite(request, self.timers, now)
        self._send(request, call.hop, call.origin)
        self._wake(call, call.bye.wake_at, self._bye_timer)

    def _bye_timer(self, call: _UasCall, now: float) -> None:
        call.timer = None
        assert call.bye is not None
        step = call.bye.fire(now)
        if step.timed_out:
            self._bye_over(call, answered=False)
            return
        if step.send is not None:
            self._send(step.send, call.hop, call.origin)
        self._wake(call, call.bye.wake_at, self._bye_timer)

    def _on_bye_response(self, call: _UasCall, message: Peek) -> None:
        assert call.bye is not None
        if message.branch != call.bye_branch or message.method != "BYE":
            return
        if call.bye.response(message.status, self._now()).deliver and message.status >= 200:
            self._bye_over(call, answered=200 <= message.status < 300)

    def _bye_over(self, call: _UasCall, answered: bool) -> None:
        # A vanished caller cannot answer: the BYE (or the proxy's 408) is all there is.
        self._finish(call, completed=answered or call.directive.outcome == "vanish")

    # ---- deadlines -----------------------------------------------------------------------

    def _wake(self, call: _UasCall, when: float,
              fn: Callable[[_UasCall, float], None]) -> None:
        """One deadline per call: the previous one (if any) is replaced."""
        clock = self._clock
        assert clock is not None
        clock.cancel(call.timer)
        call.timer = None
        if when < math.inf:
            call.timer = clock.at(when, fn, call)

    def _cancel_timer(self, call: _UasCall) -> None:
        if self._clock is not None:
            self._clock.cancel(call.timer)
        call.timer = None

    def _now(self) -> float:
        assert self._clock is not None
        return self._clock.loop.time()

