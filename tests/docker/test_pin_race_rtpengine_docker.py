"""pin-race-rtpengine on Debian sid's rtpengine 26.0.1 in its container: it reports no
bufferpools, so the shard check reads the memory-map estimate of the daemon's process as
the host sees it, and says so."""

from pathlib import Path
from typing import Any

import pytest

from rig.runner import RunRequest, run_scenario

pytestmark = pytest.mark.docker
SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "pin-race-rtpengine.yaml"
BUILD_TIMEOUT_S = 600  # a cold build of sid's rtpengine image; cached, the run takes ~30 s


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_sid_rtpengine_shards_come_from_its_memory_map(
    tmp_path: Path, runtime: Path, suite_base: Any
):
    suite_base("sid")
    outcome = run_scenario(RunRequest(
        scenario_path=SCENARIO,
        overrides=("target=docker", "services.rtpengine.suite=sid", "duration=6",
                   "checks.shards_flat_after_warmup.warmup=4.0"),
        out=tmp_path / "run",
        progress=False,
    ))
    assert outcome.summary.sut.versions["rtpengine"].startswith("26.0.1"), outcome.summary.sut
    shards = next(c for c in outcome.summary.checks if c.name == "shards_flat_after_warmup")
    assert shards.detail.startswith("from the memory-map estimate: "), shards.detail
    # the probe read the container's daemon: its shards grew from the start under load
    estimate = outcome.summary.counters["rtpengine.maps.shards_estimate"]
    assert estimate.peak > estimate.first >= 1, estimate
