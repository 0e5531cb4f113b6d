"""Many real runs at once: a 2x2 matrix with --jobs 2 and on an embedded Ray gives the serial
verdicts in the serial files; Ctrl-C stops every child run; a plain command imports no Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rig.cli import main

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
FIX = ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"
# the fixed relay, a load short enough for a test, and a flat-pins check that only a leak
# fails (a fixed pool still adds a shard now and then while the load grows)
SHORT = ("--set", "duration=8", "--set", "settle=1",
         "--set", "checks.pins_flat_after_warmup.warmup=4",
         "--set", "checks.pins_flat_after_warmup.tolerance=50")
AXES = ("--axis", "checks.pins_below_ceiling.ceiling=16,1",
        "--axis", "checks.pins_below_alert.alert=12,1")
EXPECTED = {  # each cell's failed checks follow from its limits: pins climb above 1
    "ceiling-16_alert-12": set(),
    "ceiling-16_alert-1": {"pins_below_alert"},
    "ceiling-1_alert-12": {"pins_below_ceiling"},
    "ceiling-1_alert-1": {"pins_below_ceiling", "pins_below_alert"},
}

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def matrix(out: Path, *extra: str) -> int:
    return main(["matrix", str(PIN_RACE), "--patch", str(FIX), *AXES, *SHORT,
                 "--out", str(out), "--no-progress", *extra])


def failed_by_cell(out: Path) -> dict[str, set[str]]:
    saved = json.loads((out / "matrix.json").read_text())
    assert saved["status"] == "complete"
    return {cell["name"]: {name for name, passed, _ in cell["checks"] if not passed}
            for cell in saved["cells"]}


def table_rows(out: Path) -> list[str]:
    return [line.split()[0] for line in (out / "matrix.txt").read_text().splitlines()[2:]]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "m"
    assert matrix(out) == 1
    return out


@pytest.mark.xdist_group("jobs-matrix")  # one worker computes the serial matrix once
@pytest.mark.parametrize("extra", [("--jobs", "2"), ("--jobs", "2", "--cluster", "local")],
                         ids=["pool", "ray"])
def test_a_2x2_matrix_at_once_gives_the_serial_verdicts_in_the_serial_files(
        serial: Path, tmp_path: Path, extra: tuple[str, ...], private_runtime: Path):
    assert failed_by_cell(serial) == EXPECTED
    out = tmp_path / "m"
    assert matrix(out, *extra) == 1
    assert failed_by_cell(out) == failed_by_cell(serial)
    assert table_rows(out) == table_rows(serial) == list(EXPECTED)
    saved = json.loads((out / "matrix.json").read_text())
    assert [c["name"] for c in saved["cells"]] == saved["planned"] == list(EXPECTED)
    spans = [(t["started"], t["finished"]) for t in
             (json.loads((out / c / "summary.json").read_text())["timing"] for c in EXPECTED)]
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans if a != b), \
        f"no two runs overlapped: {spans}"
    assert list((private_runtime / "runs").glob("*.json")) == []


def labelled(runtime: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if proc.pid != os.getpid() and env.get("RIG_RUNTIME_DIR") == str(runtime):
            found.append(proc)  # the rig, its run processes, Ray's daemons, the services
    return found


def services_of(runtime: Path) -> list[psutil.Process]:
    return [p for p in labelled(runtime) if p.is_running() and _env(p).get("RIG_RUN_ID")]


def _env(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(("how", "where"), [
    ("terminal", ()), ("parent-sigint", ()), ("parent-sigterm", ()),
    ("terminal", ("--cluster", "local")), ("parent-sigint", ("--cluster", "local"))],
    ids=["pool-terminal", "pool-sigint", "pool-sigterm", "ray-terminal", "ray-sigint"])
def test_ctrl_c_during_a_jobs_matrix_stops_every_child_run(
        tmp_path: Path, private_runtime: Path, how: str, where: tuple[str, ...]):
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "matrix", str(PIN_RACE), "--patch", str(FIX), *AXES,
         "--set", "duration=60", "--jobs", "2", *where, "--out", str(tmp_path / "m"),
         "--no-progress"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(private_runtime)}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # two runs at once, each with its kmod and relay up
        assert wait_for(lambda: len(services_of(private_runtime)) >= 4, 120), \
            "both runs should be up"
        time.sleep(1.0)
        if how == "terminal":  # Ctrl-C reaches the whole foreground process group
            os.killpg(rig.pid, signal.SIGINT)
        else:
            rig.send_signal(signal.SIGINT if how == "parent-sigint" else signal.SIGTERM)
        _, err = rig.communicate(timeout=120)
    finally:
        if rig.poll() is None:
            os.killpg(rig.pid, signal.SIGKILL)
            rig.communicate()
    assert rig.returncode == 130, err
    assert wait_for(lambda: not labelled(private_runtime), 10), labelled(private_runtime)
    assert list((private_runtime / "runs").glob("*.json")) == []
    assert list((private_runtime / "hosts").glob("*.lock")) == []
    saved = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert saved["status"] == "incomplete"
    assert "Traceback" not in err, err


def test_a_plain_run_and_a_jobs_matrix_import_no_ray(tmp_path: Path):
    assert importlib.util.find_spec("ray") is not None, "ray is installed (make venv)"
    script = (
        "import sys\n"
        "from rig.cli import main\n"
        f"run = main(['run', {str(PIN_RACE)!r}, '--set', 'duration=2', '--set', 'settle=0',"
        f" '--out', {str(tmp_path / 'run')!r}, '--no-progress'])\n"
        f"matrix = main(['matrix', {str(PIN_RACE)!r}, '--axis', 'seed=1,2', '--jobs', '2',"
        f" '--set', 'duration=2', '--set', 'settle=0', '--out', {str(tmp_path / 'm')!r},"
        " '--no-progress'])\n"
        "print(run, matrix, 'ray' in sys.modules, any(m.startswith('ray.') for m in "
        "sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if k != "RAY_ADDRESS"})
    assert done.returncode == 0, done.stderr
    run, matrix_code, ray, ray_parts = done.stdout.split()[-4:]
    assert run in ("0", "1") and matrix_code in ("0", "1"), done.stdout
    assert (ray, ray_parts) == ("False", "False")
    assert (tmp_path / "m" / "seed-2" / "summary.json").is_file()
