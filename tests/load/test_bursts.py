import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from rig.load.bursts import (
    BurstError,
    BurstResult,
    BurstTimer,
    percentile,
    spread_summary,
)
from rig.load.media import MediaEngine
from rig.load.rtp import RtpPacket, parse_rtp
from rig.topology.loopback import block_host

pytestmark = pytest.mark.timing  # burst timers: lateness and skew need idle cores

HOST = block_host("78.1")  # this process's own block: no clash with parallel tests


@pytest.fixture(params=["sleep", "event"])
def timer(request: pytest.FixtureRequest) -> Iterator[BurstTimer]:
    with BurstTimer(8, wake=request.param) as t:
        yield t


def first_packets(sink: socket.socket, count: int) -> list[RtpPacket]:
    """The marked first packets of `count` streams, read among at most 50 packets each."""
    marked: list[RtpPacket] = []
    for _ in range(50 * count):
        packet = parse_rtp(sink.recv(2048))
        if packet.marker:
            marked.append(packet)
            if len(marked) == count:
                break
    return marked


def soon(seconds: float = 0.01) -> float:
    return time.monotonic() + seconds


def test_every_worker_fires_once_per_burst_on_its_own_thread(timer: BurstTimer) -> None:
    fired: Counter[int] = Counter()
    threads: set[int] = set()
    lock = threading.Lock()

    def action(i: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                fired[i] += 1
                threads.add(threading.get_ident())
        return run

    for index in range(5):
        result = timer.fire(index, soon(), [action(i) for i in range(8)])
        assert result.index == index
        assert len(result.fire_times) == 8
    assert fired == Counter({i: 5 for i in range(8)})
    assert len(threads) == 8
    assert threading.get_ident() not in threads


def test_fire_times_are_at_or_after_the_deadline_and_before_the_action(
    timer: BurstTimer,
) -> None:
    seen = [0.0] * 8

    def action(i: int) -> Callable[[], None]:
        def run() -> None:
            seen[i] = time.monotonic()
        return run

    deadline = soon(0.02)
    result = timer.fire(0, deadline, [action(i) for i in range(8)])
    assert result.deadline == deadline
    for fired, acted in zip(result.fire_times, seen, strict=True):
        assert deadline <= fired <= acted
    assert all(o >= 0 for o in result.offsets_us)


def test_a_past_deadline_fires_at_once(timer: BurstTimer) -> None:
    result = timer.fire(0, time.monotonic() - 1.0, [lambda: None] * 8)
    assert min(result.offsets_us) >= 1e6


def test_offsets_and_spread_from_given_fire_times() -> None:
    result = BurstResult(3, 10.0, (10.0, 10.000010, 10.000020, 10.000100))
    assert result.offsets_us == pytest.approx((0.0, 10.0, 20.0, 100.0))
    assert result.spread_p50_us == pytest.approx(15.0)
    assert result.spread_p99_us == pytest.approx(20.0 + 0.97 * 80.0)
    assert result.spread_max_us == pytest.approx(100.0)


def test_spread_summary_pools_every_worker_of_every_burst() -> None:
    a = BurstResult(0, 1.0, (1.0, 1.000001))
    b = BurstResult(1, 2.0, (2.000003, 2.000002))
    summary = spread_summary([a, b])
    assert summary["bursts"] == 2
    assert summary["spread_p50_us"] == pytest.approx(1.5, abs=1e-6)
    assert summary["spread_max_us"] == pytest.approx(3.0, abs=1e-6)
    assert summary["skew_max_us"] == pytest.approx(1.0, abs=1e-6)  # b: 2.000003 - 2.000002
    assert set(spread_summary([]).values()) == {0.0}


def test_skew_leaves_out_the_lateness_every_worker_shares() -> None:
    late = BurstResult(0, 5.0, (5.000150, 5.000160, 5.000150))
    assert late.offsets_us == pytest.approx((150.0, 160.0, 150.0))
    assert late.skew_us == pytest.approx((0.0, 10.0, 0.0))


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([], 99) == 0.0


def test_a_failing_action_raises_after_all_workers_ran(timer: BurstTimer) -> None:
    ran: list[int] = []

    def fine(i: int) -> Callable[[], None]:
        return lambda: ran.append(i)

    def broken() -> None:
        raise RuntimeError("no port")

    actions = [fine(i) for i in range(7)] + [broken]
    with pytest.raises(BurstError, match="burst 4: action of worker 7 failed.*no port"):
        timer.fire(4, soon(), actions)
    assert sorted(ran) == list(range(7))
    assert len(timer.fire(5, soon(), [lambda: None] * 8).fire_times) == 8


def test_a_stuck_action_times_out(timer: BurstTimer) -> None:
    release = threading.Event()
    timer.action_timeout = 0.05
    try:
        with pytest.raises(BurstError, match="still busy"):
            timer.fire(0, soon(), [lambda: None] * 7 + [lambda: release.wait(5) and None])
    finally:
        release.set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"workers": 0}, "1..1024"), ({"workers": 2, "wake": "spin"}, "allowed: sleep, event")],
)
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BurstTimer(**kwargs)


def test_action_count_must_match_workers(timer: BurstTimer) -> None:
    with pytest.raises(ValueError, match="3 actions for 8 workers"):
        timer.fire(0, soon(), [lambda: None] * 3)


def test_closed_timer_refuses_to_fire() -> None:
    t = BurstTimer(2, realtime=False)
    t.close()
    with pytest.raises(BurstError, match="closed"):
        t.fire(0, soon(), [lambda: None] * 2)
    assert t.realtime_workers == 0


def test_close_racing_fire_never_strands_the_burst() -> None:
    """Ctrl-C closes the timer while a burst may be on its way in from another thread: the
    burst must either run or be refused, never wait out the action timeout."""
    stranded = 0
    for _ in range(200):
        t = BurstTimer(2, realtime=False)
        t.action_timeout = 5.0
        outcome: list[str] = []

        def fire(timer: BurstTimer = t, out: list[str] = outcome) -> None:
            try:
                timer.fire(0, time.monotonic(), [lambda: None] * 2)
                out.append("fired")
            except BurstError as exc:
                out.append(str(exc))

        thread = threading.Thread(target=fire)
        thread.start()
        t.close()
        thread.join(2.0)
        stranded += thread.is_alive() or "still busy" in "".join(outcome)
        thread.join()
    assert stranded == 0


def test_actions_start_media_streams_together() -> None:
    """The production path: each worker starts its streams in the MediaEngine."""
    workers, per_worker = 4, 3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((HOST, 0))
        sink.settimeout(2.0)
        with MediaEngine(HOST, (46000, 46999)) as media, BurstTimer(workers) as timer:
            groups = []
            for _ in range(workers):
                ports = [media.open_endpoint() for _ in range(per_worker)]
                for port in ports:
                    media.prepare_stream(port, sink.getsockname())
                groups.append(ports)
            actions = [lambda g=g: media.start_streams(g) for g in groups]
            result = timer.fire(0, soon(0.02), actions)
            first = first_packets(sink, workers * per_worker)
            assert media.running_streams == workers * per_worker
    assert len(result.fire_times) == workers
    assert len({p.ssrc for p in first}) == workers * per_worker
