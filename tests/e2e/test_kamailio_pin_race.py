"""pin-race with Kamailio driving the model relay: phantoms on the stock pool, none with
the recheck-after-pin fix, the same verdicts as when the rig sends NG itself."""

import shutil
from pathlib import Path

import pytest

from rig.runner import RunOutcome, RunRequest, run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "pin-race-kamailio.yaml"
FIX = ROOT / "scenarios" / "patches" / "relay-recheck-after-pin.patch"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timing,
    pytest.mark.timeout(40),
    pytest.mark.skipif(not (shutil.which("kamailio") and shutil.which("kamcmd")),
                       reason="needs kamailio (Debian package)"),
]


def run(tmp_path: Path, name: str, patches: tuple[Path, ...] = ()) -> RunOutcome:
    return run_scenario(RunRequest(SCENARIO, overrides=("duration=8",), patches=patches,
                                   out=tmp_path / name, progress=False))


def failed(outcome: RunOutcome) -> set[str]:
    return {c.name for c in outcome.summary.checks if not c.passed}


def test_stock_relay_behind_kamailio_pins_phantoms(tmp_path: Path):
    outcome = run(tmp_path, "stock")
    assert outcome.verdict == "fail"
    assert failed(outcome) & {"no_phantom_shards", "relay_alive", "pins_below_ceiling"}
    assert outcome.summary.sut.services == ["kmod", "relay", "kamailio"]
    assert outcome.summary.load.calls_completed > 0


def test_fixed_relay_behind_kamailio_passes(tmp_path: Path):
    outcome = run(tmp_path, "fixed", (FIX,))
    assert outcome.verdict == "pass", failed(outcome)
