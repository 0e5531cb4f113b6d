"""The LoadDriver on loopback: pacing, the mix, the cap, bounded stop, target checks, RTP."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rig.errors import UsageError
from rig.load.driver import (
    BurstPlan,
    CallPlan,
    LoadDriver,
    LoadReport,
    RtpPlan,
    Targets,
    calls_due,
    pick_outcome,
)
from rig.load.mediacontrol import NgMediaControl
from rig.load.ng import NgClient
from rig.probes.ng import ng_request
from rig.topology.destinations import Destinations, UnsafeDestination, parse_networks
from rig.topology.loopback import block_host
from rig.wire.ng import NgError, decode_ng, encode_ng
from rig.wire.sdp import media_address, shape_differences
from rig.wire.sip import Leg, build_request, parse_message
from rig.wire.transaction import SipTimers

# SIP timers and exact counts under load: one worker at a time (the timing group)
pytestmark = pytest.mark.timing

HOST = block_host("3.1")
FAST = SipTimers(t1=0.05, t2=0.2, timeout=3.0)
MIX = {"answered": 0.55, "busy": 0.15, "cancel": 0.15, "no_answer": 0.15}


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def targets(**changes: Any) -> Targets:
    values: dict[str, Any] = {"host": HOST, "uac_port": free_port(), "uas_port": free_port(),
                              "rtp_ports": (42000, 42999)}
    values.update(changes)
    return Targets(**values)


def plan(**changes: Any) -> CallPlan:
    values: dict[str, Any] = {"cps": 40.0, "max_concurrent": 100, "hold": 0.1,
                              "outcomes": MIX, "no_answer_timeout": 0.15, "rtp": None}
    values.update(changes)
    return CallPlan(**values)


def run(job: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(job, 30))  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, data: dict) -> None:
        self.events.append((kind, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def drive(calls: CallPlan, duration: float, seed: int = 0, **options: Any) -> tuple[
        LoadReport, Recorder, LoadDriver]:
    recorder = Recorder()
    driver = LoadDriver(calls, None, targets(), recorder, seed=seed, timers=FAST, **options)
    return run(driver.run(duration)), recorder, driver


def test_pure_helpers_pick_outcomes_and_pace() -> None:
    assert [pick_outcome(MIX, d) for d in (0.0, 0.549, 0.55, 0.71, 0.86, 0.9999)] == [
        "answered", "answered", "busy", "cancel", "no_answer", "no_answer"]
    assert pick_outcome({"busy": 1.0}, 0.3) == "busy"
    assert [calls_due(t, 10.0, 0) for t in (0.0, 0.05, 0.1, 0.95)] == [1, 1, 2, 10]
    assert calls_due(0.95, 10.0, 10) == 0
    assert calls_due(5.0, 0.0, 0) == 0


def test_a_mix_without_media_is_counted_exactly_and_reproducible() -> None:
    report, recorder, driver = drive(plan(), 1.0, seed=3)
    assert report.calls_failed == 0
    assert report.calls_attempted == report.calls_completed == 40
    assert sum(report.outcomes.values()) == report.calls_completed
    assert set(report.outcomes) <= set(MIX) and report.outcomes["answered"] > 10
    assert 30 <= report.cps_achieved <= 45
    assert recorder.kinds() == ["load_start", "load_stop"]
    stop = recorder.events[-1][1]
    assert stop["uas"] == {"invites": 40, "completed": 40, "failed": 0}
    assert driver.snapshot()["load.calls_active"] == 0
    assert driver.snapshot()["load.calls_completed"] == 40
    invite_200 = report.latency["invite_200"]  # one sample per call that got its 200 OK
    assert invite_200.count == report.outcomes["answered"]
    assert 0 < invite_200.min_ns <= invite_200.max_ns < 1e9
    again, _, _ = drive(plan(), 1.0, seed=3)
    other, _, _ = drive(plan(), 1.0, seed=4)
    assert again.outcomes == report.outcomes
    assert other.outcomes != report.outcomes


def test_every_call_id_starts_with_the_prefix_and_the_schedule_waits_for_the_origin() -> None:
    recorder = Recorder()
    driver = LoadDriver(plan(outcomes={"answered": 1.0}), None, targets(), recorder,
                        timers=FAST, call_id_prefix="p1-")

    async def later() -> tuple[LoadReport, float]:
        loop = asyncio.get_running_loop()
        origins = []

        async def ready() -> float:  # set up by now: the calls count from half a second on
            origins.append(loop.time() + 0.5)
            return origins[0]

        report = await driver.run(0.5, ready=ready)
        return report, loop.time() - origins[0]

    report, after_origin = run(later())
    ended = driver.ended_call_ids()
    assert len(ended) == report.calls_attempted == 20  # 40/s over the 0.5 s after the origin
    assert all(call_id.startswith("p1-") for call_id in ended)
    assert after_origin >= 0.5


def test_concurrency_never_exceeds_the_cap() -> None:
    peak = 0

    async def watch(driver: LoadDriver) -> LoadReport:
        nonlocal peak
        task = asyncio.ensure_future(driver.run(1.0))
        while not task.done():
            peak = max(peak, int(driver.snapshot()["load.calls_active"]))
            await asyncio.sleep(0.002)
        return task.result()

    driver = LoadDriver(plan(cps=200.0, max_concurrent=5, hold=0.2, outcomes={"answered": 1.0}),
                        None, targets(), Recorder(), timers=FAST)
    report = run(watch(driver))
    assert peak == 5
    assert report.calls_failed == 0
    assert 10 <= report.calls_attempted <= 30  # ~5 every 0.2 s, far below 200/s


def test_stop_is_bounded_and_ends_the_calls_still_up() -> None:
    async def timed() -> tuple[LoadReport, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        driver = LoadDriver(plan(cps=20.0, hold=60.0, no_answer_timeout=60.0), None, targets(),
                            Recorder(), timers=FAST)
        report = await driver.run(0.5)
        return report, loop.time() - started

    report, seconds = run(timed())
    assert seconds < 2.0
    assert report.calls_attempted == report.calls_completed > 5


def test_media_control_sees_offer_answer_and_one_delete_per_call() -> None:
    class FakeMedia:
        def __init__(self) -> None:
            self.log: list[tuple[str, str]] = []

        async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
            self.log.append(("offer", call_id))
            return sdp

        async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
            assert to_tag
            self.log.append(("answer", call_id))
            return sdp

        async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
            self.log.append(("delete", call_id))

    media = FakeMedia()
    report, _, _ = drive(plan(cps=20.0), 1.0, media=media)
    by_kind: dict[str, list[str]] = {"offer": [], "answer": [], "delete": []}
    for kind, call_id in media.log:
        by_kind[kind].append(call_id)
    assert len(by_kind["offer"]) == report.calls_attempted == 20
    assert sorted(by_kind["delete"]) == sorted(by_kind["offer"])
    assert len(by_kind["answer"]) == report.outcomes["answered"]

    # a vanished caller sends no BYE: no delete, the relay's timeout has to end it
    media = FakeMedia()
    mix = {"answered": 0.5, "vanish": 0.5}
    report, _, _ = drive(plan(cps=20.0, outcomes=mix), 1.0, seed=3, media=media)
    deleted = {call_id for kind, call_id in media.log if kind == "delete"}
    offered = {call_id for kind, call_id in media.log if kind == "offer"}
    assert 0 < report.outcomes["vanish"] < report.calls_completed
    assert len(offered - deleted) == report.outcomes["vanish"]


def test_a_media_failure_fails_the_call_not_the_run() -> None:
    class BrokenMedia:
        async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
            raise RuntimeError("relay said no")

        async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
            return sdp

        async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
            return None

    report, recorder, _ = drive(plan(cps=10.0), 0.5, media=BrokenMedia())
    assert report.calls_attempted == report.calls_failed == 5
    assert recorder.events[-1][1]["failures"] == {"RuntimeError: relay said no": 5}


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"host": "10.1.2.3"}, "10.1.2.3:"),
        ({"proxy": ("192.168.1.1", 5060)}, "192.168.1.1:5060 (the SIP proxy (targets.proxy))"),
        ({"ng": ("8.8.8.8", 2223)}, "8.8.8.8:2223 (the NG address (targets.ng))"),
    ],
)
def test_targets_outside_loopback_are_refused_unless_allowed(changes: dict, where: str) -> None:
    with pytest.raises(UnsafeDestination) as caught:
        LoadDriver(plan(), None, targets(**changes), Recorder())
    assert f"refusing to send to {where}" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UsageError)
    allowed = Destinations(allowed=parse_networks(["0.0.0.0/0"]))
    LoadDriver(plan(), None, targets(**changes), Recorder(), destinations=allowed)


def test_a_host_name_target_is_refused_even_with_everything_allowed() -> None:
    allowed = Destinations(allowed=parse_networks(["0.0.0.0/0"]))
    with pytest.raises(UnsafeDestination, match="'localhost'.*not an IP address"):
        LoadDriver(plan(), None, targets(host="localhost"), Recorder(), destinations=allowed)


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"outcomes": {"answered": 0.5, "busy": 0.4}}, "sum to 1"),
        ({"outcomes": {"answered": 0.5, "hangup": 0.5}}, "unknown outcomes"),
        ({"outcomes": {"answered": 1.5, "busy": -0.5}}, "negative"),
        ({"max_concurrent": 0}, "max_concurrent"),
    ],
)
def test_bad_plans_are_refused(changes: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        LoadDriver(plan(**changes), None, targets(), Recorder())


def test_bad_rtp_range_and_duration_are_refused() -> None:
    with pytest.raises(ValueError, match="bad RTP port range"):
        LoadDriver(plan(), None, targets(rtp_ports=(5000, 4000)), Recorder())
    driver = LoadDriver(plan(), None, targets(), Recorder())
    with pytest.raises(ValueError, match="duration must be > 0"):
        run(driver.run(0))


def test_rtp_flows_both_ways_between_the_endpoints_without_a_relay() -> None:
    calls = plan(cps=10.0, hold=0.5, outcomes={"answered": 1.0}, rtp=RtpPlan())
    report, _, driver = drive(calls, 1.0, uas_hangup_share=0.0)
    assert report.calls_completed == 10
    one_way = 10 * 0.5 / 0.020  # packets one direction of all calls would send
    assert report.rtp_sent > 1.5 * one_way  # both directions sent
    assert report.rtp_received >= 0.95 * report.rtp_sent
    assert report.rtp_lost <= 0.05 * report.rtp_sent
    assert driver.snapshot()["load.rtp_sent"] == report.rtp_sent


def test_bursts_fire_prepared_calls_together_and_are_reported() -> None:
    bursts = BurstPlan(first_at=0.3, every=0.6, count=2, workers=3, streams_per_worker=2,
                       hold=0.3)
    recorder = Recorder()
    driver = LoadDriver(plan(cps=0.0), bursts, targets(), recorder, timers=FAST)
    report = run(driver.run(1.3))
    fired = [data for kind, data in recorder.events if kind == "burst"]
    assert [event["index"] for event in fired] == [0, 1]
    assert all(event["workers"] == 3 and event["streams"] == 12 for event in fired)
    assert all(0 <= e["spread_us"] and 0 <= e["lateness_us"] for e in fired)
    assert all(e["send_errors"] == 0 and e["arrival_spread_us"] is None for e in fired)
    assert len(report.bursts) == 2 and all(b.streams == 12 for b in report.bursts)
    assert report.calls_attempted == report.calls_completed == 2 * 3 * 2
    # both sides of all 12 calls sent for most of the 0.3 s hold (15 packets at 20 ms)
    assert report.rtp_sent >= 12 * 2 * 10
    assert report.rtp_received >= 0.9 * report.rtp_sent


def test_a_burst_in_sink_mode_reports_where_its_packets_landed() -> None:
    bursts = BurstPlan(first_at=0.2, every=0.5, count=1, workers=4, streams_per_worker=2,
                       hold=0.2, lanes=2, processes=2, sink=True)
    recorder = Recorder()
    driver = LoadDriver(plan(cps=0.0), bursts, targets(), recorder, timers=FAST)
    report = run(driver.run(0.8))
    (fired,) = [data for kind, data in recorder.events if kind == "burst"]
    assert fired["streams"] == 16 and fired["processes"] == 2 and fired["lost"] == 0
    assert fired["arrival_spread_us"] is not None and fired["arrival_spread_us"] >= 0
    assert report.calls_completed == 8  # the calls carry on; only the first packets went aside


# ---- a SUT that names a foreign media address: the run stops before any packet goes there ---

FOREIGN = "203.0.113.7"  # TEST-NET-3: documentation only, never routed


class HostileRelay(asyncio.DatagramProtocol):
    """An NG relay that answers offer and answer with SDP naming `offer_host`/`answer_host`."""

    def __init__(self, offer_host: str, answer_host: str) -> None:
        self.hosts = {"offer": offer_host, "answer": answer_host}
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, message = decode_ng(data)
        command = str(message.get("command"))
        reply: dict[str, Any] = {"result": "ok"}
        if command in self.hosts:
            reply["sdp"] = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\n"
                            f"c=IN IP4 {self.hosts[command]}\r\nt=0 0\r\n"
                            "m=audio 40000 RTP/AVP 0\r\n")
        self.transport.sendto(encode_ng(cookie, reply), addr)


def drive_against_hostile_relay(offer_host: str, answer_host: str) -> tuple[
        BaseException | None, Recorder, LoadDriver, float]:
    recorder = Recorder()
    ng_port = free_port()
    calls = plan(cps=20.0, hold=0.5, outcomes={"answered": 1.0}, rtp=RtpPlan())
    driver = LoadDriver(calls, None, targets(ng=(HOST, ng_port)), recorder, timers=FAST)

    async def main() -> tuple[BaseException | None, float]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: HostileRelay(offer_host, answer_host), local_addr=(HOST, ng_port))
        started = loop.time()
        try:
            await driver.run(10.0)
        except UnsafeDestination as refused:
            return refused, loop.time() - started
        finally:
            transport.close()
        return None, loop.time() - started

    refused, seconds = run(main())
    return refused, recorder, driver, seconds


# The foreign side by name: HOST differs between xdist workers, and so would the test ids.
@pytest.mark.parametrize(("foreign_side", "origin"), [
    ("answer", "SDP c=/m= from the relay's answer"),
    ("offer", "SDP c=/m= from the relay's offer"),
])
def test_a_foreign_media_address_from_the_relay_stops_the_run_before_any_rtp(
    foreign_side: str, origin: str
) -> None:
    offer_host, answer_host = (HOST, FOREIGN) if foreign_side == "answer" else (FOREIGN, HOST)
    refused, recorder, driver, seconds = drive_against_hostile_relay(offer_host, answer_host)
    assert str(refused) == (f"refusing to send to {FOREIGN}:40000 ({origin}): not loopback, "
                            "not the rig's own and not in targets.allow")
    assert driver.snapshot()["load.rtp_sent"] == 0  # checked before the first packet
    assert seconds < 5.0  # stopped at the first answer, not after the 10 s of load
    refusals = [data for kind, data in recorder.events if kind == "unsafe_destination"]
    assert refusals == [{"message": str(refused)}]


# ---- the embedded default: the rig plays Kamailio's rtpengine module against the relay ---

ROOT = Path(__file__).resolve().parents[2]
RELAY_HOST = block_host("3.20")


@contextmanager
def started(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A service process, stopped (then killed) on the way out whatever happened."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until(ready: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready after {seconds} s")


def ng_answers(port: int, host: str = RELAY_HOST) -> bool:
    try:
        return ng_request(host, port, {"command": "ping"}, 0.2).get("result") == "pong"
    except NgError:
        return False


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[int]:
    """kmod model + relay model on loopback; yields the relay's NG port."""
    kmod_dir = tmp_path / "kmod"
    ng_port = free_port(RELAY_HOST)
    with started([sys.executable, str(ROOT / "containers/kmod/kmod.py"), "--dir", str(kmod_dir)],
                 tmp_path / "kmod.log"):
        wait_until(lambda: (kmod_dir / "control.sock").exists(), "kmod")
        with started([sys.executable, str(ROOT / "containers/relay/relay.py"),
                      "--ng", f"{RELAY_HOST}:{ng_port}", "--rtp-addr", RELAY_HOST,
                      "--rtp-ports", "43000-43999", "--workers", "2", "--shard-size", "65536",
                      "--kmod", str(kmod_dir), "--table", "0"], tmp_path / "relay.log"):
            wait_until(lambda: ng_answers(ng_port), "relay")
            yield ng_port


@pytest.mark.e2e
def test_calls_with_rtp_through_the_relay_over_ng(relay: int) -> None:
    calls = plan(cps=10.0, hold=0.6, outcomes={"answered": 0.7, "busy": 0.1, "cancel": 0.1,
                                               "no_answer": 0.1}, rtp=RtpPlan())
    where = targets(ng=(RELAY_HOST, relay))
    recorder = Recorder()
    report = run(LoadDriver(calls, None, where, recorder, seed=5, timers=FAST).run(1.5))
    assert report.calls_failed == 0, recorder.events[-1]
    assert report.calls_attempted == report.calls_completed == 15
    assert report.rtp_sent > 0
    assert report.rtp_received >= 0.8 * report.rtp_sent  # relayed both ways
    stats = ng_request(RELAY_HOST, relay, {"command": "statistics"})
    assert stats["sessions"] == 0  # every call offered was deleted
    assert stats["packets_relayed"] >= report.rtp_received


RTPENGINE = shutil.which("rtpengine")
RTPENGINE_HOST = block_host("3.21")


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[int]:
    """rtpengine 10.5, userspace only (no kernel table), on loopback; yields its NG port."""
    if RTPENGINE is None:
        pytest.skip("rtpengine (rtpengine-daemon) is not installed")
    ng_port = free_port(RTPENGINE_HOST)
    # --config-file=none: the host's /etc/rtpengine listens on fixed 127.0.0.1 ports, which
    # a second rtpengine (a parallel test) would find taken
    with started([RTPENGINE, "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
                  "--no-fallback",
                  "--delete-delay=0",
                  f"--interface={RTPENGINE_HOST}", f"--listen-ng={RTPENGINE_HOST}:{ng_port}",
                  "--port-min=44000", "--port-max=44999"], tmp_path / "rtpengine.log"):
        wait_until(lambda: ng_answers(ng_port, RTPENGINE_HOST), "rtpengine")
        yield ng_port


class ShapeChecked:
    """A MediaControl that records whether the relay kept each SDP's media description."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.differences: list[str] = []
        self.rewritten = 0

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        return self._check(sdp, await self.inner.offer(call_id, from_tag, sdp))

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        return self._check(sdp, await self.inner.answer(call_id, from_tag, to_tag, sdp))

    async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
        await self.inner.delete(call_id, from_tag, to_tag)

    def _check(self, before: str, after: str) -> str:
        self.differences.extend(shape_differences(before, after))
        self.rewritten += media_address(after)[0] == RTPENGINE_HOST
        return after


@pytest.mark.e2e
def test_calls_with_rtp_through_real_rtpengine_keep_the_sdp_shape(rtpengine: int) -> None:
    async def main() -> tuple[LoadReport, ShapeChecked]:
        client = await NgClient.open(RTPENGINE_HOST, rtpengine)
        try:
            media = ShapeChecked(NgMediaControl(client))
            calls = plan(cps=10.0, hold=0.5, outcomes={"answered": 1.0}, rtp=RtpPlan())
            driver = LoadDriver(calls, None, targets(), Recorder(), timers=FAST, media=media)
            return await driver.run(1.0), media
        finally:
            client.close()

    report, media = run(main())
    assert report.calls_attempted == report.calls_completed == 10
    assert media.differences == []
    assert media.rewritten == 20  # every offer and answer now points at rtpengine
    assert report.rtp_received >= 0.8 * report.rtp_sent > 0
    listed = ng_request(RTPENGINE_HOST, rtpengine, {"command": "list"})
    assert listed.get("calls", []) == []  # every call was deleted


KAMAILIO = shutil.which("kamailio")
KAMAILIO_HOST = block_host("3.30")


def sip_options_answered(port: int) -> bool:
    """The proxy answers an OPTIONS for itself (its readiness probe)."""
    leg = Leg("ready@rig", f"sip:probe@{HOST}", "p", f"sip:{KAMAILIO_HOST}:{port}", "",
              f"sip:{KAMAILIO_HOST}:{port}", f"sip:probe@{HOST}", f"{HOST}:9")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.bind((HOST, 0))
        sock.sendto(build_request(leg, "OPTIONS", 1, "z9hG4bKready"), (KAMAILIO_HOST, port))
        try:
            return parse_message(sock.recv(65535)).status == 200
        except OSError:
            return False


@pytest.fixture
def kamailio(tmp_path: Path, rtpengine: int) -> Iterator[int]:
    """Kamailio 5.6 with the rig's config, media through rtpengine; yields its SIP port."""
    if KAMAILIO is None:
        pytest.skip("kamailio is not installed")
    port = free_port(KAMAILIO_HOST)
    config = ROOT / "containers" / "kamailio" / "kamailio.cfg"
    with started([KAMAILIO, "-DD", "-E", "-f", str(config), "-Y", str(tmp_path),
                  "-A", f"SIP_LISTEN=udp:{KAMAILIO_HOST}:{port}",
                  "-A", f'RTPENGINE_SOCK="udp:{RTPENGINE_HOST}:{rtpengine}"',
                  "-A", f'CTL_SOCK="unix:{tmp_path}/kamailio_ctl"'], tmp_path / "kamailio.log"):
        wait_until(lambda: sip_options_answered(port), "kamailio")
        yield port


@pytest.mark.e2e
def test_every_outcome_through_kamailio_with_record_route_and_rtp(kamailio: int) -> None:
    calls = plan(cps=10.0, hold=0.3, no_answer_timeout=0.3, rtp=RtpPlan())
    where = targets(proxy=(KAMAILIO_HOST, kamailio))
    recorder = Recorder()
    driver = LoadDriver(calls, None, where, recorder, seed=2, uas_hangup_share=0.3,
                        timers=SipTimers(t1=0.1, t2=0.4, timeout=2.0))
    report = run(driver.run(2.0))
    assert report.calls_failed == 0, recorder.events[-1]
    assert report.calls_attempted == report.calls_completed == 20
    assert set(report.outcomes) == {"answered", "busy", "cancel", "no_answer"}
    assert recorder.events[-1][1]["uas"] == {"invites": 20, "completed": 20, "failed": 0}
    assert report.rtp_received >= 0.8 * report.rtp_sent > 0  # through rtpengine, both ways


def test_cancelling_the_run_leaves_no_call_behind() -> None:
    """What the runner does when the relay dies: cancel run(); every call task ends with it."""

    async def cancel_midway() -> tuple[LoadDriver, int]:
        driver = LoadDriver(plan(cps=50.0, hold=30.0), None, targets(), Recorder(), timers=FAST)
        task = asyncio.ensure_future(driver.run(10.0))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        calls = [t for t in asyncio.all_tasks() if "LoadDriver._call" in repr(t.get_coro())]
        return driver, len(calls)

    driver, left = run(cancel_midway())
    assert left == 0
    snapshot = driver.snapshot()
    assert snapshot["load.calls_active"] == 0
    assert snapshot["load.calls_failed"] > 5  # cut calls are counted, once


def test_cancelled_while_a_burst_is_set_up_nothing_waits_for_it() -> None:
    """Ctrl-C as asyncio.run delivers it: every task cancelled once, while a burst's calls
    are being answered. Media control that finishes its answer anyway (as 3.11's wait_for
    did when the reply came with the cancellation) must not leave the call waiting for a
    burst that will never fire: every task ends."""

    class AnswerDespiteCancel:
        async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
            return sdp

        async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                pass  # the reply was there: returned, the cancellation lost
            return sdp

        async def delete(self, call_id: str, from_tag: str, to_tag: str | None = None) -> None:
            pass

    async def cancel_during_setup() -> set[asyncio.Task[Any]]:
        bursts = BurstPlan(first_at=1.0, every=5.0, count=1, workers=2, streams_per_worker=2,
                           hold=0.3)
        driver = LoadDriver(plan(cps=0.0), bursts, targets(), Recorder(), timers=FAST,
                            media=AnswerDespiteCancel())
        before = asyncio.all_tasks()
        run_task = asyncio.ensure_future(driver.run(3.0))
        # the burst's calls are set up from first_at - 0.5 s; each answer takes 0.2 s
        for _ in range(300):
            others = asyncio.all_tasks() - before - {run_task}
            if any("answered" in repr(t.get_coro()) for t in others):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no answer under way within 3 s")
        for task in others | {run_task}:
            task.cancel()
        _, pending = await asyncio.wait(others | {run_task}, timeout=5.0)
        return pending

    pending = run(cancel_during_setup())
    assert not pending, f"still waiting: {[repr(t.get_coro()) for t in pending]}"
