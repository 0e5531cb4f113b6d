"""The run folder: files written as the run goes, read back the same; the summary's shape."""

import csv
import json
import re
from pathlib import Path

import pytest

from rig.checks import Verdict
from rig.errors import UsageError
from rig.results import (
    RunFolder,
    build_summary,
    burst_stats,
    checks_side_by_side,
    new_run_id,
    read_events,
    read_series,
    read_summary,
)
from rig.series import Event, Sample, Series
from rig.summary import SUMMARY_SCHEMA_PATH, CheckEntry, CounterStats, Summary, write_summary_schema

SCENARIO = {"name": "pin-race", "duration": 20}


def test_create_makes_the_layout_and_says_incomplete(tmp_path):
    folder = RunFolder.create(tmp_path, "run-1")
    assert folder.path == tmp_path / "run-1"
    assert folder.logs_dir.is_dir() and folder.plots_dir.is_dir()
    assert read_summary(folder.path).verdict == "incomplete"


def test_create_refuses_a_folder_that_holds_a_run(tmp_path):
    RunFolder.create(tmp_path, "run-1")
    with pytest.raises(UsageError, match="already holds a run"):
        RunFolder.create(tmp_path, "run-1")


def test_samples_are_on_disk_as_soon_as_appended(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    folder.append_sample(Sample(0.0, {"kmod.pins": 0, "relay.rss_bytes": 1.5e6}))
    folder.append_sample(Sample(0.1, {"kmod.pins": 1, "relay.rss_bytes": 1.25}))
    with (folder.path / "series.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["t", "kmod.pins", "relay.rss_bytes"], ["0", "0", "1500000"],
                    ["0.1", "1", "1.25"]]


def test_a_late_counter_widens_the_header_and_reads_back_absent_earlier(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    folder.append_sample(Sample(0.0, {"kmod.pins": 0}))
    folder.append_sample(Sample(0.5, {"kmod.pins": 2, "relay.sessions": 3}))
    folder.append_sample(Sample(1.0, {"relay.sessions": 1}))
    series = read_series(folder.path)
    assert [s.t for s in series.samples] == [0.0, 0.5, 1.0]
    assert series.column("kmod.pins") == [(0.0, 0.0), (0.5, 2.0)]
    assert series.column("relay.sessions") == [(0.5, 3.0), (1.0, 1.0)]


def test_events_round_trip(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    sent = [Event(1.0, "burst", {"index": 0, "workers": 8, "spread_us": 42.5}),
            Event(4.2, "crash", {"service": "relay", "line": "CRIT: x"})]
    for event in sent:
        folder.append_event(event)
    assert read_events(folder.path) == sent


def test_a_cut_off_last_event_line_is_skipped(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    folder.append_event(Event(1.0, "load_start"))
    with (folder.path / "events.jsonl").open("a") as f:
        f.write('{"t": 2.0, "kind": "bu')
    assert [e.kind for e in read_events(folder.path)] == ["load_start"]


def test_a_bad_event_line_in_the_middle_is_an_error(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    (folder.path / "events.jsonl").write_text('garbage\n{"t": 1, "kind": "x"}\n')
    with pytest.raises(UsageError, match=r"events.jsonl:1: not an event"):
        read_events(folder.path)


def test_a_bad_series_row_is_an_error(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    (folder.path / "series.csv").write_text("t,kmod.pins\n0,1\n0.1,lots\n")
    with pytest.raises(UsageError, match=r"series.csv:3: not a row of numbers"):
        read_series(folder.path)


def test_reading_something_that_is_not_a_run_folder(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        read_summary(tmp_path)
    with pytest.raises(UsageError, match="not a run folder"):
        read_series(tmp_path)
    (tmp_path / "summary.json").write_text("{nope")
    with pytest.raises(UsageError, match="not JSON"):
        read_summary(tmp_path)


def test_finish_replaces_the_summary_and_leaves_no_temp_file(tmp_path):
    folder = RunFolder.create(tmp_path, "r")
    folder.finish(make_summary())
    assert read_summary(folder.path).verdict == "pass"
    assert sorted(p.name for p in folder.path.iterdir()) == ["logs", "plots", "summary.json"]


def test_new_run_id_format():
    now = 1795317300.0  # 2026-11-22 03:15:00 UTC
    assert new_run_id("pin-race", now, suffix="ab12") == "20261122-031500-pin-race-ab12"
    assert re.fullmatch(r"20261122-031500-pin-race-[0-9a-f]{4}", new_run_id("pin-race", now))


# -- the summary -------------------------------------------------------------------------


def make_summary(**changes):
    series = Series([
        Sample(0.0, {"kmod.pins": 0, "relay.sessions": 0}),
        Sample(1.0, {"kmod.pins": 5, "relay.sessions": 9}),
        Sample(2.0, {"kmod.pins": 4, "relay.sessions": 0}),
    ])
    events = [Event(1.0 + i, "burst", {"index": i, "workers": 8, "spread_us": s})
              for i, s in enumerate([10.0, 20.0, 30.0, 400.0])]
    args = dict(
        run_id="20261122-031500-pin-race-ab12",
        scenario=SCENARIO,
        verdicts=[Verdict("relay_alive", True, 0, 0, "no crash"),
                  Verdict("pins_below_ceiling", True, 5, 16, "peak 5")],
        series=series,
        events=events,
        load={"calls_attempted": 10, "calls_completed": 9, "calls_failed": 1, "cps": 5.0,
              "rtp_sent": 1000, "rtp_received": 990, "rtp_lost": 10, "outcomes": {"busy": 1},
              "bursts": [object()]},
        sut={"commit": "abc123", "patches": ["relay-recheck-after-pin.patch"]},
        timing={"started": 1795317300.0, "finished": 1795317325.5, "duration_s": 25.5},
        environment={"python": "3.11.9", "platform": "Linux", "cpus": 2, "hostname": "h"},
    )
    args.update(changes)
    return build_summary(**args)


def test_summary_blocks():
    summary = make_summary()
    assert summary.schema_version == 2
    assert summary.verdict == "pass"
    assert summary.counters["kmod.pins"] == CounterStats(first=0, peak=5, last=4)
    assert summary.checks[1] == CheckEntry(name="pins_below_ceiling", passed=True, observed=5,
                                           limit=16, detail="peak 5")
    assert summary.load.calls_completed == 9 and "bursts" not in summary.to_json()["load"]
    assert summary.load.outcomes == {"busy": 1}
    assert summary.bursts.count == 4
    assert summary.timing.started_utc == "2026-11-22T03:15:00Z"
    assert summary.sut.patches == ["relay-recheck-after-pin.patch"]
    json.dumps(summary.to_json(), allow_nan=False)


def test_a_cluster_run_has_its_nodes_and_their_clock_offsets_and_a_plain_run_none():
    assert make_summary().cluster is None
    nodes = [{"node_id": "aa11", "ip": "10.0.0.2", "generators": [0, 2], "offset_s": -0.0042,
              "delay_s": 0.0007},
             {"node_id": "bb22", "ip": "10.0.0.3", "generators": [1], "offset_s": 0.013,
              "delay_s": 0.0009}]
    summary = make_summary(events=[Event(0.5, "cluster", {"address": "head:6379",
                                                          "nodes": nodes})])
    assert summary.cluster is not None and summary.cluster.address == "head:6379"
    assert [(n.ip, n.generators, n.offset_s) for n in summary.cluster.nodes] == [
        ("10.0.0.2", [0, 2], -0.0042), ("10.0.0.3", [1], 0.013)]
    again = Summary.model_validate(json.loads(json.dumps(summary.to_json())))
    assert again.cluster == summary.cluster


def test_each_cluster_node_has_its_own_burst_spreads_beside_the_spread_across_nodes():
    nodes = [{"label": "node1", "node_id": "aa11", "ip": "10.0.0.2", "generators": [0]},
             {"label": "node2", "node_id": "bb22", "ip": "10.0.0.3", "generators": [1]},
             {"label": "node3", "node_id": "cc33", "ip": "10.0.0.4", "generators": [2]}]
    bursts = [Event(1.0, "burst", {"index": 0, "spread_us": 900.0,
                                   "nodes": {"aa11": 100.0, "bb22": 40.0}}),
              Event(2.0, "burst", {"index": 1, "spread_us": 700.0,
                                   "nodes": {"aa11": 300.0, "bb22": None}}),
              Event(3.0, "burst", {"index": 2, "spread_us": 800.0, "nodes": {"aa11": 200.0}})]
    summary = make_summary(events=[Event(0.5, "cluster", {"address": "head:6379",
                                                          "nodes": nodes}), *bursts])
    assert summary.cluster is not None
    one, two, three = summary.cluster.nodes
    assert [n.label for n in summary.cluster.nodes] == ["node1", "node2", "node3"]
    assert (one.bursts.count, one.bursts.spread_p50_us, one.bursts.spread_max_us) == (
        3, 200.0, 300.0)
    assert (two.bursts.count, two.bursts.spread_p50_us, two.bursts.spread_max_us) == (
        2, 40.0, 40.0)  # in two bursts, one without a spread measured
    assert three.bursts.count == 0 and three.bursts.spread_max_us is None
    # the top-level block stays the spread across nodes
    assert (summary.bursts.count, summary.bursts.spread_max_us) == (3, 900.0)
    again = Summary.model_validate(json.loads(json.dumps(summary.to_json())))
    assert again.cluster == summary.cluster


def test_a_cluster_block_written_before_labels_and_node_bursts_reads_with_defaults():
    old = {"address": "head:6379", "nodes": [{"node_id": "aa11", "ip": "10.0.0.2",
                                               "generators": [0], "offset_s": 0.0,
                                               "delay_s": 0.001}]}
    summary = Summary.model_validate({"run_id": "r", "verdict": "pass", "cluster": old})
    assert summary.cluster is not None
    node = summary.cluster.nodes[0]
    assert node.label is None and node.bursts.count == 0


def test_one_failed_check_fails_the_run_and_no_check_is_no_pass():
    failed = [Verdict("relay_alive", False, 1, 0, "crashed")]
    assert make_summary(verdicts=failed).verdict == "fail"
    assert make_summary(verdicts=[]).verdict == "fail"


def test_an_error_makes_the_verdict_error():
    summary = make_summary(error="relay would not start")
    assert summary.verdict == "error" and summary.error == "relay would not start"


def test_not_a_number_becomes_null():
    summary = make_summary(verdicts=[Verdict("x", False, float("nan"), float("inf"), "")])
    assert summary.checks[0].observed is None and summary.checks[0].limit is None


def test_a_checks_values_reach_the_summary_and_read_back(tmp_path):
    verdict = Verdict("tracks", False, 82, 2, "drift 82", values={
        "drift": 82.0, "drift_per_minute": 596.2, "seconds_to_ceiling": 404.1,
        "growth_per_minute": None, "bad": float("nan")})
    summary = make_summary(verdicts=[verdict])
    assert summary.checks[0].values == {"drift": 82.0, "drift_per_minute": 596.2,
                                        "seconds_to_ceiling": 404.1,
                                        "growth_per_minute": None, "bad": None}
    again = Summary.model_validate_json(json.dumps(summary.to_json()))
    assert again.checks[0].values == summary.checks[0].values
    older = CheckEntry.model_validate({"name": "x", "passed": True, "observed": 0, "limit": 0})
    assert older.values == {}


def test_burst_spread_percentiles():
    events = [Event(float(i), "burst", {"spread_us": float(i)}) for i in range(1, 101)]
    stats = burst_stats(events + [Event(0.0, "make_shard", {"num": 1})])
    assert stats["count"] == 100
    assert stats["spread_p50_us"] == 50.5
    assert stats["spread_p99_us"] == pytest.approx(99.0, abs=0.1)
    assert stats["spread_max_us"] == 100.0
    assert burst_stats([])["spread_p50_us"] is None


def test_burst_spread_from_a_driver_that_reports_per_burst_percentiles():
    events = [Event(1.0, "burst", {"spread_p50_us": 300.0, "spread_max_us": 700.0}),
              Event(3.0, "burst", {"spread_p50_us": 400.0, "spread_max_us": 900.0})]
    stats = burst_stats(events)
    assert (stats["count"], stats["spread_p50_us"], stats["spread_max_us"]) == (2, 800.0, 900.0)


def test_built_summary_matches_the_summary_model():
    Summary.model_validate(make_summary().to_json())
    Summary.model_validate(make_summary(error="x", verdicts=[]).to_json())


def test_built_summary_validates_against_the_committed_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SUMMARY_SCHEMA_PATH.read_text())
    jsonschema.validate(make_summary().to_json(), schema)
    broken = {**make_summary().to_json(), "verdict": "maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_committed_summary_schema_matches_the_models(tmp_path):
    fresh = write_summary_schema(tmp_path / "summary.schema.json")
    assert json.loads(SUMMARY_SCHEMA_PATH.read_text()) == json.loads(fresh.read_text()), (
        "rig/summary.schema.json is stale: run `python -m rig.summary`")


def test_summary_from_a_written_folder(tmp_path: Path):
    folder = RunFolder.create(tmp_path, "r")
    for sample in [Sample(0.0, {"kmod.pins": 1}), Sample(0.1, {"kmod.pins": 3})]:
        folder.append_sample(sample)
    summary = make_summary(series=read_series(folder.path), events=read_events(folder.path))
    folder.finish(summary)
    again = read_summary(folder.path)
    assert again.counters["kmod.pins"] == CounterStats(first=1, peak=3, last=3)
    assert again.bursts.count == 0


def test_checks_side_by_side_keeps_first_seen_order_and_marks_missing_checks():
    def run(*checks: tuple[str, bool]) -> Summary:
        return Summary(run_id="r", verdict="pass", checks=[
            CheckEntry(name=name, passed=passed, observed=0, limit=0) for name, passed in checks])

    a = run(("relay_alive", True), ("pins", False))
    b = run(("pins", True), ("no_orphans", True))
    rows = checks_side_by_side([a, b])
    assert [name for name, _ in rows] == ["relay_alive", "pins", "no_orphans"]
    assert rows[0][1] == [a.checks[0], None]
    assert rows[1][1] == [a.checks[1], b.checks[0]]
    assert rows[2][1] == [None, b.checks[1]]
