"""The checks on hand-built series: each passes and fails on purpose, plus the edge cases."""

from collections.abc import Mapping, Sequence

import pytest

from rig.checks import (
    CHECKS,
    RunWindow,
    Verdict,
    get_check,
    persisting_peak,
    run_checks,
    shard_source,
)
from rig.errors import UsageError
from rig.series import Event, Sample, Series

WINDOW = RunWindow(load_start=1.0, load_stop=9.0, end=12.0)


def series_of(rows: Sequence[Mapping[str, float]], dt: float = 1.0) -> Series:
    """Sample i at t = i * dt with the given counters."""
    return Series([Sample(t=i * dt, values=dict(row)) for i, row in enumerate(rows)])


def pins(*values: float) -> Series:
    return series_of([{"kmod.pins": v} for v in values])


def shards(pairs: Sequence[tuple[float, float]]) -> Series:
    """(pins, needed) per sample; needed is split over active/full/free."""
    return series_of([
        {"kmod.pins": p, "relay.shards_active": 1, "relay.shards_full": n - 1,
         "relay.shards_free": 0}
        for p, n in pairs
    ])


def one(name: str, series: Series, events: Sequence[Event] = (), **params) -> Verdict:
    [verdict] = run_checks({name: params}, series, events, WINDOW)
    assert verdict.name == name
    return verdict


# -- pins_below_ceiling ------------------------------------------------------------------


def test_pins_below_ceiling_passes_and_reports_the_peak():
    verdict = one("pins_below_ceiling", pins(1, 3, 5, 4), ceiling=16)
    assert verdict.passed
    assert (verdict.observed, verdict.limit) == (5, 16)


def test_pins_at_the_ceiling_fail():
    verdict = one("pins_below_ceiling", pins(1, 8, 16, 16), ceiling=16)
    assert not verdict.passed
    assert verdict.observed == 16
    assert "t=2.00" in verdict.detail


def test_ceiling_on_another_counter():
    series = series_of([{"slab.ip_dst_cache": v} for v in (220, 300, 410)])
    verdict = one("pins_below_ceiling", series, ceiling=400, counter="slab.ip_dst_cache")
    assert not verdict.passed and verdict.observed == 410


# -- no_phantom_shards -------------------------------------------------------------------


def test_no_phantom_shards_passes_when_pins_track_needed_shards():
    verdict = one("no_phantom_shards", shards([(1, 1), (2, 2), (3, 3), (3, 3)]),
                  tolerance=0, persist=2)
    assert verdict.passed and verdict.observed == 0


def test_one_sample_excess_is_a_pin_in_flight_and_is_ignored():
    verdict = one("no_phantom_shards", shards([(1, 1), (2, 1), (2, 2), (2, 2)]),
                  tolerance=0, persist=2)
    assert verdict.passed, verdict.detail


def test_two_sample_excess_is_caught():
    verdict = one("no_phantom_shards", shards([(1, 1), (3, 1), (3, 1), (3, 3)]),
                  tolerance=0, persist=2)
    assert not verdict.passed
    assert verdict.observed == 2
    assert "t=1.00" in verdict.detail


def test_phantom_tolerance_allows_a_known_excess():
    series = shards([(2, 1), (2, 1), (2, 1)])
    assert one("no_phantom_shards", series, tolerance=1, persist=2).passed
    assert not one("no_phantom_shards", series, tolerance=0, persist=2).passed


def test_persisting_peak_is_the_level_held_for_persist_values():
    assert persisting_peak([0, 5, 2, 2, 0], 2) == (2, 1)
    assert persisting_peak([0, 5, 0], 1) == (5, 1)
    assert persisting_peak([3], 2) == (0.0, -1)


def test_phantoms_need_all_shard_counters():
    series = series_of([{"kmod.pins": 5, "relay.shards_active": 1, "relay.shards_full": 1}] * 3)
    verdict = one("no_phantom_shards", series, tolerance=0, persist=2)
    assert not verdict.passed
    assert "relay.shards_free missing" in verdict.detail


# -- pins_flat_after_warmup --------------------------------------------------------------


def test_flat_after_warmup_ignores_growth_during_warmup():
    # t = 0..11; warmup ends at t = 3
    verdict = one("pins_flat_after_warmup", pins(0, 2, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5), warmup=2.0)
    assert verdict.passed and verdict.observed == 0


def test_growth_after_warmup_fails():
    verdict = one("pins_flat_after_warmup", pins(0, 2, 4, 5, 5, 6, 6, 7, 7, 7, 7, 7), warmup=2.0)
    assert not verdict.passed
    assert verdict.observed == 2
    assert "from 5 at t=3.00 s to 7 at t=7.00 s" in verdict.detail


def test_growth_after_load_stop_is_not_counted():
    verdict = one("pins_flat_after_warmup", pins(0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9), warmup=1.0)
    assert verdict.passed


def test_flat_tolerance():
    series = pins(0, 1, 1, 1, 2, 2, 2, 2, 2, 2)
    assert one("pins_flat_after_warmup", series, warmup=1.0, tolerance=1).passed
    assert not one("pins_flat_after_warmup", series, warmup=1.0, tolerance=0).passed


def test_warmup_longer_than_the_load_fails_clearly():
    verdict = one("pins_flat_after_warmup", pins(1, 1, 1), warmup=20.0)
    assert not verdict.passed
    assert "not shorter than the load" in verdict.detail


def test_flat_needs_samples_inside_the_window():
    verdict = one("pins_flat_after_warmup", pins(1, 1), warmup=1.0)  # samples at t = 0, 1
    assert not verdict.passed
    assert "no sample of kmod.pins between" in verdict.detail


# -- shards_flat_after_warmup: the source of rtpengine's shard count ---------------------

BUFFERPOOLS = "rtpengine.bufferpool.shards"
MAPS = "rtpengine.maps.shards_estimate"


def version_event(version: str) -> Event:
    return Event(0.0, "service_version", {"service": "rtpengine", "version": version})


@pytest.mark.parametrize(("names", "version", "label"), [
    ([BUFFERPOOLS, MAPS], "26.1.0.1+0~mr26.1.0.1", "the daemon's bufferpools"),
    ([BUFFERPOOLS, MAPS], None, "the daemon's bufferpools"),
    ([MAPS], "26.0.1.26+0~mr26.0.1.26", "the memory-map estimate"),
    ([MAPS], "12.5.1.31-1", "the memory-map estimate"),
    ([MAPS], None, "the memory-map estimate"),
])
def test_shard_source_prefers_the_daemons_own_count(names, version, label):
    source = shard_source(names, version)
    assert not isinstance(source, str) and source.label == label


def test_shard_source_on_a_daemon_older_than_the_bufferpool_is_a_reason():
    # the memory map is measured on 10.5 too, but it holds no shards there
    reason = shard_source([MAPS, "rtpengine.sessions_own"], "10.5.3.5-1+deb12u1")
    assert isinstance(reason, str)
    assert reason.startswith("rtpengine 10.5 predates the bufferpool")
    assert "not reported by rtpengine 10.5" in reason


def test_shard_source_without_bufferpools_falls_back_to_the_map_even_unmeasured():
    source = shard_source(["rtpengine.sessions_own"], "26.0.1.26")
    assert not isinstance(source, str) and source.counter == MAPS
    verdict = one("shards_flat_after_warmup", rtpengine_shards("x", 1, 1, 1), warmup=1.0)
    assert not verdict.passed and verdict.detail.startswith(f"counter {MAPS} missing")


def rtpengine_shards(counter: str, *values: float) -> Series:
    return series_of([{counter: v, "rtpengine.sessions_own": 1} for v in values])


def test_shards_flat_says_it_used_the_memory_map():
    verdict = one("shards_flat_after_warmup", rtpengine_shards(MAPS, 2, 6, 10, 10, 10, 10, 10),
                  [version_event("26.0.1.26")], warmup=2.0)
    assert verdict.passed and verdict.observed == 0
    assert verdict.detail.startswith("from the memory-map estimate: " + MAPS)


def test_shards_growing_after_the_warmup_fail_from_the_bufferpools():
    series = series_of([{BUFFERPOOLS: v, MAPS: 3} for v in (1, 2, 2, 2, 3, 4, 4, 4)])
    verdict = one("shards_flat_after_warmup", series, [version_event("mr26.1.0.0")], warmup=2.0)
    assert not verdict.passed and verdict.observed == 2
    assert verdict.detail.startswith("from the daemon's bufferpools: " + BUFFERPOOLS)


def test_shards_flat_on_rtpengine_10_5_is_unusable_not_a_pass():
    verdict = one("shards_flat_after_warmup", rtpengine_shards(MAPS, 0, 0, 0, 0, 0, 0),
                  [version_event("10.5.3.5-1+deb12u1")], warmup=1.0)
    assert not verdict.passed and verdict.diagnosis == "unusable"
    assert "predates the bufferpool" in verdict.detail


# -- relay_alive -------------------------------------------------------------------------

CRIT = "[1700000012.500000] CRIT: [worker-2] Failed to pin shared kernel memory: E2BIG"


def test_relay_alive_passes_without_a_crash():
    verdict = one("relay_alive", pins(1, 2), [Event(1.0, "burst", {"index": 0})])
    assert verdict.passed


def test_a_crash_event_fails_relay_alive_quoting_the_crit_line():
    events = [Event(4.5, "crash", {"service": "relay", "signal": "SIGABRT", "line": CRIT})]
    verdict = one("relay_alive", pins(1, 2), events)
    assert not verdict.passed
    assert CRIT in verdict.detail and "t=4.50" in verdict.detail


def test_a_crash_of_another_service_is_not_the_relays():
    events = [Event(4.5, "crash", {"service": "kmod", "line": "boom"})]
    assert one("relay_alive", pins(1, 2), events).passed
    assert not one("relay_alive", pins(1, 2), events, service="kmod").passed


# -- back_to_baseline --------------------------------------------------------------------

SESSIONS = "relay.sessions"
ALLOCS = "relay.live_allocations"


def baseline_series(final_sessions: float, final_allocs: float) -> Series:
    # t = 0..12: idle at load start (t=1), busy during load, back (or not) at t >= 11
    rows = [{SESSIONS: 0, ALLOCS: 0}, {SESSIONS: 0, ALLOCS: 0}]
    rows += [{SESSIONS: 20, ALLOCS: 60}] * 9
    rows += [{SESSIONS: final_sessions, ALLOCS: final_allocs}] * 2
    return series_of(rows)


def test_back_to_baseline_passes_when_counters_return():
    verdict = one("back_to_baseline", baseline_series(0, 0), counters=[SESSIONS, ALLOCS],
                  within=2.0)
    assert verdict.passed


def test_back_to_baseline_names_the_worst_counter():
    verdict = one("back_to_baseline", baseline_series(1, 6), counters=[SESSIONS, ALLOCS],
                  within=2.0)
    assert not verdict.passed
    assert verdict.observed == f"{ALLOCS} 6"
    assert verdict.detail.startswith(f"{ALLOCS}: 0 before load, 6 at t=12.00 s")


def test_back_to_baseline_looks_only_after_the_settling_time():
    # still busy at t = 10 but back at t = 11: passes with 2 s to settle, fails with 0.5 s
    series = series_of([{SESSIONS: v} for v in [0, 0] + [20] * 9 + [0]])
    assert one("back_to_baseline", series, counters=[SESSIONS], within=2.0).passed
    late = series_of([{SESSIONS: v} for v in [0, 0] + [20] * 9 + [0, 5]])
    assert not one("back_to_baseline", late, counters=[SESSIONS], within=2.0).passed


def test_back_to_baseline_uses_the_last_sample_when_sampling_ended_early():
    # samples end at t = 12, before load_stop + within = 19
    verdict = one("back_to_baseline", baseline_series(0, 3), counters=[SESSIONS, ALLOCS],
                  within=10.0)
    assert not verdict.passed
    assert verdict.detail.startswith(f"{ALLOCS}: 0 before load, 3 at t=12.00 s")


def test_back_to_baseline_needs_a_sample_after_load_stop():
    early = Series([s for s in baseline_series(0, 0).samples if s.t <= WINDOW.load_stop])
    verdict = one("back_to_baseline", early, counters=[SESSIONS], within=1.0)
    assert not verdict.passed
    assert "no sample of relay.sessions after load stop (t=9 s)" in verdict.detail


def test_back_to_baseline_needs_a_baseline_sample():
    late = Series([s for s in baseline_series(0, 0).samples if s.t > 1.0])
    verdict = one("back_to_baseline", late, counters=[SESSIONS], within=1.0)
    assert not verdict.passed
    assert "at or before load start" in verdict.detail


# -- calls_completed ---------------------------------------------------------------------


def calls(done: float, failed: float, active: float) -> Series:
    return series_of([
        {"load.calls_completed": 0, "load.calls_failed": 0, "load.calls_active": 0},
        {"load.calls_completed": done, "load.calls_failed": failed, "load.calls_active": active},
    ])


def test_calls_completed_ratio():
    assert one("calls_completed", calls(95, 5, 0), min_ratio=0.95).passed
    verdict = one("calls_completed", calls(90, 5, 5), min_ratio=0.95)
    assert not verdict.passed and verdict.observed == 0.9


def test_no_call_attempted_fails():
    verdict = one("calls_completed", calls(0, 0, 0), min_ratio=0.0)
    assert not verdict.passed and "no call was attempted" in verdict.detail


# -- proxy_alive -------------------------------------------------------------------------

SHM = "kamailio.shm_used"


def test_proxy_alive_passes_when_the_proxy_answered_after_the_load():
    verdict = one("proxy_alive", series_of([{SHM: 100.0}] * 11))  # t = 0..10, stop at 9
    assert verdict.passed and "read at t=10.00 s" in verdict.detail


def test_a_proxy_that_stopped_answering_fails_proxy_alive():
    verdict = one("proxy_alive", series_of([{SHM: 100.0}] * 9 + [{"load.calls_active": 0}] * 3))
    assert not verdict.passed and "stopped answering" in verdict.detail


def test_a_crash_of_the_proxy_fails_proxy_alive_and_not_relay_alive():
    events = [Event(4.0, "crash", {"service": "kamailio", "role": "proxy",
                                   "line": "segfault"})]
    series = series_of([{SHM: 100.0, "kmod.pins": 1.0}] * 11)
    verdict = one("proxy_alive", series, events)
    assert not verdict.passed and verdict.detail == "proxy crashed at t=4.00 s: segfault"
    assert not one("proxy_alive", series, events, service="kamailio").passed
    assert one("relay_alive", series, events).passed


def test_a_death_the_watch_saw_names_pid_signal_and_time_in_every_alive_check():
    events = [
        Event(3.2, "crash", {"service": "relay", "role": "media", "exit_code": -6,
                             "cause": "relay (pid 41) died with SIGABRT at t=3.20 s",
                             "line": "CRIT: E2BIG"}),
        Event(2.5, "crash", {"service": "kmod", "role": "kernel", "exit_code": -9,
                             "cause": "kmod (pid 40) died with SIGKILL at t=2.50 s",
                             "line": "kmod: pin"}),
    ]
    series = series_of([{"kmod.pins": 1.0}] * 11)
    verdict = one("services_alive", series, events)
    assert not verdict.passed and verdict.observed == 2
    assert verdict.detail == ("kmod (pid 40) died with SIGKILL at t=2.50 s; its log ends "
                              "with: kmod: pin (also stopped: relay)")
    assert one("relay_alive", series, events).detail == (
        "relay (pid 41) died with SIGABRT at t=3.20 s; its log ends with: CRIT: E2BIG")
    assert one("services_alive", series, []).passed


# -- what measured nothing cannot pass ---------------------------------------------------

DEFAULT_PARAMS = {
    "pins_below_ceiling": {"ceiling": 16},
    "no_phantom_shards": {},
    "pins_flat_after_warmup": {"warmup": 1.0},
    "shards_flat_after_warmup": {"warmup": 1.0},
    "relay_alive": {},
    "back_to_baseline": {"counters": [SESSIONS], "within": 1.0},
    "calls_completed": {"min_ratio": 0.5},
    "no_orphan_sessions": {},
    "tracks": {"physical": "kmod.targets", "logical": "relay.streams"},
    "make_shard_race": {},
    "pins_below_alert": {},
    "proxy_alive": {},
    "services_alive": {},
}


def test_every_registered_check_has_default_params_here():
    assert set(DEFAULT_PARAMS) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(DEFAULT_PARAMS))
def test_an_empty_series_fails_every_check(name):
    verdict = one(name, Series(), **DEFAULT_PARAMS[name])
    assert not verdict.passed
    assert "no samples" in verdict.detail


@pytest.mark.parametrize("name", sorted(set(DEFAULT_PARAMS) - {
    "relay_alive", "make_shard_race", "services_alive"}))
def test_a_missing_counter_fails_and_names_it(name):
    verdict = one(name, series_of([{"other.counter": 1}] * 12), **DEFAULT_PARAMS[name])
    assert not verdict.passed
    assert "missing (no sample has it)" in verdict.detail
    assert verdict.detail.split()[1] in {"kmod.pins", SESSIONS, "load.calls_completed",
                                         "media.orphan_sessions", "kmod.targets",
                                         "kamailio.shm_used", MAPS}


# -- registry and running ----------------------------------------------------------------


def test_unknown_check_lists_the_valid_names():
    with pytest.raises(UsageError, match=r"unknown check 'nope' \(allowed: back_to_baseline, "):
        get_check("nope")
    with pytest.raises(UsageError, match="unknown check"):
        run_checks({"nope": {}}, pins(1), [], WINDOW)


def test_bad_parameters_are_one_line_usage_errors():
    with pytest.raises(UsageError, match=r"^check pins_below_ceiling: ceiling: .*number"):
        run_checks({"pins_below_ceiling": {"ceiling": "high"}}, pins(1), [], WINDOW)
    with pytest.raises(UsageError, match=r"^check relay_alive: colour: Extra inputs"):
        run_checks({"relay_alive": {"colour": "red"}}, pins(1), [], WINDOW)


def test_run_checks_keeps_order_and_skips_checks_turned_off():
    spec = {"relay_alive": {}, "pins_flat_after_warmup": None, "pins_below_ceiling": {"ceiling": 4}}
    verdicts = run_checks(spec, pins(1, 5, 5), [], WINDOW)
    assert [(v.name, v.passed) for v in verdicts] == [
        ("relay_alive", True), ("pins_below_ceiling", False)]


# -- relative tolerance, orphan sessions, the media role ---------------------------------


def shm(*values: float) -> Series:
    return series_of([{"kamailio.shm_used": v, SESSIONS: 0} for v in values])


def test_back_to_baseline_relative_allows_a_share_of_the_baseline():
    grown = shm(1000, 1000, 1500, 1600, 1500, 1500, 1500, 1500, 1500, 1500, 1040, 1040)
    counters = ["kamailio.shm_used", SESSIONS]
    assert one("back_to_baseline", grown, counters=counters, within=1.0,
               relative=0.05).passed
    verdict = one("back_to_baseline", grown, counters=counters, within=1.0, relative=0.03)
    assert not verdict.passed
    assert verdict.observed == "kamailio.shm_used 40"
    assert verdict.limit == 30


def test_back_to_baseline_relative_gives_nothing_on_a_zero_baseline():
    rows = [{SESSIONS: v} for v in (0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 1, 1)]
    verdict = one("back_to_baseline", series_of(rows), counters=[SESSIONS], within=1.0,
                  relative=0.5)
    assert not verdict.passed and verdict.observed == f"{SESSIONS} 1"


def orphans(*values: float) -> Series:
    return series_of([{"media.orphan_sessions": v} for v in values])


def test_no_orphan_sessions_reads_the_last_value_after_load_stop():
    assert one("no_orphan_sessions", orphans(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).passed
    leaked = orphans(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3)
    ids = Event(11.0, "orphan_sessions", {"count": 3, "call_ids": ["a1", "b2", "c3", "d4"]})
    verdict = one("no_orphan_sessions", leaked, [ids])
    assert not verdict.passed and verdict.observed == 3
    assert "a1, b2, c3" in verdict.detail and "d4" not in verdict.detail


def test_orphans_during_load_do_not_count_once_they_are_gone():
    assert one("no_orphan_sessions", orphans(0, 0, 0, 5, 5, 0, 0, 0, 0, 0, 0, 0)).passed


def test_no_orphan_sessions_needs_a_reading_after_load_stop():
    verdict = one("no_orphan_sessions", orphans(0, 0, 0))
    assert not verdict.passed and "after load stop" in verdict.detail


def test_relay_alive_matches_the_media_role():
    events = [Event(3.0, "crash", {"service": "rtpengine", "role": "media", "line": "abort"})]
    assert not one("relay_alive", pins(1, 2), events, service="media").passed
    assert not one("relay_alive", pins(1, 2), events, service="rtpengine").passed
    assert one("relay_alive", pins(1, 2), events, service="kamailio").passed
