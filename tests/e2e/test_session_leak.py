"""session-leak end to end on the local backend: calls through Kamailio end every way they
can; with the stock config no media session outlives its call, with the config that skips
the delete on 486 the leaked sessions are counted and named."""

import shutil
from pathlib import Path

import pytest

from rig.runner import RunOutcome, RunRequest, run_scenario
from rig.summary import CheckEntry

ROOT = Path(__file__).resolve().parents[2]
SESSION_LEAK = ROOT / "scenarios" / "session-leak.yaml"
NO_DELETE_ON_BUSY = ROOT / "scenarios" / "patches" / "kamailio-no-delete-on-busy.patch"
SHORT = ("duration=3",)  # ~40 busy calls at the scenario's 20 calls/s and 15% busy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(40),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("kamailio", "kamcmd", "rtpengine")),
        reason="needs kamailio and rtpengine (Debian packages)",
    ),
]


def run(tmp_path: Path, name: str, *overrides: str, broken: bool = False) -> RunOutcome:
    return run_scenario(RunRequest(
        scenario_path=SESSION_LEAK,
        overrides=(*SHORT, *overrides),
        patches=(NO_DELETE_ON_BUSY,) if broken else (),
        out=tmp_path / name,
        progress=False,
    ))


def check(outcome: RunOutcome, name: str) -> CheckEntry:
    return next(c for c in outcome.summary.checks if c.name == name)


def busy_calls(outcome: RunOutcome) -> int:
    return int(outcome.summary.load.outcomes["busy"])


def assert_passes(outcome: RunOutcome) -> None:
    failed = [c for c in outcome.summary.checks if not c.passed]
    assert outcome.verdict == "pass", failed
    outcomes = outcome.summary.load.outcomes
    assert set(outcomes) == {"answered", "busy", "cancel", "no_answer", "vanish"}  # all ran
    assert check(outcome, "no_orphan_sessions").observed == 0


def assert_leaks_every_busy_call(outcome: RunOutcome) -> None:
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    leaked = busy_calls(outcome)
    assert leaked > 0
    orphans = check(outcome, "no_orphan_sessions")
    assert not orphans.passed and orphans.observed == leaked
    assert "e.g. call-id" in orphans.detail
    baseline = check(outcome, "back_to_baseline")
    assert not baseline.passed and baseline.observed == f"media.sessions {leaked}"


def test_stock_config_passes_with_rtpengine(tmp_path: Path):
    outcome = run(tmp_path, "stock")
    assert_passes(outcome)
    assert outcome.summary.sut.services == ["rtpengine", "kamailio"]
    assert outcome.summary.counters["kamailio.shm_used"].peak > 0


def test_no_delete_on_busy_leaks_with_rtpengine(tmp_path: Path):
    assert_leaks_every_busy_call(run(tmp_path, "broken", broken=True))


@pytest.mark.slow
def test_stock_config_passes_with_the_model_relay(tmp_path: Path):
    outcome = run(tmp_path, "stock-relay", "services.media=relay")
    assert_passes(outcome)
    assert outcome.summary.sut.services == ["kmod", "relay", "kamailio"]


@pytest.mark.slow
def test_no_delete_on_busy_leaks_with_the_model_relay(tmp_path: Path):
    assert_leaks_every_busy_call(run(tmp_path, "broken-relay", "services.media=relay",
                                     broken=True))
