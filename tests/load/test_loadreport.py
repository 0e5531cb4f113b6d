"""LoadReports of N generator processes merge into the report of one that saw every call."""

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from rig.load.bursts import BurstResult, Deadline
from rig.load.histogram import Histogram
from rig.load.loadreport import LoadReport, merge_burst, merge_reports, merge_snapshots
from rig.load.numbers import load_numbers
from rig.wire.rtpstats import RtpStats
from rig.wire.sip import OUTCOMES

# One call as one process saw it: (outcome or None for failed, INVITE->200 in ns or None)
call = st.tuples(st.sampled_from([*OUTCOMES, None]), st.none() | st.integers(0, 10**10))
calls = st.lists(call, max_size=60)


def report_of(seen: list[tuple[str | None, int | None]], seconds: float,
              rtp: tuple[int, int, int] = (0, 0, 0), jitter: float = 0.0) -> LoadReport:
    """The report a process that saw exactly these calls gives (what the driver counts)."""
    outcomes: dict[str, int] = {}
    latency = Histogram()
    for outcome, ns in seen:
        if outcome is not None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if ns is not None:
            latency.record_ns(ns)
    failed = sum(1 for outcome, _ in seen if outcome is None)
    return LoadReport(
        calls_attempted=len(seen), calls_completed=len(seen) - failed, calls_failed=failed,
        outcomes=outcomes, cps_achieved=len(seen) / seconds, rtp_sent=rtp[0],
        rtp_received=rtp[1], rtp_lost=rtp[2], jitter_ms_max=jitter, bursts=(),
        seconds=seconds, latency={"invite_200": latency} if latency.count else {},
        failures={"timeout": failed} if failed else {})


@given(st.lists(calls, min_size=1, max_size=5))
def test_n_processes_merged_equal_one_that_saw_every_call(parts):
    whole = report_of([c for part in parts for c in part], 10.0)
    merged = merge_reports([report_of(part, 10.0) for part in parts])
    assert merged.latency == whole.latency
    assert {k: v for k, v in merged.outcomes.items() if v} == whole.outcomes
    assert {k: v for k, v in merged.failures.items() if v} == whole.failures
    for name in ("calls_attempted", "calls_completed", "calls_failed", "seconds"):
        assert getattr(merged, name) == getattr(whole, name)
    assert math.isclose(merged.cps_achieved, whole.cps_achieved)


def test_media_counters_add_and_jitter_takes_the_worst():
    a = report_of([("answered", 1000)], 2.0, rtp=(100, 90, 10), jitter=1.5)
    b = report_of([("busy", None)], 2.5, rtp=(50, 50, 0), jitter=0.5)
    m = merge_reports([a, b])
    assert (m.rtp_sent, m.rtp_received, m.rtp_lost, m.jitter_ms_max) == (150, 140, 10, 1.5)
    assert m.seconds == 2.5 and m.cps_achieved == 2 / 2.5


def test_rtp_stats_of_processes_merge_and_reach_the_summary():
    a = replace(report_of([], 1.0), rtp=RtpStats(streams=2, sent=100, received=98, expected=99,
                                                  lost=1, duplicates=1, reordered=3,
                                                  jitter_us_max=2000, jitter_us_sum=3000))
    b = replace(report_of([], 1.0), rtp=RtpStats(streams=1, sent=50, received=50, expected=50,
                                                  reordered=1, jitter_us_max=500,
                                                  jitter_us_sum=500))
    m = merge_reports([a, b])
    assert m.rtp == a.rtp.merge(b.rtp)
    numbers = load_numbers(m, {}, 1.0)
    assert (numbers["rtp_streams"], numbers["rtp_expected"], numbers["rtp_duplicates"],
            numbers["rtp_reordered"], numbers["jitter_ms_mean"]) == (3, 149, 1, 4, 3500 / 3000)
    assert numbers["rtp_loss_fraction"] == 1 / 149


def burst(index: int, times: tuple[float, ...], at: float = 100.0) -> BurstResult:
    return BurstResult(index, Deadline(at, 1e9 + at), times, errors=1, lost=0)


def test_the_shares_of_one_burst_join_and_the_spread_spans_all_processes():
    a = [burst(0, (100.0001, 100.0002)), burst(1, (102.0001,), at=102.0)]
    b = [burst(0, (100.0003, 100.0009))]
    m = merge_reports([replace(report_of([], 1.0), bursts=tuple(a)),
                       replace(report_of([], 1.0), bursts=tuple(b))])
    assert [r.index for r in m.bursts] == [0, 1]
    first = m.bursts[0]
    assert first.streams == 4 and first.processes == 2 and first.errors == 2
    assert math.isclose(first.spread_us, 800.0, rel_tol=1e-6)
    assert m.bursts[1] == a[1]


def test_a_burst_merges_only_from_one_index():
    try:
        merge_burst([burst(0, (1.0,)), burst(1, (1.0,))])
    except ValueError as exc:
        assert "one index" in str(exc)
    else:
        raise AssertionError("shares of two bursts merged")


def test_live_counters_are_summed():
    snaps = [{"load.calls_active": 3.0, "load.rtp_sent": 10.0}, {"load.calls_active": 2.0}]
    assert merge_snapshots(snaps) == {"load.calls_active": 5.0, "load.rtp_sent": 10.0}


def test_the_summary_load_block_carries_latency_percentiles():
    report = report_of([("answered", 2_000_000), ("answered", 4_000_000)], 1.0)
    numbers = load_numbers(report, {}, 1.0)
    assert numbers["latency"]["invite_200"]["count"] == 2
    assert numbers["latency"]["invite_200"]["max_ms"] == 4.0

