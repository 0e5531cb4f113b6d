"""target-leak end to end on the local backend: kmod's forwarding targets track the relay's
streams on the stock relay; with the patch that skips them on the timeout path every
vanished call leaves its two targets behind, and kmod refuses targets past its limit."""

from pathlib import Path

import pytest

from rig.results import read_events
from rig.runner import RunOutcome, RunRequest, run_scenario
from rig.summary import CheckEntry

ROOT = Path(__file__).resolve().parents[2]
TARGET_LEAK = ROOT / "scenarios" / "target-leak.yaml"
KEEP_TARGET = ROOT / "scenarios" / "patches" / "relay-keep-target-on-timeout.patch"
SHORT = ("duration=4", "settle=3.5")  # ~24 vanished calls at 20 calls/s and 30% vanish

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def run(tmp_path: Path, name: str, *overrides: str, patched: bool = False) -> RunOutcome:
    return run_scenario(RunRequest(
        scenario_path=TARGET_LEAK,
        overrides=(*SHORT, *overrides),
        patches=(KEEP_TARGET,) if patched else (),
        out=tmp_path / name,
        progress=False,
    ))


def check(outcome: RunOutcome, name: str) -> CheckEntry:
    return next(c for c in outcome.summary.checks if c.name == name)


def test_stock_relay_removes_the_targets_of_timed_out_calls(tmp_path: Path):
    outcome = run(tmp_path, "stock")
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    assert outcome.summary.load.outcomes["vanish"] > 0
    counters = outcome.summary.counters
    assert counters["kmod.targets"].peak > 0, "streams were kernelised"
    assert counters["kmod.targets"].last == 0
    tracks = check(outcome, "tracks")
    assert "does not approach kmod.max_targets (4096)" in tracks.detail
    assert tracks.values["seconds_to_ceiling"] is None, "a pair that tracks is not projected"


def test_keep_target_patch_leaks_two_targets_per_vanished_call(tmp_path: Path):
    outcome = run(tmp_path, "patched", patched=True)
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    tracks = check(outcome, "tracks")
    vanished = outcome.summary.load.outcomes["vanish"]
    assert vanished > 0
    # both legs of a vanished call had a stream with a target; none of them went
    assert not tracks.passed and tracks.observed == 2 * vanished, tracks
    assert outcome.summary.counters["kmod.targets"].last == 2 * vanished
    assert outcome.summary.counters["relay.streams"].last == 0
    assert "drift rate +" in tracks.detail
    assert "reaches kmod.max_targets (4096) in ~" in tracks.detail
    # the same numbers as values a report shows
    assert tracks.values["drift"] == 2 * vanished and tracks.values["ceiling"] == 4096
    assert (tracks.values["drift_per_minute"] or 0) > 0
    assert (tracks.values["seconds_to_ceiling"] or 0) > 0
    # the relay itself is fine: only the kernel's view drifted
    assert check(outcome, "back_to_baseline").passed


def test_kmod_refuses_targets_past_its_limit(tmp_path: Path):
    limit = 20
    outcome = run(tmp_path, "limit", f"services.kmod.max_targets={limit}", patched=True)
    counters = outcome.summary.counters
    assert counters["kmod.targets"].peak == limit
    refused = [e for e in read_events(outcome.folder) if e.kind == "kernel_refused"]
    assert refused and all("ENOMEM" in str(e.data["reason"]) for e in refused)
    # the refused streams went on in userspace: the calls still completed
    assert check(outcome, "calls_completed").passed
    assert check(outcome, "relay_alive").passed
    tracks = check(outcome, "tracks")
    assert not tracks.passed and f"kmod.max_targets ({limit})" in tracks.detail
