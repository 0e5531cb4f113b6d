"""The rig's UAC: places calls from one UDP socket, each call a callback state machine.

No coroutine per call: datagrams are routed by Call-ID to a `_UacCall`, whose transaction
machines (rig.wire.transaction) say what to send and when to be woken; every deadline of
every call (retransmission, give-up, CANCEL, hold, Timer D/K) sits in one timer heap.
Requests come from templates rendered once per Uac, so a call costs a few joins.
After its result a call lingers in the table until Timer D (non-2xx) or K (BYE) runs out,
so a retransmitted final gets its ACK again and late copies are absorbed, not counted.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from rig.load.callspec import EXPECTED_FINAL, VANISH_NOTICE_S, CallResult, CallSpec
from rig.load.sipio import Address, Agent, Endpoint, LoopTimers
from rig.topology.destinations import LOOPBACK_ONLY, Destinations, UnsafeDestination
from rig.wire.sip import (
    RIG_HEADER,
    Directive,
    IdSource,
    Leg,
    build_request,
    build_response,
    format_directive,
    host_port,
    uri_of,
)
from rig.wire.sipfast import (
    Peek,
    Template,
    Unusual,
    body_of,
    head_end,
    header_value,
    peek,
    response_to,
)
from rig.wire.timerheap import Entry
from rig.wire.transaction import RFC_TIMERS, ClientInvite, ClientNonInvite, SipTimers, State

VANISHED_REMEMBERED = 100_000  # call-ids whose requests are dropped unanswered
TEMPLATES_KEPT = 64  # in-dialog templates per (target, route set); one per proxy in practice
# (to_tag, answer sdp); may return an awaitable the call waits for before its hold
AnsweredHook = Callable[[str, str], Awaitable[None] | None]
DoneHook = Callable[[CallResult, BaseException | None], None]


class Uac(Agent):
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
        self._calls: dict[str, _UacCall] = {}
        self._endpoint: Endpoint | None = None
        self._clock: LoopTimers | None = None
        self._ending = False
        self._live = 0
        self._vanished: OrderedDict[str, None] = OrderedDict()
        self._templates: dict[tuple[str, tuple[str, ...], str, bool], Template] = {}
        self._directives: dict[tuple[str, str, float], str] = {}
        self.stray = 0
        self.malformed = 0
        host, port = local
        rhost, rport = remote
        self._first = Leg(call_id="", local_uri=f"sip:rig-uac@{host}:{port}", local_tag="",
                          remote_uri=f"sip:rig-uas@{rhost}:{rport}", remote_tag="",
                          target=f"sip:rig-uas@{rhost}:{rport}",
                          contact=f"sip:rig-uac@{host}:{port}", sent_by=f"{host}:{port}")
        self._invite = Template.request(self._first, "INVITE", 1, RIG_HEADER, with_body=True)
        self._invite_bare = Template.request(self._first, "INVITE", 1, RIG_HEADER)
        self._cancel = Template.request(self._first, "CANCEL", 1)

    @property
    def active(self) -> int:
        """Calls placed and not over yet (lingering ones, absorbing late copies, not counted)."""
        return self._live

    def end_calls(self) -> None:
        """Hang up (BYE) or CANCEL every call now, and every call placed from now on."""
        self._ending = True
        now = self.now()
        for call in list(self._calls.values()):
            call.ending(now)

    def vanish(self, call_id: str) -> None:
        """From now on, act as a caller that is gone: requests of this call get no answer."""
        self._vanished[call_id] = None
        while len(self._vanished) > VANISHED_REMEMBERED:
            self._vanished.popitem(last=False)

    def new_call_id(self) -> str:
        return self._ids.call_id(self.local[0])

    def new_tag(self) -> str:
        return self._ids.tag()

    def now(self) -> float:
        assert self._clock is not None, "UAC is not started"
        return self._clock.loop.time()

    # ---- placing calls -----------------------------------------------------------------

    def place(
        self,
        spec: CallSpec,
        sdp: str,
        on_answered: AnsweredHook | None,
        on_done: DoneHook,
        call_id: str | None = None,
        from_tag: str | None = None,
    ) -> None:
        """Place one call; `on_done(result, error)` runs once when it is over.

        `error` is what stopped the call short (a refused destination, a failing hook);
        SIP failures are results, never errors. `on_answered(to_tag, answer_sdp)` runs after
        the ACK, before the hold (media starts there).
        """
        if self._endpoint is None:
            raise RuntimeError("UAC is not started")
        call = _UacCall(self, call_id or self.new_call_id(), from_tag or self.new_tag(), spec,
                        on_answered, on_done)
        self._calls[call.call_id] = call
        self._live += 1
        call.start(sdp, self.now())

    async def call(
        self,
        spec: CallSpec,
        sdp: str = "",
        on_answered: AnsweredHook | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
    ) -> CallResult:
        """Place one call and await its end; raises only what `place` reports as an error.

        `call_id` and `from_tag` (from new_call_id/new_tag) let the caller name the call
        before it exists, e.g. for a media offer. Cancelling the await drops the call.
        """
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()

        def done(result: CallResult, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        call_id = call_id or self.new_call_id()
        self.place(spec, sdp, on_answered, done, call_id, from_tag)
        try:
            return await future
        except asyncio.CancelledError:
            call = self._calls.get(call_id)
            if call is not None:
                call.drop()
            raise

    def _directive(self, spec: CallSpec) -> str:
        """The X-Rig-Outcome value of a call like `spec` (a handful per run, kept)."""
        key = (spec.outcome, spec.hangup, spec.hold)
        text = self._directives.get(key)
        if text is None:
            directive = Directive(spec.outcome, spec.hangup, spec.hold)
            if spec.outcome == "vanish":  # the callee hangs up once it notices the silence
                directive = Directive("vanish", "uas", spec.hold + VANISH_NOTICE_S)
            text = format_directive(directive)
            if len(self._directives) < TEMPLATES_KEPT:
                self._directives[key] = text
        return text

    def drop(self, call_id: str) -> None:
        """Forget a call at once, without its result (whoever placed it gave up on it)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.drop()

    # ---- datagrams ----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        try:
            message = peek(data)
        except ValueError:
            self.malformed += 1
            return
        call = self._calls.get(message.call_id)
        if call is not None:
            call.on_message(message, addr)
        elif message.call_id in self._vanished:
            self.stray += 1
        elif message.is_request and message.method != "ACK":
            self._send(build_response(message.message(), 481), addr)
        else:
            self.stray += 1  # a late retransmission of a call that has ended

    def _send(self, data: bytes, addr: Address, origin: str = "the source of a SIP message"
              ) -> None:
        if self._endpoint is None:
            raise RuntimeError("UAC is not started")
        self._endpoint.send(data, addr, origin)

    def _hop(self, leg: Leg) -> tuple[Address, str]:
        """Where a request of `leg` goes: the first Record-Route, else the proxy, else the UAS."""
        if leg.routes:
            return host_port(leg.routes[0]), "SIP Record-Route of the 2xx to INVITE"
        if self.proxy is not None:
            return self.proxy, "the SIP proxy"
        return self.remote, "the UAS"

    def _in_dialog(self, leg: Leg, method: str, cseq: int) -> Template:
        key = (leg.target, leg.routes, method, bool(leg.remote_tag))
        template = self._templates.get(key)
        if template is None:
            template = Template.request(leg, method, cseq)
            if len(self._templates) < TEMPLATES_KEPT:
                self._templates[key] = template
        return template

    def _forget(self, call: _UacCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]


def _dialog_of(message: Peek) -> tuple[str | None, tuple[str, ...], str]:
    """Contact, route set (reversed Record-Route) and body of a 2xx; the byte search when
    there is no Record-Route and a usual Contact, else the full parser."""
    data = message.data
    end = head_end(data)
    try:
        if header_value(data, b"\r\nRecord-Route: ", end) is None:
            contact = header_value(data, b"\r\nContact: ", end)
            if data.find(b"\r\nm:", 0, end) < 0 and data.find(b"\r\nm :", 0, end) < 0:
                return (contact.decode() if contact is not None else None, (),
                        body_of(data))
    except Unusual:
        pass
    full = message.message()
    routes = tuple(uri_of(v) for v in reversed(full.header_values("record-route")))
    return full.header("contact"), routes, full.body


class _UacCall:
    """One call: INVITE transaction, then ACK, hold and BYE, or CANCEL; all callbacks.

    phase: inviting -> answering (the hook runs) -> holding -> byeing -> over;
    a call that is over lingers until `linger` (Timer D or K) and is then forgotten.
    """

    __slots__ = ("uac", "call_id", "from_tag", "spec", "on_answered", "on_done", "phase",
                 "branch", "tx", "hop", "origin", "cancel", "cancel_at", "leg", "ack",
                 "hold_until", "bye", "bye_branch", "bye_sent_at", "after_bye", "status",
                 "invited_at", "invite_rtt", "timer", "wake", "linger")

    def __init__(self, uac: Uac, call_id: str, from_tag: str, spec: CallSpec,
                 on_answered: AnsweredHook | None, on_done: DoneHook) -> None:
        self.uac, self.call_id, self.from_tag, self.spec = uac, call_id, from_tag, spec
        self.on_answered, self.on_done = on_answered, on_done
        self.phase = "inviting"
        self.cancel: ClientNonInvite | None = None
        self.bye: ClientNonInvite | None = None
        self.cancel_at = self.hold_until = self.linger = math.inf
        self.leg: Leg | None = None
        self.ack = b""
        self.bye_branch = ""
        self.bye_sent_at = math.nan
        self.after_bye: str | None = None  # a failure the BYE only tidies up after
        self.status = 0
        self.invite_rtt = math.nan
        self.timer: Entry | None = None
        self.wake = math.inf
        self.hop, self.origin = uac._hop(uac._first)

    # ---- sending and waking ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.uac._send(data, self.hop, self.origin)

    def rearm(self) -> None:
        """Keep one heap entry, at the earliest deadline of the current phase."""
        phase = self.phase
        if phase == "inviting":
            wake = self.tx.wake_at
            if self.cancel is not None:
                wake = min(wake, self.cancel.wake_at)
            elif self.tx.state is State.PROCEEDING:
                wake = min(wake, self.cancel_at)
        elif phase == "holding":
            wake = self.hold_until
        elif phase == "byeing":
            assert self.bye is not None
            wake = self.bye.wake_at
        elif phase == "over":
            wake = self.linger
        else:
            wake = math.inf
        if wake == self.wake:
            return
        clock = self.uac._clock
        assert clock is not None
        clock.cancel(self.timer)
        self.wake = wake
        self.timer = clock.at(wake, _UacCall.on_timer, self) if wake < math.inf else None

    def on_timer(self, now: float) -> None:
        self.timer, self.wake = None, math.inf
        phase = self.phase
        if phase == "inviting":
            self.invite_timers(now)
        elif phase == "holding":
            if now >= self.hold_until:
                self.hold_over(now)
        elif phase == "byeing":
            assert self.bye is not None
            step = self.bye.fire(now)
            if step.timed_out:
                self.bye_done(None, now)
            elif step.send is not None:
                self.send(step.send)
        elif phase == "over":
            if now >= self.linger:
                self.uac._forget(self)
                return
        if self.phase != "gone":
            self.rearm()

    # ---- the INVITE transaction --------------------------------------------------------

    def start(self, sdp: str, now: float) -> None:
        spec = self.spec
        self.branch = self.uac._ids.branch()
        template = self.uac._invite if sdp else self.uac._invite_bare
        invite = template.render(branch=self.branch, call_id=self.call_id,
                                 local_tag=self.from_tag, extra=self.uac._directive(spec),
                                 body=sdp)
        timers = self.uac.timers
        self.tx = ClientInvite(invite, timers, now, ring_limit=timers.timeout)
        if spec.outcome == "no_answer":
            self.cancel_at = now + spec.no_answer_timeout
        self.invited_at = now
        if self.guarded(invite):
            self.rearm()

    def guarded(self, data: bytes) -> bool:
        """Send; a refused destination ends the call with that error. False if it did."""
        try:
            self.send(data)
        except UnsafeDestination as refused:
            self.finish(False, "refused destination", refused)
            return False
        return True

    def invite_timers(self, now: float) -> None:
        tx = self.tx
        if now >= tx.wake_at:
            step = tx.fire(now)
            if step.send is not None:
                self.send(step.send)
            if step.timed_out:
                self.finish(False, "no final response to INVITE")
                return
        cancel = self.cancel
        if cancel is not None and now >= cancel.wake_at:
            step = cancel.fire(now)
            if step.send is not None:
                self.send(step.send)
        self.maybe_cancel(now)

    def maybe_cancel(self, now: float) -> None:
        if (self.phase == "inviting" and self.cancel is None
                and self.tx.state is State.PROCEEDING
                and (now >= self.cancel_at or self.uac._ending)):
            request = self.uac._cancel.render(branch=self.branch, call_id=self.call_id,
                                              local_tag=self.from_tag)
            self.cancel = ClientNonInvite(request, self.uac.timers, now)
            self.send(request)

    def ending(self, now: float) -> None:
        """The load is over: CANCEL a ringing call, cut a hold short."""
        if self.phase == "inviting":
            self.maybe_cancel(now)
            self.rearm()
        elif self.phase == "holding":
            self.hold_over(now)
            if self.phase != "gone":
                self.rearm()

    # ---- what comes in ----------------------------------------------------------------

    def on_message(self, message: Peek, addr: Address) -> None:
        now = self.uac.now()
        if message.is_request:
            self.on_request(message, addr, now)
            return
        method = message.method
        if method == "INVITE":
            self.on_invite_response(message, now)
        elif method == "BYE":
            bye = self.bye
            if bye is not None and message.branch == self.bye_branch:
                if bye.response(message.status, now).deliver and message.status >= 200:
                    self.bye_done(message.status, now)
        elif method == "CANCEL":
            if self.cancel is not None and message.branch == self.branch:
                self.cancel.response(message.status, now)  # the INVITE's 487 follows
        if self.phase != "gone":
            self.rearm()

    def on_request(self, message: Peek, addr: Address, now: float) -> None:
        if message.method != "BYE" or self.phase == "inviting":
            return
        self.uac._send(response_to(message.data, 200), addr)
        if self.phase in ("answering", "holding"):
            self.after_bye = ""  # the peer hung up first: fine
            if self.phase == "holding":
                self.finish(True)

    def on_invite_response(self, message: Peek, now: float) -> None:
        status = message.status
        if message.branch != self.branch:
            if status < 300 and self.ack:
                self.send(self.ack)  # a 2xx again (other branch of a fork, or a copy)
            return
        step = self.tx.response(status, now)
        if step.send is not None:
            self.send(step.send)  # Timer D: the final again, so our ACK again
        if not step.deliver:
            if 200 <= status < 300 and self.ack:
                self.send(self.ack)  # our ACK was lost
            return
        if status < 200:
            if self.spec.outcome == "cancel" and self.cancel_at == math.inf:
                self.cancel_at = now + self.spec.cancel_after
            self.maybe_cancel(now)
            return
        self.status = status
        self.invite_rtt = now - self.invited_at
        if status >= 300:
            self.rejected(message, now)
        else:
            self.accepted(message, now)

    def rejected(self, message: Peek, now: float) -> None:
        """ACK a non-2xx final (same branch as the INVITE, hop by hop); linger for Timer D."""
        leg = self.uac._first
        ack = build_request(Leg(self.call_id, leg.local_uri, self.from_tag, leg.remote_uri,
                                message.to_tag, leg.target, leg.contact, leg.sent_by),
                            "ACK", 1, self.branch)
        self.send(self.tx.send_ack(ack))
        expected = message.status == EXPECTED_FINAL[self.spec.outcome]
        self.linger = self.tx.wake_at
        self.finish(expected, "" if expected else f"unexpected {message.status} to INVITE")

    def accepted(self, message: Peek, now: float) -> None:
        """The dialog from a 2xx: peer tag, Contact, route set; then the ACK (new branch)."""
        contact, routes, body = _dialog_of(message)
        first = self.uac._first
        self.leg = leg = Leg(self.call_id, first.local_uri, self.from_tag, first.remote_uri,
                             message.to_tag, uri_of(contact) if contact else first.target,
                             first.contact, first.sent_by, routes)
        self.hop, self.origin = self.uac._hop(leg)
        self.ack = self.uac._in_dialog(leg, "ACK", 1).render(
            branch=self.uac._ids.branch(), call_id=self.call_id, local_tag=self.from_tag,
            remote_tag=message.to_tag)
        if not self.guarded(self.ack):
            return
        outcome = self.spec.outcome
        if outcome not in ("answered", "vanish"):
            self.after_bye = f"answered although {outcome} was asked"
            self.start_bye(now)
            return
        self.phase = "answering"
        hook = self.on_answered
        if hook is None:
            self.start_hold(now)
            return
        try:
            waiting = hook(message.to_tag, body)
        except Exception as exc:
            self.hook_failed(exc)
            return
        if waiting is None:
            self.start_hold(self.uac.now())
        else:
            task = asyncio.ensure_future(waiting)
            task.add_done_callback(self.answered_done)

    def answered_done(self, task: asyncio.Future[None]) -> None:
        if self.phase != "answering":
            if not task.cancelled():
                task.exception()  # dropped meanwhile: what the hook met no longer matters
            return
        if task.cancelled():
            self.drop()
            return
        error = task.exception()
        if error is not None:
            self.hook_failed(error)
            return
        self.start_hold(self.uac.now())
        if self.phase != "gone":
            self.rearm()

    def hook_failed(self, error: BaseException) -> None:
        self.finish(False, f"{type(error).__name__}: {error}".split("\n")[0][:120], error)

    # ---- hold and hang-up ---------------------------------------------------------------

    def start_hold(self, now: float) -> None:
        if self.after_bye == "":  # the peer's BYE came while the hook ran
            self.finish(True)
            return
        self.phase = "holding"
        spec = self.spec
        if self.uac._ending:
            self.hold_until = now
            self.hold_over(now)
            return
        hold = spec.hold
        if spec.outcome != "vanish" and spec.hangup == "uas":
            hold += self.uac.timers.timeout  # the UAS's BYE, with time to get here
        self.hold_until = now + hold

    def hold_over(self, now: float) -> None:
        """The hold ran out (or the load ended) without a BYE from the peer."""
        spec = self.spec
        if spec.outcome == "vanish":
            self.uac.vanish(self.call_id)  # no BYE; the callee's BYE goes unanswered
            self.finish(True)
            return
        if spec.hangup == "uas" and not self.uac._ending:
            self.after_bye = "no BYE from the UAS"
        self.start_bye(now)

    def start_bye(self, now: float) -> None:
        assert self.leg is not None
        self.phase = "byeing"
        self.bye_branch = self.uac._ids.branch()
        request = self.uac._in_dialog(self.leg, "BYE", 2).render(
            branch=self.bye_branch, call_id=self.call_id, local_tag=self.from_tag,
            remote_tag=self.leg.remote_tag)
        self.bye = ClientNonInvite(request, self.uac.timers, now)
        self.bye_sent_at = now
        self.guarded(request)

    def bye_done(self, status: int | None, now: float) -> None:
        assert self.bye is not None
        ok = status is not None and 200 <= status < 300
        bye_rtt = now - self.bye_sent_at if ok else math.nan
        self.linger = self.bye.wake_at  # Timer K: absorb copies of the 200
        if self.after_bye is not None:
            self.finish(False, self.after_bye, bye_rtt=bye_rtt)
        else:
            self.finish(ok, "" if ok else "BYE not answered with 2xx", bye_rtt=bye_rtt)

    # ---- the end ----------------------------------------------------------------------

    def finish(self, completed: bool, reason: str = "", error: BaseException | None = None,
               bye_rtt: float = math.nan) -> None:
        if self.phase in ("over", "gone"):
            return
        uac = self.uac
        uac._live -= 1
        if self.linger < math.inf and error is None and self.call_id not in uac._vanished:
            self.phase = "over"
        else:
            self.phase = "gone"
            self.cancel_timer()
            uac._forget(self)
        result = CallResult(self.call_id, self.spec.outcome, completed, reason, self.status,
                            self.invite_rtt, bye_rtt)
        self.on_done(result, error)

    def drop(self) -> None:
        """Forget the call at once (its awaiting caller went away)."""
        if self.phase not in ("over", "gone"):
            self.uac._live -= 1
        self.phase = "gone"
        self.cancel_timer()
        self.uac._forget(self)

    def cancel_timer(self) -> None:
        if self.uac._clock is not None:
            self.uac._clock.cancel(self.timer)
        self.timer, self.wake = None, math.inf

