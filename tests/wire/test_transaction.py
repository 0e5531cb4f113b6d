"""The SIP transaction machines on plain values: a fake clock jumps from one wake-up to the
next, and the times of what they send are checked against RFC 3261's numbers."""

from __future__ import annotations

import math

import pytest

from rig.clock import FakeClock
from rig.wire.transaction import (
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    SipTimers,
    State,
    Step,
)

RFC = SipTimers()  # T1 500 ms, T2 4 s, 64*T1 = 32 s, T4 5 s
INVITE, BYE, ACK, OK, BUSY = b"INVITE", b"BYE", b"ACK", b"200", b"486"


def run_timers(machine: ClientInvite | ClientNonInvite | ServerInvite | ServerNonInvite,
               clock: FakeClock, until: float = math.inf) -> list[tuple[float, Step]]:
    """Move the clock to each wake-up and fire, until the machine wants none (or `until`)."""
    steps: list[tuple[float, Step]] = []
    while machine.wake_at <= until and math.isfinite(machine.wake_at):
        clock.advance(machine.wake_at - clock.monotonic())
        steps.append((clock.monotonic(), machine.fire(clock.monotonic())))
    return steps


def sent_at(steps: list[tuple[float, Step]]) -> list[float]:
    return [t for t, step in steps if step.send is not None]


def test_timers_reject_impossible_values() -> None:
    with pytest.raises(ValueError, match="T1 <= T2"):
        SipTimers(t1=5.0, t2=4.0)
    with pytest.raises(ValueError, match="timeout > 0"):
        SipTimers(timeout=0)


def test_unanswered_invite_retransmits_at_doubling_intervals_and_gives_up_at_64_t1() -> None:
    clock = FakeClock()
    tx = ClientInvite(INVITE, RFC, clock.monotonic())
    steps = run_timers(tx, clock)
    times = sent_at(steps)
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # gaps 0.5, 1, 2, 4, 8, 16 (Timer A)
    assert all(step.send == INVITE for _, step in steps if step.send)
    assert steps[-1] == (32.0, Step(timed_out=True))  # Timer B
    assert tx.state is State.TERMINATED and tx.retransmissions == 6


def test_a_provisional_stops_invite_retransmissions() -> None:
    clock = FakeClock()
    tx = ClientInvite(INVITE, RFC, 0.0)
    assert sent_at(run_timers(tx, clock, until=1.6)) == [0.5, 1.5]
    assert tx.response(180, clock.monotonic()).deliver
    assert tx.state is State.PROCEEDING and tx.wake_at == math.inf
    assert tx.response(200, 40.0).deliver  # ringing is not bounded by Timer B
    assert tx.state is State.TERMINATED


def test_ring_limit_bounds_proceeding_from_the_start() -> None:
    clock = FakeClock()
    tx = ClientInvite(INVITE, RFC, 0.0, ring_limit=8.0)
    tx.response(100, 0.1)
    assert run_timers(tx, clock) == [(8.0, Step(timed_out=True))]


def test_a_non_2xx_final_is_acked_again_for_each_retransmission_until_timer_d() -> None:
    tx = ClientInvite(INVITE, RFC, 0.0)
    assert tx.response(486, 0.2) == Step(deliver=True)
    assert tx.send_ack(ACK) == ACK
    assert tx.state is State.COMPLETED
    assert tx.response(486, 0.7) == Step(send=ACK)  # not delivered again, ACKed again
    assert tx.fire(32.1) == Step()  # Timer D is 32 s from the final
    assert tx.state is State.COMPLETED
    assert tx.fire(32.2) == Step() and tx.state is State.TERMINATED
    assert tx.response(486, 33.0) == Step()


def test_a_2xx_ends_the_invite_transaction_and_later_ones_are_not_its_business() -> None:
    tx = ClientInvite(INVITE, RFC, 0.0)
    assert tx.response(200, 0.1).deliver and tx.state is State.TERMINATED
    assert tx.response(200, 0.6) == Step()
    assert tx.fire(0.5) == Step()


def test_timers_scale_with_t1() -> None:
    clock = FakeClock(start=100.0)
    tx = ClientInvite(INVITE, SipTimers(t1=0.05, t2=0.2, timeout=1.0), 100.0)
    times = sent_at(run_timers(tx, clock))
    assert [round(t - 100.0, 6) for t in times] == [0.05, 0.15, 0.35, 0.75]
    assert tx.state is State.TERMINATED


def test_an_early_fire_does_nothing() -> None:
    tx = ClientNonInvite(BYE, RFC, 0.0)
    assert tx.fire(0.49) == Step() and tx.retransmissions == 0
    assert tx.fire(0.5) == Step(send=BYE)


def test_non_invite_retransmits_doubling_up_to_t2_and_gives_up_at_64_t1() -> None:
    clock = FakeClock()
    tx = ClientNonInvite(BYE, RFC, 0.0)
    steps = run_timers(tx, clock)
    times = sent_at(steps)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # gaps 0.5, 1, 2, 4, then T2 (Timer E)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[3:] == [4.0] * len(gaps[3:])
    assert times[-1] == 31.5
    assert steps[-1] == (32.0, Step(timed_out=True))  # Timer F


def test_a_provisional_moves_non_invite_retransmissions_to_t2() -> None:
    clock = FakeClock()
    tx = ClientNonInvite(BYE, RFC, 0.0)
    run_timers(tx, clock, until=0.5)  # one retransmission, next due at 1.5
    assert tx.response(100, 0.6).deliver and tx.state is State.PROCEEDING
    times = sent_at(run_timers(tx, clock, until=10.0))
    assert times == [1.5, 5.5, 9.5]


def test_a_non_invite_final_completes_and_timer_k_absorbs_repeats() -> None:
    clock = FakeClock()
    tx = ClientNonInvite(BYE, RFC, 0.0)
    clock.advance(0.3)
    assert tx.response(200, clock.monotonic()).deliver and tx.state is State.COMPLETED
    assert tx.response(200, 1.0) == Step()
    steps = run_timers(tx, clock)
    assert steps == [(5.3, Step())] and tx.state is State.TERMINATED  # Timer K = T4


def test_uas_retransmits_its_2xx_until_the_ack() -> None:
    clock = FakeClock()
    tx = ServerInvite(RFC, 0.0)
    assert tx.respond(b"180", 180, 0.0) == b"180" and tx.wake_at == math.inf
    tx.respond(OK, 200, 0.0)
    assert tx.state is State.ACCEPTED
    assert sent_at(run_timers(tx, clock, until=12.0)) == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert tx.request("INVITE", 12.0) == Step(send=OK)  # a retransmitted INVITE: same 200
    assert tx.request("ACK", 12.1) == Step(deliver=True)
    assert tx.state is State.TERMINATED and tx.wake_at == math.inf
    assert tx.request("ACK", 12.2) == Step()  # a repeated ACK goes nowhere


def test_uas_gives_up_on_a_2xx_without_ack_at_64_t1() -> None:
    clock = FakeClock()
    tx = ServerInvite(RFC, 0.0)
    tx.respond(OK, 200, 0.0)
    steps = run_timers(tx, clock)
    assert sent_at(steps)[-1] == 31.5
    assert steps[-1] == (32.0, Step(timed_out=True))


def test_uas_non_2xx_uses_timers_g_h_and_i() -> None:
    clock = FakeClock()
    tx = ServerInvite(RFC, 0.0)
    tx.respond(BUSY, 486, 0.0)
    assert tx.state is State.COMPLETED
    assert sent_at(run_timers(tx, clock, until=4.0)) == [0.5, 1.5, 3.5]  # Timer G
    assert tx.request("INVITE", 4.0) == Step(send=BUSY)
    assert tx.request("ACK", 4.1) == Step(deliver=True)
    assert tx.state is State.CONFIRMED
    assert tx.request("ACK", 4.2) == Step() and tx.request("INVITE", 4.3) == Step()
    assert run_timers(tx, clock) == [(9.1, Step())]  # Timer I = T4
    assert tx.state is State.TERMINATED


def test_uas_without_ack_for_a_non_2xx_times_out_on_timer_h() -> None:
    clock = FakeClock()
    tx = ServerInvite(SipTimers(t1=0.5, t2=4.0, timeout=8.0), 0.0)
    tx.respond(BUSY, 486, 0.0)
    steps = run_timers(tx, clock)
    assert sent_at(steps) == [0.5, 1.5, 3.5, 7.5]
    assert steps[-1] == (8.0, Step(timed_out=True))


def test_uas_answers_a_retransmitted_invite_before_any_response_with_nothing() -> None:
    tx = ServerInvite(RFC, 0.0)
    assert tx.request("INVITE", 0.1) == Step()
    tx.respond(b"100", 100, 0.1)
    assert tx.request("INVITE", 0.2) == Step(send=b"100")
    assert tx.request("ACK", 0.3) == Step()  # no final yet: not an ACK of ours


def test_uas_refuses_a_second_final() -> None:
    tx = ServerInvite(RFC, 0.0)
    tx.respond(OK, 200, 0.0)
    with pytest.raises(ValueError, match="already answered"):
        tx.respond(BUSY, 486, 0.1)


def test_non_invite_server_repeats_its_final_until_timer_j() -> None:
    clock = FakeClock()
    tx = ServerNonInvite(RFC, 0.0)
    assert tx.request(0.0) == Step()
    tx.respond(OK, 200, 0.0)
    assert tx.request(10.0) == Step(send=OK)
    assert run_timers(tx, clock) == [(32.0, Step())]  # Timer J = 64*T1
    assert tx.request(33.0) == Step()
