"""Generator shares: the load cut into parts that add up to it and never collide."""

import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.errors import ScenarioError, UsageError
from rig.load.driver import BurstPlan, CallPlan, RtpPlan, Targets
from rig.load.shares import auto_processes, extra_sip_ports, port_slices, shares, split
from rig.plan import load_processes, stack_plan
from rig.scenario import load_scenario

CALLS = CallPlan(cps=30.0, max_concurrent=101, hold=1.0, outcomes={"answered": 1.0},
                 no_answer_timeout=1.0, rtp=RtpPlan())
BURSTS = BurstPlan(first_at=1.0, every=2.0, count=None, workers=8, streams_per_worker=3,
                   hold=3.0, processes=2)
TARGETS = Targets(host="127.9.9.9", uac_port=5060, uas_port=5080, rtp_ports=(40000, 49999),
                  ng=("127.9.9.9", 2223))


@given(st.integers(0, 10_000), st.integers(1, 16))
def test_split_deals_everything_as_evenly_as_integers_go(total, parts):
    got = split(total, parts)
    assert sum(got) == total and len(got) == parts
    assert max(got) - min(got) <= 1


@given(st.integers(1, 16), st.integers(0, 1001))
def test_port_slices_are_disjoint_even_and_inside_the_range(parts, lo):
    lo = 10_000 + lo
    slices = port_slices((lo, lo + 9_999), parts)
    assert len(slices) == parts
    for (_, b), (c, _) in zip(slices, slices[1:], strict=False):
        assert b < c
    for a, b in slices:
        assert a % 2 == 0 and b % 2 == 1 and lo <= a < b <= lo + 9_999


@pytest.mark.parametrize("n", [1, 2, 3, 16])
def test_shares_add_up_to_the_load_and_never_collide(n):
    parts = shares(CALLS, BURSTS, TARGETS, seed=7, processes=n, allow=("10.0.0.0/8",))
    assert sum(p.calls.cps for p in parts) == pytest.approx(CALLS.cps)
    assert sum(p.calls.max_concurrent for p in parts) == CALLS.max_concurrent
    slots = sum(p.bursts.workers * p.bursts.streams_per_worker for p in parts if p.bursts)
    assert slots == BURSTS.workers * BURSTS.streams_per_worker
    assert all(p.bursts is None or p.bursts.first_at == BURSTS.first_at for p in parts)
    sip = [port for p in parts for port in (p.targets.uac_port, p.targets.uas_port)]
    assert len(set(sip)) == len(sip)
    assert len({p.call_id_prefix for p in parts}) == n
    assert len({p.seed for p in parts}) == n and parts[0].seed == 7
    assert (parts[0].targets.uac_port, parts[0].targets.uas_port) == (5060, 5080)
    assert set(sip) - {5060, 5080} == set(extra_sip_ports(n))
    assert all(p.targets.ng == TARGETS.ng and p.allow == ("10.0.0.0/8",) for p in parts)
    assert pickle.loads(pickle.dumps(parts)) == parts  # what a process or an actor gets


def test_a_process_without_calls_of_a_burst_fires_none():
    parts = shares(CALLS, BurstPlan(1.0, 2.0, None, 1, 1, 3.0), TARGETS, 0, processes=2)
    assert parts[0].bursts is not None and parts[1].bursts is None


def test_more_processes_than_the_cap_allows_are_refused():
    with pytest.raises(ValueError, match="processes must be 1..16, got 17"):
        shares(CALLS, None, TARGETS, 0, processes=17)
    small = CallPlan(1.0, 2, 1.0, {"answered": 1.0}, 1.0, None)
    with pytest.raises(ValueError, match="at least one call each"):
        shares(small, None, TARGETS, 0, processes=3)


def test_auto_is_the_cores_left_after_the_sut():
    assert [auto_processes(cpus, 1) for cpus in (1, 2, 4, 8, 64)] == [1, 1, 3, 7, 16]
    assert auto_processes(4, 2) == 2


ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"  # the model relay
SESSION_LEAK = ROOT / "scenarios" / "session-leak.yaml"  # behind Kamailio


def processes_of(path: Path, *overrides: str, cpus: int = 4) -> int:
    scenario = load_scenario(path, overrides)
    return load_processes(scenario, stack_plan(scenario), cpus)


def test_the_plan_reads_load_processes():
    assert processes_of(PIN_RACE, "load.processes=auto", cpus=4) == 3
    assert processes_of(PIN_RACE, "load.processes=auto", cpus=2) == 1
    assert processes_of(PIN_RACE) == 1
    assert processes_of(PIN_RACE, "load.processes=5") == 5
    assert processes_of(SESSION_LEAK, "load.processes=auto", cpus=8) == 1  # Kamailio: one


def test_the_plan_refuses_what_processes_cannot_share():
    with pytest.raises(UsageError, match="load.processes: 2 needs topology: model"):
        processes_of(SESSION_LEAK, "load.processes=2")
    with pytest.raises(ScenarioError, match="cannot share load.max_concurrent: 3"):
        processes_of(PIN_RACE, "load.processes=4", "load.max_concurrent=3")
