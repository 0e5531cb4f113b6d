"""The summary's diagnosis block on a hand-made racing run: shape, model and JSON Schema."""

import json

import pytest

from rig.checks import RunWindow, Verdict
from rig.diagnosis.summary import projection_settings
from rig.results import build_summary
from rig.series import Event, Sample, Series
from rig.summary import SUMMARY_SCHEMA_PATH, Summary

SCENARIO = {"name": "pin-race", "bursts": {"every": 2.0},
            "services": {"relay": {"shard_size": 16384}},
            "checks": {"pins_below_ceiling": {"ceiling": 16},
                       "pins_flat_after_warmup": {"warmup": 2.0}}}


def racing_run() -> Summary:
    samples, events = [], []
    for k in range(101):
        t = k * 0.1
        pins = 1 + sum(1 for b in range(5) if t >= 1.3 + 2 * b)
        samples.append(Sample(round(t, 4), {
            "kmod.pins": float(pins), "relay.live_bytes": 512.0 * (k % 20),
            "relay.site.stream_stats.count": float(k % 20),
            "relay.site.stream_stats.bytes": 512.0 * (k % 20)}))
    for b in range(5):
        events.append(Event(1.0 + 2 * b, "burst", {"spread_us": 100.0}))
        events.append(Event(1.2 + 2 * b, "make_shard",
                            {"num": b + 2, "full": 1, "space": 0, "thread": "w1"}))
        events.append(Event(1.2003 + 2 * b, "make_shard",
                            {"num": b + 3, "full": 1, "space": 1, "thread": "w2"}))
    return build_summary(
        run_id="r", scenario=SCENARIO,
        verdicts=[Verdict("make_shard_race", False, 5, 0, "race: ...", diagnosis="race")],
        series=Series(samples), events=events, load={}, sut={}, timing={},
        environment={"python": "3", "platform": "p", "cpus": 2, "hostname": "h"},
        window=RunWindow(load_start=0.0, load_stop=10.0, end=10.0))


def test_the_diagnosis_block_of_a_racing_run():
    summary = racing_run()
    diagnosis = summary.diagnosis
    assert diagnosis is not None and diagnosis.make_shard is not None
    assert diagnosis.make_shard.verdict == "race"
    assert diagnosis.make_shard.racing_clusters == 5
    assert summary.checks[0].diagnosis == "race"
    assert [s.after for s in diagnosis.pin_steps] == [2, 3, 4, 5, 6]
    projection = diagnosis.projection
    assert projection is not None
    assert projection.per_burst == pytest.approx(1.0)
    assert projection.bursts_per_hour == 1800
    assert [c.ceiling for c in projection.ceilings] == [16, 32]
    assert diagnosis.allocation_sites is not None
    assert diagnosis.allocation_sites.shard_size == 16384
    Summary.model_validate(summary.to_json())
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(json.dumps(summary.to_json())),
                        json.loads(SUMMARY_SCHEMA_PATH.read_text()))


def test_projection_settings_fall_back_to_the_scenario():
    assert projection_settings(SCENARIO) == (1800.0, [16.0, 32.0], 2.0)
    given = {**SCENARIO, "projection": {"bursts_per_hour": 30, "ceilings": [16, 64],
                                        "warmup": 0}}
    assert projection_settings(given) == (30, [16.0, 64.0], 0.0)
