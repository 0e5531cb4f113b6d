"""A system under test that names a foreign media address: `rig run` stops with exit 2 and
one line naming the address and where it came from, before any packet goes there."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
FOREIGN_ANSWER = Path(__file__).with_name("relay-answers-a-foreign-address.patch")

pytestmark = [pytest.mark.e2e]


def rig_run(out: Path, runtime: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rig.cli", "run", str(PIN_RACE), "--out", str(out),
         "--no-progress", "--patch", str(FOREIGN_ANSWER), "--set", "duration=20",
 *extra],
        env={**os.environ, "RIG_RUNTIME_DIR": str(runtime)},
        capture_output=True, text=True, timeout=120,
    )


def test_a_relay_answer_naming_a_foreign_address_stops_the_run(
    tmp_path: Path, private_runtime: Path
) -> None:
    done = rig_run(tmp_path / "run", private_runtime)
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(
        r"rig: error: refusing to send to 203\.0\.113\.7:\d+ \(SDP c=/m= from the relay's "
        r"answer\): not loopback, not the rig's own and not in targets.allow",
        done.stderr.strip().splitlines()[-1]), done.stderr
    assert "Traceback" not in done.stderr
    assert '"verdict": "incomplete"' in (tmp_path / "run" / "summary.json").read_text()
    events = (tmp_path / "run" / "events.jsonl").read_text()
    assert '"unsafe_destination"' in events
    assert list((private_runtime / "runs").glob("*.json")) == []  # everything was stopped
