"""A run whose calls mostly fail does not pass, even when its scenario asks nothing about
calls: every scenario that places calls checks that they complete."""

from pathlib import Path

import pytest

from rig.runner import RunRequest, run_scenario

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
# no bursts, only relay_alive asked for; two port pairs: the relay holds one call at a time
STARVED = ("duration=3", "settle=1", "bursts=null", "checks={relay_alive: {}}", "capture=off",
           "load.cps=10", "load.max_concurrent=20", "load.hold=1.0",
           "load.outcomes={answered: 1.0}", "services.relay.port_range=[30000, 30003]")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run(tmp_path: Path, name: str, *extra: str):
    return run_scenario(RunRequest(scenario_path=PIN_RACE, overrides=(*STARVED, *extra),
                                   out=tmp_path / name, progress=False))


def test_a_relay_out_of_ports_fails_the_run_on_calls_completed(tmp_path: Path):
    outcome = run(tmp_path, "starved")
    checks = {c.name: c for c in outcome.summary.checks}
    assert set(checks) == {"relay_alive", "calls_completed", "services_alive"}
    assert checks["relay_alive"].passed  # the relay is fine: it only ran out of ports
    assert checks["services_alive"].passed
    completed = checks["calls_completed"]
    assert not completed.passed
    assert isinstance(completed.observed, float) and completed.observed < 0.5, completed
    assert completed.limit == 0.95
    assert outcome.verdict == "fail" and outcome.exit_code == 1


def test_with_calls_completed_off_the_same_run_passes(tmp_path: Path):
    outcome = run(tmp_path, "unchecked", "checks.calls_completed=off")
    assert [c.name for c in outcome.summary.checks] == ["relay_alive", "services_alive"]
    assert outcome.verdict == "pass"
