"""A SUT process SIGKILLed mid-run: the verdict is fail with the cause named (service, pid,
signal, time), the results are whole, and nothing the run started is left running.

The kill goes to the pid the run record lists for the service, after the tenth sample is
on disk (the load is running by then), so the point of the kill is the test's choice."""

import html
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rig.results import read_events, read_series, read_summary

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"  # no other failure
KILL_AFTER_SAMPLES = 10
DURATION = "duration=8"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(90)]
needs_kamailio = pytest.mark.skipif(not (shutil.which("kamailio") and shutil.which("kamcmd")),
                                    reason="needs kamailio (Debian package)")
needs_rtpengine = pytest.mark.skipif(not shutil.which("rtpengine"),
                                     reason="needs rtpengine (Debian package rtpengine-daemon)")


def recorded_pid(runtime: Path, service: str) -> int | None:
    for path in (runtime / "runs").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # being replaced
            continue
        for entry in record["processes"]:
            if entry["name"] == service:
                return int(entry["pid"])
    return None


def samples_on_disk(folder: Path) -> int:
    try:
        return max(0, len((folder / "series.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def wait_for(predicate, timeout: float, rig: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and rig.poll() is None:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def labelled(runtime: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("RIG_RUNTIME_LABEL") == str(runtime):
                found.append(proc)
        except psutil.Error:
            continue
    return [p for p in found if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize(("scenario", "service", "patches"), [
    ("pin-race.yaml", "relay", (FIX,)),
    ("pin-race.yaml", "kmod", (FIX,)),
    pytest.param("pin-race-kamailio.yaml", "kamailio", (FIX,), marks=needs_kamailio),
    pytest.param("session-leak.yaml", "rtpengine", (),
                 marks=[needs_kamailio, needs_rtpengine]),
])
def test_a_sut_killed_mid_run_fails_the_run_naming_the_cause(
        tmp_path: Path, private_runtime: Path, scenario: str, service: str,
        patches: tuple[Path, ...]):
    out = tmp_path / "run"
    fixes = [arg for patch in patches for arg in ("--patch", str(patch))]
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(ROOT / "scenarios" / scenario),
         "--out", str(out), "--no-progress", "--set", DURATION, *fixes],
        cwd=ROOT, env={**os.environ, "RIG_RUNTIME_DIR": str(private_runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: recorded_pid(private_runtime, service) is not None, 30, rig), \
            rig.stderr.read() if rig.poll() is not None else "no record"
        assert wait_for(lambda: samples_on_disk(out) >= KILL_AFTER_SAMPLES, 30, rig)
        pid = recorded_pid(private_runtime, service)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = rig.communicate(timeout=60)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.communicate()
    assert rig.returncode == 1, stderr  # a SUT crash is a failed check, not an infra error
    summary = read_summary(out)
    assert summary.verdict == "fail", stderr
    alive = summary.check("services_alive")
    assert alive is not None and not alive.passed
    assert alive.detail.startswith(f"{service} (pid {pid}) died with SIGKILL at t="), alive.detail
    assert f"died: {alive.detail}" in stdout  # the console names it under the table
    assert html.escape(alive.detail) in (out / "report.html").read_text()
    crash = next(e for e in read_events(out) if e.kind == "crash")
    assert (crash.data["service"], crash.data["pid"], crash.data["signal"]) == (
        service, pid, "SIGKILL")
    assert 0 < crash.t < float(DURATION.split("=")[1])
    # whole results: every row of series.csv parses, samples after the kill are there
    series = read_series(out)
    assert len(series.samples) >= KILL_AFTER_SAMPLES
    assert series.samples[-1].t > crash.t
    assert summary.load.calls_attempted > 0
    assert not labelled(private_runtime), "the run left processes behind"
    assert list((private_runtime / "runs").glob("*.json")) == []
