"""capture.pcap of a real run: every call's SIP is in it, the cap keeps both ends, the
report links it and draws ladders, and `capture: off` leaves no file."""

from itertools import pairwise
from pathlib import Path

import pytest

from rig.capture import socket_available
from rig.pcapcalls import collect_calls, read_datagrams
from rig.runner import RunRequest, run_scenario
from rig.summary import Capture

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not socket_available(), reason="capturing needs CAP_NET_RAW"),
]

SCENARIO = """\
name: captured
duration: 2
settle: 0.5
load: {cps: 5, hold: 0.5, outcomes: {answered: 0.6, busy: 0.4, cancel: 0, no_answer: 0}}
checks:
  relay_alive: {}
"""


def run(tmp_path: Path, *overrides: str):
    scenario = tmp_path / "captured.yaml"
    scenario.write_text(SCENARIO)
    return run_scenario(RunRequest(scenario, overrides=overrides, out=tmp_path / "run",
                                   progress=False))


def test_every_call_of_the_run_is_in_its_capture(tmp_path: Path) -> None:
    outcome = run(tmp_path)
    block = outcome.summary.capture
    assert block.captured and not block.truncated, block
    assert block.filter.startswith("inbound and udp and host 127.")
    calls = collect_calls(read_datagrams(outcome.folder / "capture.pcap"))
    assert len(calls) == outcome.summary.load.calls_attempted > 0
    assert {c.outcome for c in calls.values()} <= {"answered", "busy"}
    assert all(c.ng for c in calls.values())  # the rig's offers to the relay
    page = (outcome.folder / "report.html").read_text()
    assert '<a href="capture.pcap">capture.pcap</a>' in page
    assert page.count('<svg class="ladder"') == len({c.outcome for c in calls.values()})


def test_the_size_cap_keeps_the_first_and_the_last_packets(tmp_path: Path) -> None:
    outcome = run(tmp_path, "capture.max_mb=0.05")
    block = outcome.summary.capture
    path = outcome.folder / "capture.pcap"
    assert block.truncated and block.dropped_middle > 0, block
    assert path.stat().st_size == block.bytes <= 0.05 * 1024 * 1024
    times = [d.t for d in read_datagrams(path)]
    assert len(times) == block.written
    # Loopback packets sent from two CPUs can carry kernel timestamps a few µs out of
    # order; a tail written out of order would be off by whole packet intervals.
    assert all(later >= earlier - 0.001 for earlier, later in pairwise(times))


def test_capture_off_writes_no_capture(tmp_path: Path) -> None:
    outcome = run(tmp_path, "capture=off")
    assert outcome.summary.capture == Capture(enabled=False, captured=False)
    assert not (outcome.folder / "capture.pcap").exists()
    assert "no capture" in (outcome.folder / "report.html").read_text()
