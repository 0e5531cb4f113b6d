"""pin-race-rtpengine end to end on the local backend with Debian bookworm's rtpengine 10.5,
which predates the bufferpool: the shard check says so and the run does not pass."""

import shutil
from pathlib import Path

import pytest

from rig.runner import RunRequest, run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "pin-race-rtpengine.yaml"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not shutil.which("rtpengine"), reason="needs rtpengine (Debian's 10.5)"),
]


def test_on_rtpengine_10_5_the_shard_check_is_unusable_input_not_a_pass(tmp_path: Path):
    outcome = run_scenario(RunRequest(
        scenario_path=SCENARIO,
        overrides=("duration=4", "checks.shards_flat_after_warmup.warmup=2.0"),
        out=tmp_path / "run",
        progress=False,
    ))
    assert outcome.summary.sut.versions["rtpengine"].startswith("10.5.")
    shards = next(c for c in outcome.summary.checks if c.name == "shards_flat_after_warmup")
    assert not shards.passed and shards.diagnosis == "unusable"
    assert shards.detail.startswith("rtpengine 10.5 predates the bufferpool")
    assert outcome.verdict != "pass"
    # the rest of the run was real: bursts reached the daemon and it relayed them
    assert outcome.summary.bursts.count >= 1
    assert next(c for c in outcome.summary.checks if c.name == "relay_alive").passed
