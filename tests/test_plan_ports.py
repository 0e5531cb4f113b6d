"""The relay's RTP ports and the rig's own follow the calls a scenario keeps alive at once."""

from pathlib import Path

import pytest

from rig.errors import ScenarioError
from rig.plan import MIN_RELAY_PORTS, PORT_HEADROOM, PORTS_PER_CALL, port_layout, stack_plan
from rig.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SESSION_LEAK = ROOT / "scenarios" / "session-leak.yaml"  # rtpengine behind Kamailio
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"  # the model relay, with bursts


def layout(path: Path, *overrides: str):
    scenario = load_scenario(path, overrides)
    return port_layout(scenario, stack_plan(scenario))


def test_a_small_scenario_keeps_the_least_ranges():
    ports = layout(SESSION_LEAK)
    assert ports.relay == (30000, 30000 + MIN_RELAY_PORTS - 1)
    assert ports.rig == (40000, 49999)


@pytest.mark.parametrize("calls", [1000, 2000, 3000])
def test_the_relay_gets_four_ports_per_call_and_headroom(calls):
    # the issue's case: 2,000 calls through rtpengine were given ~1,000 streams' worth
    ports = layout(SESSION_LEAK, f"load.max_concurrent={calls}")
    relay_ports = ports.relay[1] - ports.relay[0] + 1
    rig_ports = ports.rig[1] - ports.rig[0] + 1
    assert relay_ports >= calls * PORTS_PER_CALL * PORT_HEADROOM
    assert rig_ports >= calls * PORTS_PER_CALL  # two even ports per call on the rig's side
    assert ports.relay[1] < ports.rig[0] and ports.rig[1] <= 65535


def test_bursts_that_overlap_count_as_calls():
    # pin-race: 100 calls, bursts of 8 x 4 calls held 4 s every 2 s: 3 bursts overlap
    scenario = load_scenario(PIN_RACE, ("bursts.hold=4", "bursts.every=2",
                                        "bursts.streams_per_worker=4", "bursts.count=null"))
    assert port_layout(scenario, stack_plan(scenario)).calls == \
        scenario.load.max_concurrent + 8 * 4 * 3


def test_vanished_callers_hold_ports_until_the_relay_times_them_out():
    base = layout(PIN_RACE, "load.outcomes={answered: 1.0}").calls
    vanishing = layout(PIN_RACE, "load.outcomes={answered: 0.5, vanish: 0.5}",
                       "services.relay.timeout=60", "load.cps=10").calls
    assert vanishing - base == 10 * 0.5 * 60


def test_rtpengine_delete_delay_holds_ports_too():
    base = layout(SESSION_LEAK).calls
    assert layout(SESSION_LEAK, "services.rtpengine.delete_delay=30").calls == base + 20 * 30


def test_a_range_set_in_the_scenario_is_used_and_the_rig_moves_out_of_its_way():
    assert layout(PIN_RACE, "services.relay.port_range=[20000, 20009]").relay == (20000, 20009)
    ports = layout(PIN_RACE, "services.relay.port_range=[35000, 45000]")
    assert ports.relay == (35000, 45000) and ports.rig[0] > 45000


def test_more_calls_than_an_address_holds_is_bad_input():
    with pytest.raises(ScenarioError, match=r"^load.max_concurrent: 100000 calls at once .* "
                                            r"\(allowed: about \d+ calls at once, or a smaller "
                                            r"services.rtpengine.port_range\)$"):
        layout(SESSION_LEAK, "load.max_concurrent=100000")


@pytest.mark.parametrize("bad", ["[20, 30]", "[30000, 30000]", "[30001, 30002]",
                                 "[30000, 70000]", "[5]"])
def test_a_port_range_that_holds_no_pair_is_refused(tmp_path, bad):
    with pytest.raises(ScenarioError, match="services.relay.port_range"):
        load_scenario(PIN_RACE, (f"services.relay.port_range={bad}",))
