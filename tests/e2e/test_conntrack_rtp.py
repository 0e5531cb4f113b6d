"""conntrack-rtp end to end in a network namespace of the run's own: RTP through the relay
behind a stateful ruleset fills conntrack with the calls and drains it one UDP timeout after
the load; the notrack ruleset keeps the count flat; the namespace is gone after the run,
after a Ctrl-C, and (through `rig gc`) after a kill. Needs root, ip, nft and nf_conntrack
(CI has them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import wait_for

from rig.runner import RunOutcome, RunRequest, run_scenario
from rig.summary import CheckEntry
from rig.topology import netns
from rig.topology.runtime import collect_garbage

ROOT = Path(__file__).resolve().parents[2]
CONNTRACK_RTP = ROOT / "scenarios" / "conntrack-rtp.yaml"
NOTRACK = ROOT / "scenarios" / "patches" / "notrack-rtp.patch"
SHORT = ("duration=3",)  # 75 calls at 25 calls/s, two RTP flows each

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.skipif(netns.missing_capability() is not None,
                       reason=f"{netns.missing_capability()}"),
]


def run(tmp_path: Path, name: str, *, notrack: bool = False) -> RunOutcome:
    return run_scenario(RunRequest(
        scenario_path=CONNTRACK_RTP,
        overrides=SHORT,
        patches=(NOTRACK,) if notrack else (),
        out=tmp_path / name,
        progress=False,
    ))


def check(outcome: RunOutcome, name: str) -> CheckEntry:
    return next(c for c in outcome.summary.checks if c.name == name)


def test_rtp_fills_conntrack_and_it_drains_within_the_udp_timeout(tmp_path: Path):
    outcome = run(tmp_path, "tracked")
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    count = outcome.summary.counters["conntrack.count"]
    calls = outcome.summary.load.calls_completed
    assert calls is not None and calls > 50
    # every call's two legs are entries, all alive at the peak (hold + timeout > duration)
    assert count.peak - count.first >= calls, count
    assert check(outcome, "back_to_baseline").passed
    slab = outcome.summary.counters["slab.nf_conntrack.active"]
    assert slab.peak >= count.peak
    name = outcome.summary.sut.netns
    assert name is not None and name.startswith(netns.PREFIX) and not netns.exists(name)


def test_notrack_for_the_rtp_ports_keeps_the_count_at_baseline(tmp_path: Path):
    outcome = run(tmp_path, "notrack", notrack=True)
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    assert outcome.summary.sut.patches == ["notrack-rtp.patch"]
    assert (outcome.summary.load.calls_completed or 0) > 50
    count = outcome.summary.counters["conntrack.count"]
    # only the rig's own signalling flows (SIP, NG) come and go
    assert count.peak - count.first <= 5, count
    assert outcome.summary.sut.netns is not None
    assert not netns.exists(outcome.summary.sut.netns)




def live_namespace(runtime: Path) -> str | None:
    """The namespace a running run's record lists, once it exists."""
    for record in (runtime / "runs").glob("*.json"):
        try:
            names = json.loads(record.read_text()).get("namespaces", [])
        except (OSError, ValueError):
            continue
        for name in names:
            if netns.exists(name):
                return str(name)
    return None


def start_rig(tmp_path: Path, runtime: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(CONNTRACK_RTP), "--out",
         str(tmp_path / "run"), "--no-progress", "--set", "duration=30"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(rig: subprocess.Popen[str]) -> None:
    if rig.poll() is None:
        rig.kill()
    rig.communicate()


def test_ctrl_c_deletes_the_namespace(tmp_path: Path, private_runtime: Path):
    rig = start_rig(tmp_path, private_runtime)
    try:
        name = wait_for(lambda: live_namespace(private_runtime), 30)
        assert name, "the run's namespace should exist"
        time.sleep(1.0)  # load is running
        rig.send_signal(signal.SIGINT)
        _, err = rig.communicate(timeout=30)
    finally:
        stop(rig)
    assert rig.returncode == 130, err
    assert not netns.exists(name)
    assert list((private_runtime / "runs").glob("*.json")) == []


def test_gc_deletes_the_namespace_of_a_killed_run(tmp_path: Path, private_runtime: Path):
    rig = start_rig(tmp_path, private_runtime)
    try:
        name = wait_for(lambda: live_namespace(private_runtime), 30)
        assert name, "the run's namespace should exist"
        rig.kill()
        rig.wait()
        assert netns.exists(name), "a SIGKILL leaves it behind"
        report = collect_garbage()
        assert report.namespaces == 1
        assert not netns.exists(name)
    finally:
        stop(rig)
        for record in (private_runtime / "runs").glob("*.json"):
            for left in json.loads(record.read_text()).get("namespaces", []):
                netns.delete(left)
