"""SIP transactions over UDP (RFC 3261 section 17) as state machines that are told the time.

Each machine is given the events (a response or request of its transaction, the time) and
answers with a Step: whether the message goes on to the transaction user (the call), and
a datagram to send now, if any. `wake_at` says when it wants `fire(now)` next (math.inf:
never); whoever runs it keeps one timer per machine and calls `fire` then. Nothing here
sleeps or reads a clock, so the RFC's timer values are tested on plain numbers.

Timers (RFC 3261 table 4), with `SipTimers`:
- INVITE client: A retransmits at T1, 2*T1, 4*T1... until a provisional; B gives up at
  `timeout` (64*T1); D (Completed, after a non-2xx final) re-sends the ACK for every
  retransmitted final until `timeout` (the RFC: at least 32 s).
- non-INVITE client: E retransmits at T1 doubling up to T2 (at T2 once a provisional came);
  F gives up at `timeout`; K absorbs retransmitted finals for T4.
- INVITE server: G retransmits a non-2xx final at T1 doubling up to T2, H gives up without
  an ACK at `timeout`, I absorbs ACKs for T4. A 2xx is retransmitted the same way until the
  ACK (the UAS core's job in 13.3.1.4; the Accepted state of RFC 6026).
- non-INVITE server: J answers retransmitted requests with the same final for `timeout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class SipTimers:
    """T1, T2 and T4 as in RFC 3261; `timeout` is Timer B/F/H/J (64*T1 = 32 s there).

    `timeout` is its own field because a run on loopback bounds a transaction well below
    the RFC's 32 s (a lost peer must not hold a call for half a minute).
    """

    t1: float = 0.5
    t2: float = 4.0
    timeout: float = 32.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"SIP timers need 0 < T1 <= T2: T1={self.t1}, T2={self.t2}")
        if self.timeout <= 0 or self.t4 < 0:
            raise ValueError(f"SIP timers need timeout > 0 and T4 >= 0: {self}")


RFC_TIMERS = SipTimers()  # T1 500 ms, T2 4 s, 64*T1 = 32 s, T4 5 s


class State(Enum):
    CALLING = "calling"  # INVITE client, nothing back yet
    TRYING = "trying"  # non-INVITE client, nothing back yet
    PROCEEDING = "proceeding"  # a provisional came (client) or the request came (server)
    ACCEPTED = "accepted"  # INVITE server: 2xx sent, retransmitted until the ACK
    COMPLETED = "completed"  # final response received (client) or sent (server)
    CONFIRMED = "confirmed"  # INVITE server: the ACK of a non-2xx came
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Step:
    """What the machine asks for after an event."""

    deliver: bool = False  # pass the message on to the transaction user
    send: bytes | None = None  # a datagram to send now
    timed_out: bool = False  # the transaction gave up (Timer B, F or H)


NOTHING = Step()
DELIVER = Step(deliver=True)
TIMED_OUT = Step(timed_out=True)


class ClientInvite:
    """INVITE client transaction (17.1.1). `ring_limit` bounds Proceeding from the start.

    The RFC leaves a ringing INVITE to its user (it would CANCEL); the rig bounds every
    call, so after `ring_limit` seconds from the start Proceeding also times out.
    """

    __slots__ = ("request", "timers", "state", "wake_at", "interval", "give_up_at",
                 "ring_until", "ack", "retransmissions")

    def __init__(self, request: bytes, timers: SipTimers, now: float,
                 ring_limit: float = math.inf) -> None:
        self.request, self.timers = request, timers
        self.state = State.CALLING
        self.interval = timers.t1
        self.give_up_at = now + timers.timeout  # Timer B
        self.ring_until = now + ring_limit
        self.wake_at = min(now + self.interval, self.give_up_at)  # Timer A
        self.ack = b""
        self.retransmissions = 0

    def response(self, status: int, now: float) -> Step:
        state = self.state
        if state is State.CALLING or state is State.PROCEEDING:
            if status < 200:
                self.state = State.PROCEEDING
                self.wake_at = self.ring_until
            elif status < 300:
                self.state = State.TERMINATED  # the 2xx and its ACK belong to the dialog
                self.wake_at = math.inf
            else:
                self.state = State.COMPLETED
                self.wake_at = now + self.timers.timeout  # Timer D
            return DELIVER
        if state is State.COMPLETED and status >= 300:
            return Step(send=self.ack or None)  # a retransmitted final: the same ACK again
        return NOTHING

    def send_ack(self, ack: bytes) -> bytes:
        """The ACK of the non-2xx final (built by the user, who knows the To tag); kept to be
        sent again for each retransmission of that final."""
        self.ack = ack
        return ack

    def fire(self, now: float) -> Step:
        if now < self.wake_at:
            return NOTHING
        state = self.state
        if state is State.CALLING:
            if now >= self.give_up_at:
                return self._terminate(TIMED_OUT)
            self.interval *= 2  # Timer A has no cap at T2
            self.wake_at = min(now + self.interval, self.give_up_at)
            self.retransmissions += 1
            return Step(send=self.request)
        if state is State.PROCEEDING:
            return self._terminate(TIMED_OUT)
        return self._terminate(NOTHING)  # Timer D

    def _terminate(self, step: Step) -> Step:
        self.state = State.TERMINATED
        self.wake_at = math.inf
        return step


class ClientNonInvite:
    """non-INVITE client transaction (17.1.2): BYE, CANCEL."""

    __slots__ = ("request", "timers", "state", "wake_at", "interval", "give_up_at",
                 "retransmissions")

    def __init__(self, request: bytes, timers: SipTimers, now: float) -> None:
        self.request, self.timers = request, timers
        self.state = State.TRYING
        self.interval = timers.t1
        self.give_up_at = now + timers.timeout  # Timer F
        self.wake_at = min(now + self.interval, self.give_up_at)  # Timer E
        self.retransmissions = 0

    def response(self, status: int, now: float) -> Step:
        state = self.state
        if state is State.TRYING or state is State.PROCEEDING:
            if status < 200:
                self.state = State.PROCEEDING
                return DELIVER
            self.state = State.COMPLETED
            self.wake_at = now + self.timers.t4  # Timer K
            return DELIVER
        return NOTHING  # a retransmitted final, absorbed

    def fire(self, now: float) -> Step:
        if now < self.wake_at:
            return NOTHING
        if self.state is State.COMPLETED:
            self.state, self.wake_at = State.TERMINATED, math.inf  # Timer K
            return NOTHING
        if now >= self.give_up_at:
            self.state, self.wake_at = State.TERMINATED, math.inf
            return TIMED_OUT
        t2 = self.timers.t2
        self.interval = t2 if self.state is State.PROCEEDING else min(self.interval * 2, t2)
        self.wake_at = min(now + self.interval, self.give_up_at)
        self.retransmissions += 1
        return Step(send=self.request)


class ServerInvite:
    """INVITE server transaction (17.2.1), with the 2xx retransmission of the UAS core.

    `respond` takes each response the user sends and returns it to send. A retransmitted
    INVITE gets the last response again; the first ACK after a final goes to the user,
    later ones are absorbed.
    """

    __slots__ = ("timers", "state", "wake_at", "interval", "give_up_at", "last",
                 "retransmissions")

    def __init__(self, timers: SipTimers, now: float) -> None:
        self.timers = timers
        self.state = State.PROCEEDING
        self.wake_at = math.inf
        self.interval = timers.t1
        self.give_up_at = math.inf
        self.last = b""
        self.retransmissions = 0

    def respond(self, response: bytes, status: int, now: float) -> bytes:
        if self.state is not State.PROCEEDING:
            raise ValueError(f"a response to an INVITE already answered ({self.state.value})")
        self.last = response
        if status >= 200:
            self.state = State.ACCEPTED if status < 300 else State.COMPLETED
            self.interval = self.timers.t1
            self.give_up_at = now + self.timers.timeout  # Timer H (and the 2xx's 64*T1)
            self.wake_at = min(now + self.interval, self.give_up_at)  # Timer G
        return response

    def request(self, method: str, now: float) -> Step:
        """A request of this transaction: a retransmitted INVITE, or the ACK."""
        state = self.state
        if method == "ACK":
            if state is State.ACCEPTED:
                self.state, self.wake_at = State.TERMINATED, math.inf
                return DELIVER
            if state is State.COMPLETED:
                self.state, self.wake_at = State.CONFIRMED, now + self.timers.t4  # Timer I
                return DELIVER
            return NOTHING
        if state is State.CONFIRMED or state is State.TERMINATED:
            return NOTHING
        return Step(send=self.last or None)  # a retransmitted INVITE: the last answer again

    def fire(self, now: float) -> Step:
        if now < self.wake_at:
            return NOTHING
        state = self.state
        if state is State.ACCEPTED or state is State.COMPLETED:
            if now >= self.give_up_at:
                self.state, self.wake_at = State.TERMINATED, math.inf
                return TIMED_OUT
            self.interval = min(self.interval * 2, self.timers.t2)
            self.wake_at = min(now + self.interval, self.give_up_at)
            self.retransmissions += 1
            return Step(send=self.last)
        self.state, self.wake_at = State.TERMINATED, math.inf  # Timer I
        return NOTHING


class ServerNonInvite:
    """non-INVITE server transaction (17.2.2): a retransmitted request gets the same final
    response until Timer J."""

    __slots__ = ("timers", "state", "wake_at", "last")

    def __init__(self, timers: SipTimers, now: float) -> None:
        self.timers = timers
        self.state = State.TRYING
        self.wake_at = math.inf
        self.last = b""

    def respond(self, response: bytes, status: int, now: float) -> bytes:
        self.last = response
        if status >= 200:
            self.state = State.COMPLETED
            self.wake_at = now + self.timers.timeout  # Timer J
        else:
            self.state = State.PROCEEDING
        return response

    def request(self, now: float) -> Step:
        """A retransmission of the request: the last response again, if there is one."""
        if self.state is State.TERMINATED:
            return NOTHING
        return Step(send=self.last or None)

    def fire(self, now: float) -> Step:
        if now >= self.wake_at:
            self.state, self.wake_at = State.TERMINATED, math.inf
        return NOTHING
