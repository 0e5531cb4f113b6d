"""rtpengine's bufferpool statistics: the shape of the NG `statistics` reply from mr26.1
(daemon/statistics.c, bpool_stats), and Debian 10.5's real reply, which has none."""

from pathlib import Path

import bencode
import pytest

from rig.checks import RunWindow, pins_flat_after_warmup
from rig.probes.rtpengine import (
    PoolShards,
    ng_statistics_counters,
    not_reported,
    parse_bufferpools,
    predates_bufferpool,
    release_line,
    short_version,
)
from rig.series import Event, Sample, Series

DATA = Path(__file__).parent / "data"
MIB16 = 16 * 1024 * 1024


def documented_reply() -> dict:
    """A reply of the documented shape, bencoded and decoded as the probe gets it:
    `main` with 3 shards of which one is empty, numbers as integers and as strings."""
    reply = {
        "result": "ok",
        "statistics": {
            "currentstatistics": {"sessionsown": 2, "sessionstotal": 2},
            "totalstatistics": {"uptime": "12"},
            "bufferpools": {
                "main": {"num_shards": 3, "shards": [
                    {"references": 4, "size": MIB16, "used": 70000},
                    {"references": 0, "size": MIB16, "used": 0},
                    {"references": 1, "size": MIB16, "used": "1200"},
                ]},
                "shared": {"num_shards": 1, "shards": [
                    {"references": 0, "size": MIB16, "used": 512}]},
                "static": {"num_shards": 0, "shards": []},
            },
        },
    }
    return bencode.decode(bencode.encode(reply))


def test_the_documented_shape_gives_shards_empty_shards_and_bytes_used():
    reply = documented_reply()
    pools = parse_bufferpools(reply["statistics"]["bufferpools"])
    assert pools == [PoolShards("main", 3, 1, 71200), PoolShards("shared", 1, 0, 512),
                     PoolShards("static", 0, 0, 0)]
    counters = ng_statistics_counters(reply)
    assert counters["rtpengine.bufferpool.main.shards"] == 3
    assert counters["rtpengine.bufferpool.main.empty_shards"] == 1
    assert counters["rtpengine.bufferpool.main.bytes_used"] == 71200
    assert counters["rtpengine.bufferpool.shared.empty_shards"] == 0  # used, not referenced
    assert counters["rtpengine.sessions_own"] == 2
    assert counters["rtpengine.bufferpool.shards"] == 4  # every pool's together


@pytest.mark.parametrize(("version", "line", "older"), [
    ("10.5.3.5-1+deb12u1", (10, 5), True),
    ("12.5.1.31-1", (12, 5), False),
    ("26.0.1.26+0~mr26.0.1.26", (26, 0), False),
    ("mr26.1.0.0", (26, 1), False),
    ("git-master-0faa777", None, False),  # unreadable: not called older
])
def test_release_line_and_whether_it_predates_the_bufferpool(version, line, older):
    assert release_line(version) == line
    assert predates_bufferpool(version) is older


def test_a_shard_that_is_referenced_but_holds_nothing_is_not_empty():
    [pool] = parse_bufferpools({"main": {"shards": [{"references": 1, "used": 0},
                                                    {"references": 0, "used": 0}]}})
    assert pool == PoolShards("main", 2, 1, 0)  # no num_shards: the listed shards count


def test_debian_10_5_real_reply_has_no_bufferpool_counters():
    reply = bencode.decode((DATA / "rtpengine_ng_statistics_20calls.bencode").read_bytes())
    counters = ng_statistics_counters(reply)
    assert counters["rtpengine.sessions_own"] == 20
    assert not [name for name in counters if name.startswith("rtpengine.bufferpool.")]
    assert parse_bufferpools(None) == []


def test_a_check_needing_them_on_10_5_is_unusable_input_and_names_the_version():
    assert short_version("10.5.3.5-1+deb12u1") == "10.5"
    assert short_version("26.0.1.26-1") == "26.0"
    series = Series()
    for t in (0.0, 1.0, 2.0, 3.0):
        series.append(Sample(t, {"rtpengine.sessions_own": 1.0}))
    events = [Event(0.0, "service_version", {"service": "rtpengine",
                                             "version": "10.5.3.5-1+deb12u1"})]
    verdict = pins_flat_after_warmup(series, events, RunWindow(0.0, 3.0, 3.0), warmup=1.0,
                                     tolerance=0, counter="rtpengine.bufferpool.main.shards")
    assert not verdict.passed and verdict.diagnosis == "unusable"
    assert verdict.detail == ("rtpengine.bufferpool.main.shards not reported by rtpengine 10.5 "
                              "(NG statistics carry bufferpools from mr26.1 on)")
    assert not_reported("rtpengine.sessions_own", "10.5.3.5") is None
    assert "by this rtpengine" in (not_reported("rtpengine.bufferpool.main.shards", None) or "")
