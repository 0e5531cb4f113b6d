import random
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.wire.rtp import packet_template, parse_rtp, stamp
from rig.wire.rtpstats import ReceiverStats, RtpStats, SourceStats


def feed(seqs: list[int], arrivals: list[float] | None = None) -> SourceStats:
    """Packets with the timestamps of a 20 ms stream and, unless given, perfect arrivals."""
    stats = SourceStats(8000)
    for i, seq in enumerate(seqs):
        arrival = arrivals[i] if arrivals is not None else (seq % 65536) * 0.020
        stats.update(seq % 65536, (seq % 65536) * 160, arrival)
    return stats


def counts(stats: SourceStats) -> tuple[int, int, int, int, int]:
    return stats.received, stats.expected, stats.missing, stats.duplicates, stats.reordered


def test_in_order_stream_has_nothing_to_report() -> None:
    assert counts(feed(list(range(100, 150)))) == (50, 50, 0, 0, 0)


def test_a_duplicate_is_counted_and_does_not_hide_a_loss() -> None:
    stats = feed([1, 2, 2, 4])
    assert counts(stats) == (4, 4, 1, 1, 0)
    assert stats.lost == 0  # RFC 3550's cumulative loss: the copy makes up for seq 3


def test_a_late_packet_is_reordered_not_lost() -> None:
    assert counts(feed([1, 3, 2, 4])) == (4, 4, 0, 0, 1)


def test_a_copy_of_a_late_packet_is_a_duplicate() -> None:
    assert counts(feed([1, 3, 2, 2, 3])) == (5, 3, 0, 2, 1)


def test_a_packet_far_behind_but_within_the_window_is_still_known() -> None:
    seqs = [*range(0, 90), 10, 95]  # seq 10 again, 80 behind; 90..94 lost
    assert counts(feed(seqs)) == (92, 96, 5, 1, 0)


def test_a_gap_filled_late_counts_each_late_packet() -> None:
    assert counts(feed([1, 5, 4, 2, 3, 6])) == (6, 6, 0, 0, 3)


def test_duplicates_and_reordering_across_the_wrap() -> None:
    stats = feed([65534, 0, 65535, 65535, 1, 0])
    assert stats.cycles == 65536
    assert counts(stats) == (6, 4, 0, 2, 1)


def test_a_copy_does_not_move_the_jitter() -> None:
    arrivals = [0.0, 0.020, 0.045, 0.060]
    once = feed([0, 1, 2, 3], arrivals)
    twice = feed([0, 1, 2, 2, 3], [*arrivals[:3], 0.050, arrivals[3]])
    assert twice.jitter == once.jitter
    assert twice.duplicates == 1


def test_jitter_of_a_stream_late_by_turns() -> None:
    # every other packet 4 ms late: |D| = 32 timestamp units after the first
    arrivals = [i * 0.020 + (0.004 if i % 2 else 0.0) for i in range(200)]
    stats = feed(list(range(200)), arrivals)
    assert stats.jitter == pytest.approx(32.0, abs=1e-3)  # the estimator converges on |D|
    assert stats.jitter_ms == pytest.approx(4.0, abs=1e-4)


def test_source_stats_become_plain_counts() -> None:
    stats = feed([1, 3, 2, 2, 6], [0.0, 0.040, 0.020, 0.021, 0.125]).stats()
    assert (stats.streams, stats.received, stats.expected, stats.lost, stats.duplicates,
            stats.reordered) == (1, 5, 6, 2, 1, 1)
    assert stats.jitter_us_max == stats.jitter_us_sum > 0
    assert stats.sent == 0  # a receiver does not know what was sent


def test_receiver_stats_merge_their_sources() -> None:
    receiver = ReceiverStats()
    for seq in (1, 2, 2, 4):
        receiver.update_header(1, seq, seq * 160, seq * 0.02)
    for seq in (10, 12, 11):
        receiver.update_header(2, seq, seq * 160, seq * 0.02)
    stats = receiver.stats()
    assert (stats.streams, stats.received, stats.expected, stats.lost, stats.duplicates,
            stats.reordered) == (2, 7, 7, 1, 1, 1)


def test_merge_adds_counts_and_keeps_the_worst_jitter() -> None:
    a = RtpStats(streams=2, sent=100, received=90, expected=95, lost=5, duplicates=1,
                 reordered=2, send_errors=3, invalid=4, jitter_us_max=700, jitter_us_sum=900)
    b = RtpStats(streams=1, sent=50, received=50, expected=50, lost=0, duplicates=0,
                 reordered=1, send_errors=0, invalid=1, jitter_us_max=1500, jitter_us_sum=1500)
    m = a.merge(b)
    assert m == RtpStats(streams=3, sent=150, received=140, expected=145, lost=5, duplicates=1,
                         reordered=3, send_errors=3, invalid=5, jitter_us_max=1500,
                         jitter_us_sum=2400)
    assert (m.jitter_ms_max, m.jitter_ms_mean) == (1.5, 0.8)
    assert m.loss_fraction == pytest.approx(5 / 145)
    assert a.merge(RtpStats()) == a == RtpStats().merge(a)
    assert RtpStats().jitter_ms_mean == 0.0 and RtpStats().loss_fraction == 0.0


def random_stream(rng: random.Random) -> SourceStats:
    """A stream through a bad network: losses, copies, late packets, jittery arrivals."""
    stats = SourceStats(8000)
    first = rng.randrange(65536)
    for i in range(rng.randrange(1, 300)):
        if rng.random() < 0.05:
            continue  # lost
        copies = 2 if rng.random() < 0.03 else 1
        for _ in range(copies):
            late = rng.randrange(4) if rng.random() < 0.05 else 0
            seq = (first + i - late) % 65536
            stats.update(seq, seq * 160, i * 0.020 + rng.random() * 0.005)
    return stats


@given(st.integers(0, 2**32), st.integers(1, 6))
def test_n_processes_merged_equal_one_that_saw_every_stream(seed: int, processes: int) -> None:
    rng = random.Random(seed)
    sources = [random_stream(rng) for _ in range(rng.randrange(1, 30))]
    streams = [source.stats() for source in sources]
    one = RtpStats.merged(streams)
    assert RtpStats.of_sources(sources) == one  # the engine's one-pass sum
    shuffled = streams[:]
    rng.shuffle(shuffled)
    shares: list[list[RtpStats]] = [[] for _ in range(processes)]
    for stats in shuffled:
        shares[rng.randrange(processes)].append(stats)
    per_process = [RtpStats.merged(share) for share in shares]
    assert RtpStats.merged(per_process) == one
    assert RtpStats.merged(reversed(per_process)) == one
    for f in fields(RtpStats):
        field_values = [getattr(s, f.name) for s in streams]
        expected = max(field_values) if f.name == "jitter_us_max" else sum(field_values)
        assert getattr(one, f.name) == expected


def test_a_template_stamped_in_place_parses_back() -> None:
    packet = packet_template(8, 0xDEADBEEF, b"\xd5" * 160)
    for sequence, timestamp in ((0, 0), (65535, 2**32 - 1), (70000, 2**32 + 5)):
        stamp(packet, sequence, timestamp)
        parsed = parse_rtp(bytes(packet))
        assert (parsed.payload_type, parsed.sequence, parsed.timestamp, parsed.ssrc,
                parsed.marker, parsed.payload) == (
            8, sequence % 65536, timestamp % 2**32, 0xDEADBEEF, False, b"\xd5" * 160)


def reference_counts(seqs: list[int]) -> tuple[int, int, int, int, int]:
    """The same counts the slow way: a set of everything seen, no window, no wrap."""
    seen: set[int] = set()
    highest, duplicates, reordered = seqs[0], 0, 0
    for seq in seqs:
        if seq in seen:
            duplicates += 1
        elif seq < highest:
            reordered += 1
        seen.add(seq)
        highest = max(highest, seq)
    expected = highest - seqs[0] + 1
    missing = max(0, expected - (len(seqs) - duplicates))
    return len(seqs), expected, missing, duplicates, reordered


# within MAX_MISORDER of each other, so RFC 3550 never takes one for a restart; the second
# start puts the sequence wrap in the middle (feed() sends them modulo 2**16)
@given(st.sampled_from([30000, 65486]).flatmap(
    lambda start: st.lists(st.integers(start, start + 99), min_size=1, max_size=300)))
def test_counts_match_a_set_of_everything_seen(seqs: list[int]) -> None:
    assert counts(feed(seqs)) == reference_counts(seqs)
