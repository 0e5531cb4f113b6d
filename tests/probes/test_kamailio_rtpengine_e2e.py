"""Kamailio (Debian) proxying SIPp calls with its media on a local rtpengine (userspace).

Checks the proxy config's media handling end to end: offer on INVITE, answer on the 200,
delete on BYE and on the failure path, read back through the rig's own probes.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.probes import ProbeError
from rig.probes.kamailio import KamailioProbe
from rig.probes.rtpengine import RtpengineCliProbe, RtpengineNgProbe
from rig.services import Site
from rig.services.kamailio import SIP_PORT, KamailioSettings, kamailio_ctl, kamailio_spec
from rig.services.rtpengine import CLI_PORT, RtpengineSettings
from rig.services.rtpengine import SERVICE as RTPENGINE_SERVICE
from rig.topology import Endpoints
from rig.topology.local import LocalBackend, LocalStack
from rig.topology.runtime import RunRecord, reserved_host

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("kamailio", "kamcmd", "rtpengine", "sipp",
                                                 "rtpengine-ctl")),
        reason="needs kamailio, rtpengine and sipp (Debian packages)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "containers" / "kamailio" / "kamailio.cfg"
BUSY_UAS = Path(__file__).parent / "data" / "sipp_uas_busy.xml"
KAMAILIO = KamailioSettings(shm_manager="qm", pkg_manager="qm", shm_mb=32, pkg_mb=4)
RTPENGINE = RtpengineSettings()
CALLS = 5


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    record = RunRecord.for_this_process("e2e-kamailio")
    with reserved_host([2223, 5060, 5070, 5080, 9900]) as host:
        endpoints = Endpoints(host, relay_rtp_ports=(30000, 30199))
        site = Site(endpoints, tmp_path / "site").make()
        specs = [RTPENGINE_SERVICE.local_spec(RTPENGINE, site, Path()),
                 kamailio_spec(CONFIG, tmp_path, endpoints, KAMAILIO)]
        with LocalBackend(endpoints, tmp_path, record).start(specs) as running:
            yield running
    record.remove()


def sipp(endpoints: Endpoints, *args: str) -> list[str]:
    return ["sipp", "-i", endpoints.host, "-mi", endpoints.host, "-nostdin", *args]


def start_uas(endpoints: Endpoints, scenario: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        sipp(endpoints, *scenario, "-p", str(endpoints.uas_port), "-timeout", "30"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def run_uac(endpoints: Endpoints, calls: int, hold_ms: int) -> int:
    argv = sipp(
        endpoints, "-sn", "uac", f"{endpoints.host}:{endpoints.uas_port}",
        "-rsa", f"{endpoints.host}:{SIP_PORT}", "-p", str(endpoints.uac_port),
        "-m", str(calls), "-r", "20", "-d", str(hold_ms), "-timeout", "15",
        "-timeout_error", "-recv_timeout", "5000",
    )
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def calls_with(endpoints: Endpoints, scenario: list[str], calls: int) -> int:
    uas = start_uas(endpoints, scenario)
    try:
        time.sleep(0.3)  # SIPp binds its port after start-up; no readiness signal to wait on
        return run_uac(endpoints, calls, hold_ms=200)
    finally:
        uas.kill()
        uas.wait(timeout=5)


def settled(probe: RtpengineCliProbe, counter: str, value: float) -> dict[str, float]:
    """The probe's reading once `counter` equals `value`, or the last one after 5 s."""
    deadline = time.monotonic() + 5
    reading = probe.read()
    while reading[counter] != value and time.monotonic() < deadline:
        time.sleep(0.1)
        reading = probe.read()
    return reading


def test_answered_calls_get_offer_answer_and_delete(stack: LocalStack):
    endpoints = stack.endpoints
    assert calls_with(endpoints, ["-sn", "uas"], CALLS) == 0
    totals = settled(RtpengineCliProbe(endpoints.host, CLI_PORT),
                     "rtpengine.regular_terminated_sessions", CALLS)
    assert totals["rtpengine.managed_sessions"] == CALLS
    assert totals["rtpengine.regular_terminated_sessions"] == CALLS  # deleted on BYE
    assert totals["rtpengine.sessions_own"] == 0
    ng = RtpengineNgProbe(endpoints.host, endpoints.ng_port).read()
    assert ng["rtpengine.managed_sessions"] == CALLS
    log = stack.services["rtpengine"].log_path.read_text()
    for command in ("offer", "answer", "delete"):
        assert log.count(f"Received command '{command}'") >= CALLS


def test_rejected_calls_are_deleted_by_the_failure_route(stack: LocalStack):
    endpoints = stack.endpoints
    calls_with(endpoints, ["-sf", str(BUSY_UAS)], CALLS)  # the UAC counts 486 as failed
    totals = settled(RtpengineCliProbe(endpoints.host, CLI_PORT),
                     "rtpengine.sessions_own", 0)
    assert totals["rtpengine.managed_sessions"] == CALLS  # each INVITE made an offer
    assert totals["rtpengine.sessions_own"] == 0  # and none outlived its 486
    log = stack.services["rtpengine"].log_path.read_text()
    assert log.count("Received command 'delete'") >= CALLS
    assert log.count("Received command 'answer'") == 0


def test_kamailio_probe_reads_the_running_proxy(stack: LocalStack, tmp_path: Path):
    probe = KamailioProbe(kamailio_ctl(tmp_path))
    counters = probe.read()
    assert counters["kamailio.shm_total"] > 31 * 2**20  # -m 32
    assert counters["kamailio.pkg_real_used_max"] < 4 * 2**20  # -M 4
    assert counters["kamailio.mod.tm.shm"] > 0


def test_kamailio_probe_fails_clearly_when_the_proxy_is_gone(tmp_path: Path):
    with pytest.raises(ProbeError, match="kamcmd core.shmmem"):
        KamailioProbe(f"unix:{tmp_path / 'no_ctl'}").read()
