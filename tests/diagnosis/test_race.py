"""make_shard_race on hand-made event lists: growth passes, a race fails naming its threads."""

from rig.checks import RunWindow, run_checks
from rig.diagnosis.race import clusters, phantom_calls, shard_calls
from rig.series import Event, Series

WINDOW = RunWindow(load_start=0.0, load_stop=10.0, end=12.0)


def call(t: float, thread: str, num: int, full: int, space: int) -> Event:
    return Event(t, "make_shard", {"num": num, "full": full, "space": space, "thread": thread})


def race(events, **params):
    [verdict] = run_checks({"make_shard_race": params}, Series(), events, WINDOW)
    return verdict


# genuine growth, logged as rtpengine's instrumentation does (before the new shard): every
# call found every shard full, including two threads 0.3 ms apart at different fill levels
GROWTH = [call(1.0, "w1", 0, 0, 0), call(2.0, "w2", 1, 1, 0), call(2.0003, "w3", 2, 2, 0),
          call(4.0, "w1", 3, 3, 0)]


def test_genuine_growth_passes_with_verdict_growth():
    verdict = race(GROWTH)
    assert verdict.passed
    assert verdict.diagnosis == "growth"
    assert (verdict.observed, verdict.limit) == (0, 0)
    assert verdict.detail.startswith("growth: 4 make_shard call(s), 1 concurrent cluster")


def test_a_cluster_where_one_call_saw_space_fails_naming_its_threads():
    events = [*GROWTH, call(6.0, "w2", 5, 4, 0), call(6.0004, "w4", 6, 4, 1),
              call(6.0006, "w2", 7, 4, 2)]
    verdict = race(events)
    assert not verdict.passed
    assert verdict.diagnosis == "race"
    assert verdict.observed == 1
    assert "t=6.0000 s, threads w2, w4:" in verdict.detail
    assert "w4 num=6 full=4 space=1" in verdict.detail
    assert "2 shard(s) nobody needed" in verdict.detail


def test_concurrent_calls_at_the_same_fill_level_race_even_without_space():
    # rtpengine logs before it inserts: two racers both see every shard full
    events = [call(3.0, "tid 11", 4, 4, 0), call(3.0002, "tid 12", 4, 4, 0)]
    verdict = race(events)
    assert not verdict.passed
    assert "threads tid 11, tid 12" in verdict.detail


def test_calls_2_ms_apart_are_not_a_cluster_at_window_1_ms():
    events = [call(3.0, "w1", 4, 3, 0), call(3.002, "w2", 5, 3, 1)]
    assert race(events, window_ms=1.0).passed
    assert [len(c.calls) for c in clusters(shard_calls(events), 1.0)] == [1, 1]
    wide = race(events, window_ms=3.0)
    assert not wide.passed
    assert wide.observed == 1


def test_one_thread_alone_is_not_a_race():
    events = [call(3.0, "w1", 4, 4, 0), call(3.0001, "w1", 5, 4, 1)]
    verdict = race(events)
    assert verdict.passed
    assert "1 lone call(s) saw new space" in verdict.detail


def test_no_make_shard_line_fails():
    verdict = race([Event(1.0, "burst", {})])
    assert not verdict.passed
    assert verdict.observed is None
    assert "no make_shard line" in verdict.detail


def test_phantom_calls_are_the_ones_with_new_space_and_the_repeats_at_a_level():
    events = [call(3.0, "a", 4, 4, 0), call(3.0002, "b", 4, 4, 0), call(3.0003, "c", 5, 4, 1),
              call(5.0, "a", 6, 6, 1)]
    calls = shard_calls(events)
    assert [c.new_space for c in calls] == [0, 0, 1, 0]
    assert {c.thread for c in phantom_calls(calls, 1.0)} == {"b", "c"}


def test_space_left_by_earlier_phantoms_does_not_make_a_later_cluster_race():
    # the stock model relay: two phantoms from the first race stay in the pool with space
    events = [call(1.0, "a", 3, 1, 2), call(4.0, "b", 4, 2, 2), call(4.0003, "a", 5, 3, 2)]
    verdict = race(events)
    assert verdict.passed, verdict.detail
