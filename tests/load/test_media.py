import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from rig.errors import InfraError
from rig.load.media import MediaEngine, PacingWheel, tick_at_or_after
from rig.topology.loopback import block_host
from rig.wire.rtp import RtpPacket, parse_rtp

HOST = block_host("77.1")  # this process's own block: no clash with parallel tests


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def free_port_range(size: int = 64) -> tuple[int, int]:
    return 42000, 42000 + size - 1


@pytest.fixture
def engine() -> Iterator[MediaEngine]:
    with MediaEngine(HOST, free_port_range(), seed=7) as media:
        yield media


@pytest.fixture
def sink() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(2.0)
    yield s
    s.close()


def receive(sock: socket.socket, count: int) -> list[RtpPacket]:
    return [parse_rtp(sock.recv(2048)) for _ in range(count)]


def test_stream_sends_pcmu_packets_with_advancing_headers(
    engine: MediaEngine, sink: socket.socket
) -> None:
    port = engine.open_endpoint()
    engine.prepare_stream(port, sink.getsockname())
    engine.start_streams([port])
    packets = receive(sink, 6)
    first = packets[0]
    assert first.marker and not any(p.marker for p in packets[1:])
    for i, p in enumerate(packets):
        assert (p.payload_type, p.payload, p.ssrc) == (0, b"\xff" * 160, first.ssrc)
        assert p.sequence == (first.sequence + i) % 65536
        assert p.timestamp == (first.timestamp + 160 * i) % 2**32


def test_nothing_is_sent_before_start_streams(engine: MediaEngine, sink: socket.socket) -> None:
    port = engine.open_endpoint()
    engine.prepare_stream(port, sink.getsockname())
    sink.settimeout(0.1)
    with pytest.raises(TimeoutError):
        sink.recv(2048)
    assert engine.totals()["rtp_sent"] == 0


def test_the_first_packet_leaves_from_the_calling_thread(
    engine: MediaEngine, sink: socket.socket
) -> None:
    port = engine.open_endpoint()
    engine.prepare_stream(port, sink.getsockname())
    engine.start_streams([port])
    # already counted on return, without waiting for the engine's I/O thread
    assert engine.totals()["rtp_sent"] >= 1
    sink.settimeout(0)
    assert parse_rtp(sink.recv(2048)).marker


def test_streams_get_distinct_ssrcs_from_the_seed(sink: socket.socket) -> None:
    def first_ssrcs(seed: int) -> list[int]:
        with MediaEngine(HOST, free_port_range(), seed=seed) as media:
            ports = [media.open_endpoint() for _ in range(3)]
            for port in ports:
                media.prepare_stream(port, sink.getsockname())
            media.start_streams(ports)
            ssrcs = {p.ssrc: None for p in receive(sink, 3)}
        while True:  # empty the sink for the next engine
            sink.settimeout(0.05)
            try:
                sink.recv(2048)
            except TimeoutError:
                break
        return sorted(ssrcs)

    assert first_ssrcs(1) == first_ssrcs(1)
    assert len(first_ssrcs(2)) == 3
    assert first_ssrcs(1) != first_ssrcs(2)


def test_every_packet_sent_is_received_once_the_sender_stops(engine: MediaEngine) -> None:
    a, b = engine.open_endpoint(), engine.open_endpoint()
    engine.prepare_stream(a, (HOST, b))
    engine.start_streams([a])
    assert wait_until(lambda: engine.totals()["rtp_received"] >= 10)
    engine.close_endpoint(a)
    sent = engine.totals()["rtp_sent"]
    assert wait_until(lambda: engine.totals()["rtp_received"] == sent)
    engine.close_endpoint(b)
    assert engine.totals() == {"rtp_sent": sent, "rtp_received": sent, "rtp_lost": 0.0,
                               "jitter_ms_max": engine.totals()["jitter_ms_max"]}


def test_both_directions_of_a_call_are_received(engine: MediaEngine) -> None:
    a, b = engine.open_endpoint(), engine.open_endpoint()
    engine.prepare_stream(a, (HOST, b))
    engine.prepare_stream(b, (HOST, a))
    engine.start_streams([a, b])
    assert wait_until(lambda: min(engine.endpoint_totals(p)["rtp_received"] for p in (a, b)) >= 5)
    for port in (a, b):
        counts = engine.endpoint_totals(port)
        assert counts["rtp_sent"] >= 5
        assert counts["rtp_lost"] == 0
    with pytest.raises(ValueError, match="not an open endpoint"):
        engine.endpoint_totals(1)


def test_receiver_counts_losses_from_a_lossy_forwarder(engine: MediaEngine) -> None:
    receiver = engine.open_endpoint()
    sender = engine.open_endpoint()
    dropped = {3, 7}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forwarder:
        forwarder.bind((HOST, 0))
        forwarder.settimeout(2.0)
        engine.prepare_stream(sender, forwarder.getsockname())
        engine.start_streams([sender])
        for index in range(12):
            data = forwarder.recv(2048)
            if index not in dropped:
                forwarder.sendto(data, (HOST, receiver))
        assert wait_until(lambda: engine.totals()["rtp_received"] == 10)
    engine.close_endpoint(sender)
    totals = engine.totals()
    assert (totals["rtp_received"], totals["rtp_lost"]) == (10, 2)
    assert totals["jitter_ms_max"] >= 0.0


def test_receiver_counts_duplicates_and_reordering_from_a_bad_forwarder(
    engine: MediaEngine,
) -> None:
    receiver = engine.open_endpoint()
    sender = engine.open_endpoint()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forwarder:
        forwarder.bind((HOST, 0))
        forwarder.settimeout(2.0)
        engine.prepare_stream(sender, forwarder.getsockname())
        engine.start_streams([sender])
        packets = [forwarder.recv(2048) for _ in range(8)]
        engine.close_endpoint(sender)
        # 0 1 3 2 4 4 6 7: packet 2 late, 4 twice, 5 lost
        for index in (0, 1, 3, 2, 4, 4, 6, 7):
            forwarder.sendto(packets[index], (HOST, receiver))
        assert wait_until(lambda: engine.stats().received == 8)
    stats = engine.stats()
    assert (stats.streams, stats.expected, stats.lost, stats.duplicates, stats.reordered) == (
        1, 8, 1, 1, 1)
    assert stats.sent >= 8 and stats.send_errors == 0
    assert engine.totals()["rtp_lost"] == 1


def test_invalid_datagrams_are_counted_not_parsed(engine: MediaEngine) -> None:
    port = engine.open_endpoint()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello", (HOST, port))
        s.sendto(b"\x00" * 20, (HOST, port))
    assert wait_until(lambda: engine.invalid_packets == 2)
    assert engine.totals()["rtp_received"] == 0


def test_concurrent_start_streams_start_each_stream_once(engine: MediaEngine) -> None:
    threads, per_thread = 8, 4
    groups: list[list[int]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((HOST, 0))
        sink.settimeout(2.0)
        for _ in range(threads):
            ports = [engine.open_endpoint() for _ in range(per_thread)]
            for port in ports:
                engine.prepare_stream(port, sink.getsockname())
            groups.append(ports)
        barrier = threading.Barrier(threads)

        def start(ports: list[int]) -> None:
            barrier.wait()
            engine.start_streams(ports)

        workers = [threading.Thread(target=start, args=(g,)) for g in groups]
        for w in workers:
            w.start()
        for w in workers:
            w.join(5)
        first_packets = []
        for _ in range(50 * threads * per_thread):
            packet = parse_rtp(sink.recv(2048))
            if packet.marker:
                first_packets.append(packet)
                if len(first_packets) == threads * per_thread:
                    break
    assert engine.running_streams == threads * per_thread
    assert len(first_packets) == threads * per_thread
    assert len({p.ssrc for p in first_packets}) == threads * per_thread


def test_starting_a_running_stream_is_an_error(engine: MediaEngine, sink: socket.socket) -> None:
    port = engine.open_endpoint()
    engine.prepare_stream(port, sink.getsockname())
    engine.start_streams([port])
    with pytest.raises(ValueError, match="already running"):
        engine.start_streams([port])
    with pytest.raises(ValueError, match="already running"):
        engine.prepare_stream(port, sink.getsockname())


def test_closed_endpoint_stops_sending_and_keeps_counts(
    engine: MediaEngine, sink: socket.socket
) -> None:
    port = engine.open_endpoint()
    engine.prepare_stream(port, sink.getsockname())
    engine.start_streams([port])
    receive(sink, 3)
    engine.close_endpoint(port)
    sent = engine.totals()["rtp_sent"]
    assert sent >= 3
    assert engine.running_streams == 0
    time.sleep(0.1)  # five ptimes: a stream still running would have sent again
    assert engine.totals()["rtp_sent"] == sent
    engine.close_endpoint(port)  # closing twice is harmless


def test_endpoints_are_even_ports_inside_the_range() -> None:
    lo, hi = free_port_range(8)
    with MediaEngine(HOST, (lo + 1, hi)) as media:
        ports = [media.open_endpoint() for _ in range(3)]
        assert all(p % 2 == 0 and lo + 1 <= p <= hi for p in ports)
        assert len(set(ports)) == 3
        with pytest.raises(InfraError, match="no free even RTP port"):
            media.open_endpoint()
        media.close_endpoint(ports[1])
        assert media.open_endpoint() == ports[1]


def test_taken_ports_are_skipped() -> None:
    lo, hi = free_port_range(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, lo))
        with MediaEngine(HOST, (lo, hi)) as media:
            assert media.open_endpoint() == lo + 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"port_range": (5000, 4000)}, "port range"), ({"port_range": (80, 90)}, "port range"),
     ({"payload_type": 96}, "payload type 96"), ({"ptime_ms": 0}, "ptime")],
)
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    settings = {"host": HOST, "port_range": (40000, 40100), **kwargs}
    with pytest.raises(ValueError, match=message):
        MediaEngine(**settings)


def test_unknown_or_unprepared_ports_are_errors(engine: MediaEngine) -> None:
    with pytest.raises(ValueError, match="not an open endpoint"):
        engine.prepare_stream(1234, (HOST, 9))
    port = engine.open_endpoint()
    with pytest.raises(ValueError, match="prepare_stream"):
        engine.start_streams([port])


class Item:
    def __init__(self, name: str) -> None:
        self.name = name
        self.next_tick = 0


def due_names(wheel: PacingWheel[Item], ticks: range) -> list[tuple[int, str]]:
    return [(tick, item.name) for tick in ticks for item in wheel.due(tick)]


def test_wheel_makes_each_stream_due_once_per_turn_at_its_phase() -> None:
    wheel: PacingWheel[Item] = PacingWheel(20)
    wheel.add(Item("a"), 25)
    wheel.add(Item("b"), 27)
    assert due_names(wheel, range(0, 70)) == [
        (25, "a"), (27, "b"), (45, "a"), (47, "b"), (65, "a"), (67, "b")]
    assert len(wheel) == 2


def test_wheel_does_not_send_early_when_added_in_the_slot_being_processed() -> None:
    wheel: PacingWheel[Item] = PacingWheel(20)
    wheel.add(Item("late"), 40)
    assert wheel.due(20) == []  # same slot, one turn too early
    assert [i.name for i in wheel.due(40)] == ["late"]


def test_wheel_catch_up_neither_drops_nor_adds_packets() -> None:
    """Ticks processed in a rush after a stall still give one packet per turn (no drift)."""
    wheel: PacingWheel[Item] = PacingWheel(4)
    items = [Item(str(i)) for i in range(4)]
    for i, item in enumerate(items):
        wheel.add(item, i)
    sent = due_names(wheel, range(0, 400))
    assert len(sent) == 400
    assert all(sent.count((t, str(t % 4))) == 1 for t in range(400))


def test_wheel_remove_stops_an_item() -> None:
    wheel: PacingWheel[Item] = PacingWheel(20)
    a, b = Item("a"), Item("b")
    wheel.add(a, 3)
    wheel.add(b, 3)
    wheel.due(3)
    wheel.remove(a)
    wheel.remove(a)  # twice is harmless
    assert [i.name for i in wheel.due(23)] == ["b"]
    assert len(wheel) == 1
    with pytest.raises(ValueError, match="at least one slot"):
        PacingWheel(0)


@pytest.mark.parametrize(
    ("t", "expected"), [(10.0, 0), (10.0005, 1), (10.001, 1), (10.0010001, 2), (9.9995, 0)])
def test_tick_at_or_after(t: float, expected: int) -> None:
    assert tick_at_or_after(t, 10.0, 0.001) == expected
