"""rtpengine parsers on output captured from rtpengine 10.5.3.5 (Debian bookworm)."""

import stat
from pathlib import Path

import bencode
import pytest

from rig.probes import ProbeError
from rig.probes.rtpengine import RtpengineCliProbe, ng_statistics_counters, parse_list_totals

DATA = Path(__file__).parent / "data"


def ng_reply(name: str) -> dict:
    return bencode.decode((DATA / name).read_bytes())


def test_cli_totals_during_20_calls():
    counters = parse_list_totals((DATA / "rtpengine_ctl_list_totals_20calls.txt").read_text())
    assert counters["rtpengine.sessions_own"] == 20
    assert counters["rtpengine.sessions_total"] == 20
    assert counters["rtpengine.managed_sessions"] == 3
    assert counters["rtpengine.uptime"] == 36  # "36 seconds": the unit is dropped


def test_cli_totals_idle():
    counters = parse_list_totals((DATA / "rtpengine_ctl_list_totals_idle.txt").read_text())
    assert counters["rtpengine.sessions_own"] == 0
    assert counters["rtpengine.regular_terminated_sessions"] == 23


def test_ng_statistics_during_20_calls():
    counters = ng_statistics_counters(ng_reply("rtpengine_ng_statistics_20calls.bencode"))
    assert counters["rtpengine.sessions_own"] == 20
    assert counters["rtpengine.uptime"] == 36  # sent as a string


def test_both_sources_give_the_same_counters():
    # captured at the same instant, 20 calls up
    cli = parse_list_totals((DATA / "rtpengine_ctl_list_totals_20calls.txt").read_text())
    ng = ng_statistics_counters(ng_reply("rtpengine_ng_statistics_20calls.bencode"))
    assert cli == ng


def test_ng_statistics_with_byte_keys():
    reply = {b"result": b"ok", b"statistics": {b"currentstatistics": {b"sessionsown": b"4"}}}
    assert ng_statistics_counters(reply) == {"rtpengine.sessions_own": 4.0}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"result": "pong"}, "no 'statistics' block"),
        ({"statistics": {"currentstatistics": {"packetrate": 1}}}, "no currentstatistics"),
    ],
)
def test_ng_reply_without_statistics_is_an_error(reply: dict, message: str):
    with pytest.raises(ValueError, match=message):
        ng_statistics_counters(reply)


def test_cli_output_that_is_not_totals_is_an_error():
    text = (DATA / "rtpengine_ctl_list_numsessions_20calls.txt").read_text()
    with pytest.raises(ValueError, match="no 'Owned sessions' line"):
        parse_list_totals(text)


def test_cli_probe_reports_the_tools_own_words(tmp_path: Path):
    script = tmp_path / "rtpengine-ctl"
    script.write_text("#!/bin/sh\necho 'Cannot connect to the rtpengine Connection refused'\n"
                      "exit 111\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ProbeError, match="rtpengine-ctl: Cannot connect"):
        RtpengineCliProbe("127.0.8.1", 9900, ctl=[str(script)]).read()
