"""One run across separate hosts: three network namespaces joined by veth pairs (198.18.x.0/24,
nothing routed beyond them), a Ray node in each; the SUT (kmod + model relay) and the rig in
the first (`rig_sut`), one generator actor on each of the other two. pin-race fails on the
stock relay and passes with the fix, with the bursts fired from both generator hosts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nshosts
import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
FIX = ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"

# pin-race decides on timing: it runs with the other races, one at a time (tests/conftest.py)
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timing, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def hosts():
    if (why := nshosts.missing()) is not None:
        pytest.skip(f"separate hosts as network namespaces: {why}")
    with nshosts.namespace_hosts(generators=2) as made:
        yield made


def run_on_sut_host(hosts: nshosts.Hosts, out: Path, runtime: Path, *extra: str
                    ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "rig.cli", "run", str(PIN_RACE), "--out", str(out),
            "--no-progress", "--cluster", hosts.address,
            "--set", f"targets.host={hosts.sut_ip}",
            "--set", f"targets.allow=[{hosts.subnet}.0/24]",
            "--set", "load.processes=2", *extra]
    return subprocess.run(hosts.exec_argv(hosts.sut, *argv),
                          env={**hosts.env(), "RIG_RUNTIME_DIR": str(runtime)},
                          capture_output=True, text=True, timeout=180, cwd=ROOT)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def check_bursts_from_both_hosts(hosts: nshosts.Hosts, run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    nodes = summary["cluster"]["nodes"]
    assert sorted(n["ip"] for n in nodes) == [hosts.ip(1), hosts.ip(2)], nodes
    bursts = [e["data"] for e in events(run) if e["kind"] == "burst"]
    assert bursts and all(len(b["nodes"]) == 2 for b in bursts), bursts


def test_pin_race_across_hosts_fails_on_stock_and_passes_with_the_fix(
        hosts, tmp_path, private_runtime):
    stock = run_on_sut_host(hosts, tmp_path / "stock", private_runtime)
    assert stock.returncode == 1, stock.stderr[-2000:]
    verdict = json.loads((tmp_path / "stock" / "summary.json").read_text())
    failed = {c["name"] for c in verdict["checks"] if not c["passed"]}
    assert {"no_phantom_shards", "relay_alive"} <= failed, failed
    check_bursts_from_both_hosts(hosts, tmp_path / "stock")  # the relay aborted after 2

    fixed = run_on_sut_host(hosts, tmp_path / "fixed", private_runtime, "--patch", str(FIX))
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    check_bursts_from_both_hosts(hosts, tmp_path / "fixed")
    stop = next(e["data"] for e in events(tmp_path / "fixed") if e["kind"] == "load_stop")
    assert sorted(p["ip"] for p in stop["processes"]) == [hosts.ip(1), hosts.ip(2)]
    assert all(p["completed"] > 10 for p in stop["processes"]), stop


def test_the_rig_must_run_on_the_sut_host(hosts, tmp_path, private_runtime):
    argv = [sys.executable, "-m", "rig.cli", "run", str(PIN_RACE), "--out", str(tmp_path / "r"),
            "--no-progress", "--cluster", hosts.address,
            "--set", f"targets.allow=[{hosts.subnet}.0/24]", "--set", "load.processes=2"]
    done = subprocess.run(hosts.exec_argv(hosts.names[1], *argv),
                          env={**hosts.env(), "RIG_RUNTIME_DIR": str(private_runtime)},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"rig: infrastructure error: --cluster {hosts.address}: the SUT runs where `rig run` "
        f"runs, and this host is not the node that offers rig_sut ({hosts.sut_ip}): run the "
        "rig there")
    assert os.listdir(private_runtime / "runs") == []
