"""load.rtp.pcap in a run: every call plays a user's capture through the model relay, and a
capture of another codec stops the run before anything starts (exit 2)."""

import sys
from pathlib import Path

import pytest

from rig.errors import UsageError
from rig.runner import RunRequest, run_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "load"))
from test_rtpcapture import write_capture  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SCENARIO = """
name: play
duration: 2
settle: 1
services:
  kmod: {source: containers/kmod}
  relay: {source: containers/relay, workers: 2, shard_size: 65536}
load:
  cps: 5
  hold: 1.0
  rtp: {codec: CODEC, ptime: 20, pcap: call.pcap}
checks:
  relay_alive: {}
  calls_completed: {min_ratio: 0.9}
"""


def scenario(tmp_path: Path, codec: str) -> Path:
    write_capture(tmp_path / "call.pcap")
    path = tmp_path / "play.yaml"
    path.write_text(SCENARIO.replace("CODEC", codec))
    return path


def test_calls_play_the_capture_through_the_relay(tmp_path: Path):
    outcome = run_scenario(RunRequest(scenario_path=scenario(tmp_path, "PCMU"),
                                      out=tmp_path / "run", progress=False,
                                      repo=Path(__file__).resolve().parents[2]))
    assert outcome.verdict == "pass", outcome.summary.failed_checks
    load = outcome.summary.load
    assert load.rtp_received and load.rtp_received > 0.8 * (load.rtp_sent or 0) > 0
    assert outcome.summary.scenario["load"]["rtp"]["pcap"] == "call.pcap"
    # the receivers' statistics reach the summary: each call's two legs are two sources
    assert load.rtp_streams and load.rtp_streams >= 2 * (load.calls_completed or 0) > 0
    assert load.rtp_expected and load.rtp_expected >= (load.rtp_lost or 0)
    assert load.rtp_duplicates == 0 and load.rtp_invalid == 0
    assert load.jitter_ms_mean is not None and load.jitter_ms_max is not None


def test_a_capture_of_another_codec_is_bad_input(tmp_path: Path):
    with pytest.raises(UsageError, match="its RTP is PCMU, load.rtp.codec is PCMA"):
        run_scenario(RunRequest(scenario_path=scenario(tmp_path, "PCMA"),
                                out=tmp_path / "run", progress=False))
    assert not (tmp_path / "run").exists()
