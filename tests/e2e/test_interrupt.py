"""Ctrl-C in the middle of a run stops everything the run started."""

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

PIN_RACE = Path(__file__).resolve().parents[2] / "scenarios" / "pin-race.yaml"

pytestmark = [pytest.mark.e2e]


def labelled_processes(run_dir_env: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("RIG_RUN_ID") and env.get("RIG_RUNTIME_DIR") == run_dir_env:
            found.append(proc)
    return found




@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_leaves_nothing_behind(tmp_path: Path, private_runtime: Path, sig):
    out = tmp_path / "run"
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(PIN_RACE), "--out", str(out),
         "--no-progress", "--set", "duration=60"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(private_runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wait_for(lambda: len(labelled_processes(str(private_runtime))) >= 2, 30), \
            "kmod and relay should be up"
        time.sleep(1.0)  # load is running
        rig.send_signal(sig)
        _, err = rig.communicate(timeout=30)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.communicate()  # reap it and close its pipes; the next test starts clean
    assert rig.returncode == 130, err
    assert "interrupted" in err
    assert wait_for(lambda: not labelled_processes(str(private_runtime)), 5)
    assert list((private_runtime / "runs").glob("*.json")) == []
    assert list((private_runtime / "hosts").glob("*.lock")) == []
    summary = (out / "summary.json").read_text()
    assert "incomplete" in summary
    if socket_available():  # the capture was flushed, not cut: a whole pcap
        assert len(list(read_datagrams(out / "capture.pcap"))) > 0
