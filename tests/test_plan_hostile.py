"""The hostile plan of a scenario, on plain values: where it goes and what it runs."""

from pathlib import Path

import pytest

from rig.errors import UsageError
from rig.plan import hostile_plan, stack_plan
from rig.scenario import load_scenario
from rig.topology import Endpoints

BASE = """
name: h
duration: 2
checks: {relay_alive: {}}
"""
ENDPOINTS = Endpoints("127.0.9.1")


def plan_of(tmp_path: Path, *overrides: str):
    path = tmp_path / "s.yaml"
    path.write_text(BASE)
    scenario = load_scenario(path, overrides)
    return hostile_plan(scenario, ENDPOINTS, stack_plan(scenario))


def test_no_hostile_section_no_plan(tmp_path):
    assert plan_of(tmp_path) is None


def test_without_a_proxy_hostile_traffic_goes_to_the_uas(tmp_path):
    plan = plan_of(tmp_path, "hostile={}")
    assert (plan.target, plan.target_name) == (("127.0.9.1", ENDPOINTS.uas_port), "uas")
    assert plan.rate == 10 and len(plan.kinds) == 10 and plan.tools == ()


def test_with_kamailio_it_goes_to_the_proxy_unless_told_otherwise(tmp_path):
    plan = plan_of(tmp_path, "topology=kamailio", "hostile={svwar: {extensions: 100-149}}")
    assert (plan.target, plan.target_name) == (("127.0.9.1", 5070), "proxy")
    [war] = plan.tools
    assert (war.tool, war.requests) == ("svwar", 50)
    assert war.args == ("-e", "100-149", "-m", "INVITE")
    uas = plan_of(tmp_path, "topology=kamailio", "hostile={target: uas, malformed: null}")
    assert uas.target_name == "uas" and uas.rate == 0 and uas.kinds == ()


def test_every_tool_gets_its_options(tmp_path):
    plan = plan_of(tmp_path, "hostile={svmap: {}, svcrack: {username: alice}}")
    assert [(t.tool, t.args, t.requests) for t in plan.tools] == [
        ("svmap", (), 1), ("svcrack", ("-u", "alice", "-r", "1000-1009"), 10)]


def test_a_proxy_target_without_a_proxy_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE)
    scenario = load_scenario(path, ("hostile={}",))
    forced = scenario.model_copy(update={"hostile": scenario.hostile.model_copy(
        update={"target": "proxy"})})
    with pytest.raises(UsageError, match="needs a proxy"):
        hostile_plan(forced, ENDPOINTS, stack_plan(forced))


def test_a_run_with_a_missing_sipvicious_command_stops_before_anything_starts(
        tmp_path, monkeypatch):
    from rig.errors import InfraError
    from rig.runner import Run, RunRequest

    path = tmp_path / "s.yaml"
    path.write_text(BASE + "hostile: {svwar: {}}\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match=r"^hostile.svwar needs the svwar command \(Debian "):
        Run(RunRequest(scenario_path=path, out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()
