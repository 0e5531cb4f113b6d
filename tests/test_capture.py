"""capture.pcap: the filter of a run, the size cap that keeps the first and the last part,
the scenario key, and the child's answers when it cannot capture."""

import json
import signal
from pathlib import Path

import pytest

from rig import capture
from rig.capture import CaptureProcess, HeadTail, NoCapture, capture_filter, run_filter
from rig.errors import ScenarioError
from rig.scenario import load_scenario
from rig.topology import Endpoints


class ListWriter:
    def __init__(self) -> None:
        self.packets: list[tuple[bytes, float]] = []
        self.flushes = 0

    def write(self, data: bytes, ts: float) -> None:
        self.packets.append((data, ts))

    def flush(self) -> None:
        self.flushes += 1


def test_filter_names_the_run_address_its_ports_and_ranges() -> None:
    bpf = capture_filter("127.9.8.7", [5080, 2223, 5060, 2223], [(40000, 49999)])
    assert bpf == ("inbound and udp and host 127.9.8.7 and (port 2223 or port 5060 or "
                   "port 5080 or portrange 40000-49999)")


def test_run_filter_adds_the_proxy_only_when_there_is_one() -> None:
    endpoints = Endpoints("127.1.2.3")
    assert "port 5070" not in run_filter(endpoints, None)
    with_proxy = run_filter(endpoints, 5070)
    assert "port 5070" in with_proxy and "portrange 30000-31999" in with_proxy


def test_run_filter_takes_the_sip_ports_of_every_generator_process() -> None:
    bpf = run_filter(Endpoints("127.1.2.3"), None, [5102, 5103])
    assert "port 5060" in bpf and "port 5102" in bpf and "port 5103" in bpf


def test_under_the_cap_every_packet_is_written_as_it_comes() -> None:
    writer = ListWriter()
    keeper = HeadTail(writer, max_bytes=10_000)
    for i in range(10):
        keeper.add(bytes([i]) * 100, float(i))
    counts = keeper.finish()
    assert [ts for _, ts in writer.packets] == [float(i) for i in range(10)]
    assert (counts.seen, counts.written, counts.dropped_middle) == (10, 10, 0)
    assert counts.bytes == 24 + 10 * 116


def test_over_the_cap_the_first_and_the_last_part_are_kept() -> None:
    writer = ListWriter()
    keeper = HeadTail(writer, max_bytes=24 + 10 * 116)  # room for ten 100-byte packets
    for i in range(100):
        keeper.add(bytes([i]) * 100, float(i))
    counts = keeper.finish()
    kept = [int(ts) for _, ts in writer.packets]
    assert kept[:4] == [0, 1, 2, 3]  # the first half of the budget, as it came
    assert kept[-1] == 99 and kept == sorted(kept)  # then the newest, in order
    assert counts.written == len(kept) < 100
    assert counts.dropped_middle == 100 - len(kept)
    assert counts.bytes <= 24 + 10 * 116


def test_capture_off_and_the_size_cap_in_a_scenario(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nduration: 1\ncapture: off\nchecks: {relay_alive: {}}\n")
    assert load_scenario(path).capture.enabled is False
    assert load_scenario(path, ["capture={max_mb: 5}"]).capture.max_mb == 5
    path.write_text("name: s\nduration: 1\nchecks: {relay_alive: {}}\n")
    assert load_scenario(path).capture.enabled and load_scenario(path).capture.max_mb == 50
    with pytest.raises(ScenarioError, match="capture.max_mb"):
        load_scenario(path, ["capture.max_mb=0"])
    with pytest.raises(ScenarioError, match="capture"):
        load_scenario(path, ["capture.size=1"])


def test_without_the_privilege_the_child_says_so_once_and_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(iface: str, bpf: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(capture, "open_socket", denied)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        code = capture.child_main(["--filter", "udp", "--out", str(tmp_path / "c.pcap"),
                                   "--status", str(tmp_path / "s.json"), "--max-bytes", "1000"])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert code == 0
    assert capsys.readouterr().out == (
        "unavailable: capturing on lo needs CAP_NET_RAW ([Errno 1] Operation not permitted)\n")
    assert not (tmp_path / "c.pcap").exists()


def test_a_run_that_cannot_capture_goes_on_and_records_why(tmp_path: Path) -> None:
    notices: list[str] = []
    (tmp_path / "logs").mkdir()
    process = CaptureProcess(tmp_path, "udp", 1000, iface="rig-no-such-if",
                             on_notice=notices.append)
    assert process.start() is None
    process.stop()
    block = process.summary()
    assert block["enabled"] and not block["captured"] and block["reason"]
    assert len(notices) == 1 and notices[0].startswith("capture: off for this run: ")
    assert json.dumps(block)


def test_capture_off_is_recorded_as_such() -> None:
    assert NoCapture().summary() == {"enabled": False, "captured": False}
