"""The rig's SIP endpoints talk to SIPp through Kamailio (with rtpengine for the media):
SIPp's UAC calls the rig's UAS, and the rig's UAC calls SIPp's UAS. Both complete calls,
and Kamailio deletes every media session it created."""

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.load.calls import Uas
from rig.load.driver import CallPlan, LoadDriver, Targets
from rig.probes.rtpengine import RtpengineNgProbe
from rig.services import Site
from rig.services.kamailio import SIP_PORT, KamailioSettings, kamailio_spec
from rig.services.rtpengine import SERVICE as RTPENGINE
from rig.services.rtpengine import RtpengineSettings
from rig.topology import Endpoints
from rig.topology.local import LocalBackend, LocalStack
from rig.topology.runtime import RunRecord, reserved_host
from rig.wire.sdp import build_sdp

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(40),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("kamailio", "rtpengine", "sipp")),
        reason="needs kamailio, rtpengine and sipp (Debian packages)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "containers" / "kamailio" / "kamailio.cfg"
KAMAILIO = KamailioSettings(shm_mb=32, pkg_mb=4)
CALLS = 6


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    record = RunRecord.for_this_process("e2e-interop")
    with reserved_host([2223, 5060, 5070, 5080, 9900]) as host:
        endpoints = Endpoints(host, relay_rtp_ports=(30000, 30199))
        site = Site(endpoints, tmp_path / "site").make()
        specs = [RTPENGINE.local_spec(RtpengineSettings(), site, Path()),
                 kamailio_spec(CONFIG, tmp_path, endpoints, KAMAILIO)]
        with LocalBackend(endpoints, tmp_path, record).start(specs) as running:
            yield running
    record.remove()


def sessions_once_settled(endpoints: Endpoints) -> dict[str, float]:
    """rtpengine's counters once no session is left, or the last reading after 5 s."""
    probe = RtpengineNgProbe(endpoints.host, endpoints.ng_port)
    deadline = time.monotonic() + 5
    reading = probe.read()
    while reading["rtpengine.sessions_own"] and time.monotonic() < deadline:
        time.sleep(0.1)
        reading = probe.read()
    return reading


async def sipp_uac_against_rig_uas(endpoints: Endpoints) -> tuple[int, Uas]:
    host = endpoints.host
    uas = Uas((host, endpoints.uas_port),
              on_offer=lambda call_id, offer: build_sdp(host, 9, 1))
    async with uas:
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uac", f"{host}:{endpoints.uas_port}",
            "-rsa", f"{host}:{SIP_PORT}", "-i", host, "-mi", host,
            "-p", str(endpoints.uac_port), "-m", str(CALLS), "-r", "20", "-d", "200",
            "-nostdin", "-timeout", "15", "-timeout_error",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            code = await asyncio.wait_for(sipp.wait(), timeout=25)
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
    return code, uas


def test_sipp_uac_calls_the_rig_uas_through_kamailio(stack: LocalStack):
    code, uas = asyncio.run(sipp_uac_against_rig_uas(stack.endpoints))
    assert code == 0  # SIPp: every call completed
    assert uas.counts.invites == CALLS and uas.counts.completed == CALLS
    totals = sessions_once_settled(stack.endpoints)
    assert totals["rtpengine.managed_sessions"] == CALLS
    assert totals["rtpengine.sessions_own"] == 0


def test_rig_uac_calls_sipp_uas_through_kamailio(stack: LocalStack):
    endpoints = stack.endpoints
    host = endpoints.host
    sipp = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", host, "-mi", host, "-p", str(endpoints.uas_port),
         "-nostdin", "-timeout", "30"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)  # SIPp binds after start-up and says nothing when it has
        driver = LoadDriver(
            CallPlan(cps=5, max_concurrent=20, hold=0.3, outcomes={"answered": 1.0},
                     no_answer_timeout=1.0, rtp=None),
            None,
            Targets(host, endpoints.uac_port, endpoints.uas_port, endpoints.rig_rtp_ports,
                    proxy=(host, SIP_PORT)),
            on_event=lambda kind, data: None,
            own_uas=False,
            uas_hangup_share=0.0,  # SIPp's UAS never sends BYE
        )
        report = asyncio.run(driver.run(1.0))
    finally:
        sipp.kill()
        sipp.wait(timeout=5)
    assert report.calls_attempted >= 5
    assert report.calls_completed == report.calls_attempted
    totals = sessions_once_settled(endpoints)
    assert totals["rtpengine.managed_sessions"] == report.calls_attempted
    assert totals["rtpengine.sessions_own"] == 0
