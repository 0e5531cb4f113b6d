"""`load.processes: 2` end to end: two generator processes against the model relay give the
summary of one, with the calls of both; Ctrl-C or SIGTERM leaves no generator behind, and a
generator that dies makes the verdict error, naming it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from waiting import wait_for

from rig.capture import socket_available
from rig.pcapcalls import read_datagrams
from rig.runner import RunRequest, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCENARIO = """\
name: two-generators
duration: 3
settle: 2
seed: 4
services:
  kmod: {source: containers/kmod}
  relay: {source: containers/relay, workers: 2, shard_size: 65536}
  patches: []
load:
  processes: 1
  cps: 40
  max_concurrent: 100
  hold: 0.5
  outcomes: {answered: 0.7, busy: 0.1, cancel: 0.1, no_answer: 0.1}
  no_answer_timeout: 0.5
  rtp: {codec: PCMU, ptime: 20}
bursts:
  first_at: 1.0
  every: 1.0
  count: 2
  workers: 2
  streams_per_worker: 3
  hold: 0.5
probes:
  interval: 0.25
checks:
  relay_alive: {}
  calls_completed: {min_ratio: 0.9}
  no_orphan_sessions: {tolerance: 0}
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "two-generators.yaml"
    path.write_text(SCENARIO)
    return path


def shape(value):
    """The keys of a JSON value, recursively: what a reader of summary.json relies on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k != "outcomes"}
    return type(value).__name__ if value is not None else "null"


def test_two_processes_give_the_summary_of_one_with_the_calls_of_both(tmp_path, scenario):
    runs = {}
    for n in (1, 2):
        outcome = run_scenario(RunRequest(scenario_path=scenario, out=tmp_path / f"p{n}",
                                          overrides=(f"load.processes={n}",), progress=False))
        assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
        runs[n] = json.loads((tmp_path / f"p{n}" / "summary.json").read_text())
    one, two = runs[1]["load"], runs[2]["load"]
    assert shape(one) == shape(two)
    assert shape(runs[1]["bursts"]) == shape(runs[2]["bursts"])
    events = read_events(tmp_path / "p2")
    stop = next(e["data"] for e in events if e["kind"] == "load_stop")
    per_process = stop["processes"]
    assert len(per_process) == 2 and all(p["completed"] > 20 for p in per_process)
    assert two["calls_attempted"] == sum(p["attempted"] for p in per_process)
    assert two["calls_completed"] == sum(p["completed"] for p in per_process)
    # the same schedule, cut in two: the calls of one process, within a loaded machine's lag
    assert abs(two["calls_attempted"] - one["calls_attempted"]) <= 0.1 * one["calls_attempted"]
    assert two["latency"]["invite_200"]["count"] == two["outcomes"]["answered"]
    bursts = [e["data"] for e in events if e["kind"] == "burst"]
    assert [b["index"] for b in bursts] == [0, 1]  # one event per burst, not per process
    assert all(b["processes"] == 2 for b in bursts)
    # 2 x 3 calls, two streams each; on a loaded machine a call may miss its burst's instant
    # (setup took longer than the burst's lead), so the count is at most, not exactly, 12
    streams = [b["streams"] for b in bursts]
    assert all(n <= 12 for n in streams) and max(streams) > 6, streams
    assert runs[2]["bursts"]["count"] == 2
    for n in (1, 2):  # per-node columns and the cluster block are for --cluster runs only
        header = (tmp_path / f"p{n}" / "series.csv").read_text().splitlines()[0].split(",")
        assert [c for c in header if c.startswith("load.")] == [
            "load.calls_active", "load.calls_completed", "load.calls_failed",
            "load.rtp_sent", "load.rtp_received"], header
        assert runs[n]["cluster"] is None
    addresses = runs[2]["sut"]["addresses"]  # where to look for the run's traffic
    assert addresses["host"].startswith("127.") and addresses["host"] != "127.0.0.1"
    assert (addresses["uac_port"], addresses["uas_port"]) == (5060, 5080)
    assert addresses["generator_sip_ports"] == [5102, 5103]
    assert addresses["sip_port"] is None  # topology model: no proxy
    assert runs[1]["sut"]["addresses"]["generator_sip_ports"] == []
    lo, hi = addresses["relay_rtp_ports"]
    assert 0 < lo < hi and addresses["rig_rtp_ports"][0] > hi
    if socket_available():  # the capture has the second process's SIP too (its own ports)
        ports = {d.dst[1] for d in read_datagrams(tmp_path / "p2" / "capture.pcap")}
        assert {5060, 5080, 5102, 5103} <= ports


def read_events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def generators(rig: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in rig.children(recursive=True):
        try:
            if "rig.load.processes" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found




def start_rig(scenario: Path, out: Path, runtime: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(scenario), "--out", str(out),
         "--no-progress", "--set", "duration=60", "--set", "load.processes=2"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_stops_every_generator(tmp_path, scenario, private_runtime, sig):
    rig = start_rig(scenario, tmp_path / "run", private_runtime)
    try:
        parent = psutil.Process(rig.pid)
        assert wait_for(lambda: len(generators(parent)) == 2, 30), "2 generators should run"
        children = parent.children(recursive=True)  # generators, their burst senders, SUT
        time.sleep(1.5)  # the load is running
        rig.send_signal(sig)
        _, err = rig.communicate(timeout=30)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.communicate()
    assert rig.returncode == 130, err
    assert "Traceback" not in err, err
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [c.cmdline() for c in left]


def test_a_generator_that_dies_gives_verdict_error_naming_it(tmp_path, scenario,
                                                            private_runtime):
    rig = start_rig(scenario, tmp_path / "run", private_runtime)
    try:
        parent = psutil.Process(rig.pid)
        assert wait_for(lambda: len(generators(parent)) == 2, 30), "2 generators should run"
        time.sleep(1.5)
        both = sorted(generators(parent), key=lambda p: p.pid)
        both[-1].send_signal(signal.SIGKILL)
        out, err = rig.communicate(timeout=60)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.communicate()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert rig.returncode == 3, err
    assert summary["verdict"] == "error"
    assert "exited with code -9" in summary["error"]
    assert "generator process" in summary["error"]
    assert "error: generator process" in out
    assert not [p for p in both if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
