"""The burst plan, interleaving and statistics on plain values; the send loop on a fake
clock; and the sender processes on loopback (a timestamping sink, streams from MediaEngine)."""

import math
import random
import signal
import socket
import time
from collections.abc import Callable

import pytest

from rig.clock import FakeClock, SystemClock
from rig.load.burstio import Mmsg, TimestampSink
from rig.load.bursts import (
    BurstResult,
    Deadline,
    interleave,
    jitter_offsets,
    percentile,
    plan_burst,
    summarize,
)
from rig.load.burstsender import BurstError, BurstSender, Packet, send_all, sleep_until
from rig.load.media import MediaEngine
from rig.topology.loopback import block_host
from rig.wire.rtp import parse_rtp

HOST = block_host("78.1")  # this process's own block: no clash with parallel tests
T = ("127.0.0.1", 0)


def at(port: int) -> tuple[str, int]:
    return ("127.0.0.1", port)


# ---- the plan -------------------------------------------------------------------------


def test_deadline_carries_the_same_instant_on_both_clocks() -> None:
    clock = FakeClock(start=100.0, wall_offset=1_000.0)
    d = Deadline.at(100.25, clock)
    assert d == Deadline(100.25, 1_100.25)


def test_interleave_deals_round_robin_over_port_lanes() -> None:
    # relay ports 30000.. step 2: port/2 mod 4 -> lanes 0,1,2,3,0,1,...
    targets = [at(p) for p in (30010, 30000, 30002, 30008, 30004, 30006, 30012, 30014)]
    order = interleave(targets, lanes=4)
    ports = [targets[i][1] for i in order]
    assert ports == [30000, 30002, 30004, 30006, 30008, 30010, 30012, 30014]
    lanes = [(p // 2) % 4 for p in ports]
    assert all(a != b for a, b in zip(lanes, lanes[1:], strict=False))
    assert sorted(order) == list(range(8))


def test_interleave_with_uneven_lanes_keeps_every_stream_once() -> None:
    targets = [at(p) for p in (40000, 40008, 40016, 40002)]  # lanes 0, 0, 0, 1
    order = interleave(targets, lanes=4)
    assert [targets[i][1] for i in order] == [40000, 40002, 40008, 40016]
    assert interleave(targets, lanes=1) == [0, 1, 2, 3]  # one lane: the caller's order
    assert interleave([], lanes=3) == []
    with pytest.raises(ValueError, match="at least 1"):
        interleave(targets, lanes=0)


def test_plan_deals_shares_in_turn_and_keeps_every_stream() -> None:
    targets = [at(30000 + 2 * i) for i in range(6)]
    plan = plan_burst(7, Deadline(5.0, 50.0), targets, lanes=2, processes=2)
    assert plan.index == 7
    assert sorted(s.stream for s in plan.shots) == list(range(6))
    assert [s.process for s in plan.shots] == [0, 1, 0, 1, 0, 1]
    assert [s.target for s in plan.shots] == [targets[s.stream] for s in plan.shots]
    assert len(plan.share(0)) == len(plan.share(1)) == 3
    assert all(s.offset == 0.0 for s in plan.shots)


def test_jittered_plan_is_sorted_by_instant_and_within_the_bound() -> None:
    targets = [at(30000 + 2 * i) for i in range(50)]
    plan = plan_burst(0, Deadline(1.0, 1.0), targets, jitter=0.001, rng=random.Random(3))
    offsets = [s.offset for s in plan.shots]
    assert offsets == sorted(offsets)
    assert 0.0 <= offsets[0] and offsets[-1] <= 0.001
    assert len(set(offsets)) == 50
    same = plan_burst(0, Deadline(1.0, 1.0), targets, jitter=0.001, rng=random.Random(3))
    assert same == plan


def test_jitter_and_processes_are_checked() -> None:
    assert jitter_offsets(3, 0.0, random.Random(0)) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="negative"):
        jitter_offsets(3, -1e-6, random.Random(0))
    with pytest.raises(ValueError, match="processes"):
        plan_burst(0, Deadline(0, 0), [T], processes=0)


# ---- statistics -----------------------------------------------------------------------


def test_spread_and_lateness_of_one_burst() -> None:
    r = BurstResult(2, Deadline(10.0, 100.0), (10.000005, 10.000105, 10.000055),
                    arrivals=(100.000020, 100.000200))
    assert r.streams == 3
    assert r.spread_us == pytest.approx(100.0)
    assert r.lateness_us == pytest.approx(5.0)
    assert r.arrival_spread_us == pytest.approx(180.0)
    assert r.arrival_lateness_us == pytest.approx(20.0)
    assert r.event()["spread_us"] == 100.0 and r.event()["lateness_us"] == 5.0


def test_refused_packets_are_left_out_of_spread_and_unmeasured_arrivals_are_none() -> None:
    r = BurstResult(0, Deadline(1.0, 1.0), (1.00001, math.nan, 1.00003), errors=1)
    assert r.spread_us == pytest.approx(20.0)
    assert r.arrival_spread_us is None and r.arrival_lateness_us is None
    assert r.event()["arrival_spread_us"] is None and r.event()["send_errors"] == 1
    assert math.isnan(BurstResult(0, Deadline(1, 1), (math.nan,)).lateness_us)


def test_summary_takes_percentiles_over_bursts() -> None:
    results = [BurstResult(i, Deadline(float(i), float(i)),
                           (i + 1e-6 * i, i + 1e-6 * i + 1e-6 * (10 + i)))
               for i in range(11)]
    s = summarize(results)
    assert s.bursts == 11 and s.streams == 22
    assert s.spread.p50 == pytest.approx(15.0)
    assert s.spread.max == pytest.approx(20.0)
    assert s.lateness.p50 == pytest.approx(5.0)
    assert s.arrival_spread is None
    assert math.isnan(s.row()["arrival_spread_p99_us"])


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99) == pytest.approx(4.96)
    assert math.isnan(percentile([], 99))


# ---- the send loop on a fake clock ------------------------------------------------------


class Wire:
    """Fake sends that note (clock, packet, target) and take `cost` of fake time each."""

    def __init__(self, clock: FakeClock, cost: float = 2e-6, refuse: int = -1) -> None:
        self.clock, self.cost, self.refuse = clock, cost, refuse
        self.log: list[tuple[float, bytes, tuple[str, int]]] = []

    def send(self, i: int) -> Callable[[bytes, tuple[str, int]], None]:
        def run(packet: bytes, target: tuple[str, int]) -> None:
            self.clock.advance(self.cost)
            if i == self.refuse:
                raise BlockingIOError("full")
            self.log.append((self.clock.now, packet, target))
        return run


class SpinClock(FakeClock):
    """A fake clock that also moves by a tick at every reading, so spins end."""

    def monotonic(self) -> float:
        self.now += 1e-7
        return self.now


def test_send_loop_sleeps_then_spins_then_sends_every_packet_in_order() -> None:
    clock = SpinClock(start=0.0)
    wire = Wire(clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    packets = [bytes([i]) for i in range(4)]
    times, errors = send_all([wire.send(i) for i in range(4)], packets, [at(i) for i in range(4)],
                             [0.0] * 4, 1.0, clock.monotonic, sleep, spin=0.001)
    assert errors == 0
    assert slept and slept[0] == pytest.approx(0.999, abs=1e-6)  # slept only to the spin
    assert all(t >= 1.0 for t in times) and times == sorted(times)
    assert [p for _, p, _ in wire.log] == packets
    assert [t for _, _, t in wire.log] == [at(i) for i in range(4)]


def test_jittered_shots_wait_for_their_own_instants() -> None:
    clock = SpinClock(start=0.0)
    wire = Wire(clock)
    offsets = [0.0, 50e-6, 200e-6]
    times, _ = send_all([wire.send(i) for i in range(3)], [b"a", b"b", b"c"], [T] * 3, offsets,
                        2.0, clock.monotonic, clock.sleep)
    for t, offset in zip(times, offsets, strict=True):
        assert 2.0 + offset <= t < 2.0 + offset + 1e-5


def test_a_past_deadline_fires_at_once_and_is_recorded_late() -> None:
    clock = SpinClock(start=10.0)
    wire = Wire(clock)
    times, _ = send_all([wire.send(0)], [b"x"], [T], [0.0], 9.0, clock.monotonic, clock.sleep)
    assert len(wire.log) == 1
    assert times[0] - 9.0 == pytest.approx(1.0, abs=1e-5)
    sleep_until(5.0, clock.monotonic, lambda s: pytest.fail("slept for a past deadline"))


def test_a_refused_packet_is_counted_and_the_rest_still_go() -> None:
    clock = SpinClock(start=0.0)
    wire = Wire(clock, refuse=1)
    times, errors = send_all([wire.send(i) for i in range(3)], [b"a", b"b", b"c"], [T] * 3,
                             [0.0] * 3, 0.0, clock.monotonic, clock.sleep)
    assert errors == 1 and math.isnan(times[1])
    assert [p for _, p, _ in wire.log] == [b"a", b"c"]


# ---- on loopback: sender processes and a timestamping sink -------------------------------


def bound_sockets(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        socks.append(sock)
    return socks


@pytest.mark.e2e
@pytest.mark.parametrize("processes", [1, 2])
def test_a_burst_of_32_streams_reaches_the_sink_complete(processes: int) -> None:
    socks = bound_sockets(32)
    try:
        with TimestampSink(HOST) as sink, BurstSender(processes) as sender:
            packets = [Packet(s, i.to_bytes(2, "big") * 20) for i, s in enumerate(socks)]
            deadline = Deadline.at(time.monotonic() + 0.05, SystemClock())
            plan = plan_burst(0, deadline, [sink.address] * 32, processes=processes)
            result = sender.fire(plan, packets)
            arrivals = sink.collect(40, 1.0)
    finally:
        for sock in socks:
            sock.close()
    assert len(arrivals) == 32  # nothing lost, nothing extra
    assert sorted(a.data for a in arrivals) == sorted(p.data for p in packets)
    sources = {int.from_bytes(a.data[:2], "big") for a in arrivals}
    assert sources == set(range(32))
    assert result.errors == 0 and result.processes == processes
    assert all(t >= deadline.monotonic for t in result.send_times)
    spread = (max(a.t for a in arrivals) - min(a.t for a in arrivals)) * 1e6
    assert 0 < spread < 1e6  # kernel times, within the same second


@pytest.mark.e2e
def test_a_past_deadline_fires_at_once_from_the_sender_process() -> None:
    socks = bound_sockets(4)
    try:
        with TimestampSink(HOST) as sink, BurstSender(1) as sender:
            deadline = Deadline.at(time.monotonic() - 0.5, SystemClock())
            plan = plan_burst(3, deadline, [sink.address] * 4)
            result = sender.fire(plan, [Packet(s, b"late") for s in socks])
            arrivals = sink.collect(4, 1.0)
    finally:
        for sock in socks:
            sock.close()
    assert len(arrivals) == 4
    assert result.lateness_us >= 0.5e6
    assert result.event()["lateness_us"] >= 0.5e6


@pytest.mark.e2e
def test_each_streams_first_packet_comes_first_from_the_media_engine() -> None:
    """The production path: MediaEngine builds first packets, the sender fires them from the
    streams' own ports, the engine paces the rest after them."""
    with TimestampSink(HOST) as sink, MediaEngine(HOST, (46000, 46999)) as media, \
            BurstSender(1) as sender:
        ports = [media.open_endpoint() for _ in range(32)]
        for port in ports:
            media.prepare_stream(port, sink.address)
        built = media.first_packets(ports)
        plan = plan_burst(0, Deadline.at(time.monotonic() + 0.02, SystemClock()),
                          [target for _, _, _, target in built])
        result = sender.fire(plan, [Packet(sock, data) for _, sock, data, _ in built])
        media.run_streams(ports, time.monotonic())
        arrivals = sink.collect(32 * 4, 1.0)
        assert media.running_streams == 32
        assert media.totals()["rtp_sent"] >= 32
    assert result.errors == 0
    first_seen: dict[int, int] = {}
    for arrival in arrivals:
        packet = parse_rtp(arrival.data)
        if packet.ssrc not in first_seen:
            assert packet.marker, "a stream's first packet to arrive is its marked first packet"
            first_seen[packet.ssrc] = packet.sequence
    assert len(first_seen) == 32
    assert all(parse_rtp(a.data).marker for a in arrivals[:32])


def test_floor_is_one_sendmmsg_of_the_whole_burst() -> None:
    (sock,) = bound_sockets(1)
    try:
        with TimestampSink(HOST) as sink:
            batch = Mmsg(sock, [bytes([i]) * 8 for i in range(16)], [sink.address] * 16)
            assert batch.send() == 16
            arrivals = sink.collect(16, 1.0)
            with pytest.raises(ValueError, match="2 packets for 1 destinations"):
                Mmsg(sock, [b"a", b"b"], [sink.address])
    finally:
        sock.close()
    assert [a.data[0] for a in arrivals] == list(range(16))
    assert all(math.isfinite(a.t) and abs(a.t - time.time()) < 60 for a in arrivals)


def test_closed_sender_refuses_to_fire_and_bad_counts_are_rejected() -> None:
    sender = BurstSender(1, realtime=False)
    sender.close()
    with pytest.raises(BurstError, match="closed"):
        sender.fire(plan_burst(0, Deadline(0, 0), []), [])
    with pytest.raises(ValueError, match="1..64"):
        BurstSender(0)


@pytest.mark.e2e
def test_a_terminal_ctrl_c_leaves_the_sender_to_its_driver() -> None:
    """Ctrl-C reaches the whole process group: the sender neither dies mid-recv with a
    traceback nor stops firing; the driver's close (EOF) ends it."""
    with TimestampSink(HOST) as sink, BurstSender(1, realtime=False) as sender:
        helper = sender._helpers[0]
        helper.process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert helper.process.poll() is None
        socks = bound_sockets(2)
        try:
            plan = plan_burst(1, Deadline.at(time.monotonic() + 0.05, SystemClock()),
                              [sink.address] * 2)
            sender.fire(plan, [Packet(s, b"after ^C") for s in socks])
            assert len(sink.collect(2, 1.0)) == 2
        finally:
            for sock in socks:
                sock.close()
    assert helper.process.wait(5) == 0
