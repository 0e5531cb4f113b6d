"""Kamailio and rtpengine in containers (host network), a SIPp call from the host."""

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rig.probes.kamailio import KamailioProbe
from rig.probes.rtpengine import RtpengineNgProbe
from rig.services import Site, service
from rig.services.kamailio import SIP_PORT, KamailioSettings, kamailio_ctl
from rig.services.rtpengine import RtpengineSettings
from rig.topology import Endpoints
from rig.topology.docker import DockerBackend
from rig.topology.images import build_image
from rig.topology.runtime import RunRecord, reserved_host

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not shutil.which("sipp") or not shutil.which("kamcmd"),
                       reason="needs sipp and kamcmd on the host"),
]

REPO = Path(__file__).resolve().parents[2]
CALLS = 4


def test_calls_through_containerised_kamailio_reach_containerised_rtpengine(
    docker_client: Any, runtime: Path
):
    images = {name: build_image(docker_client, name, REPO / "containers" / name).tag
              for name in ("kamailio", "rtpengine")}
    record = RunRecord.for_this_process("docker-real")
    settings = KamailioSettings(shm_manager="tlsf", pkg_manager="qm", shm_mb=32, pkg_mb=4)
    with reserved_host([2223, 5060, 5070, 5080, 9900]) as host:
        endpoints = Endpoints(host, relay_rtp_ports=(30000, 30199))
        site = Site(endpoints, runtime / "site").make()
        specs = [service("rtpengine").container_spec(RtpengineSettings(), site,
                                                     images["rtpengine"]),
                 service("kamailio").container_spec(settings, site, images["kamailio"])]
        backend = DockerBackend(endpoints, runtime, record, client=docker_client)
        with backend.start(specs):
            uas = subprocess.Popen(
                ["sipp", "-sn", "uas", "-i", host, "-mi", host, "-p", str(endpoints.uas_port),
                 "-nostdin", "-timeout", "30"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.3)  # SIPp binds after start-up and says nothing when it has
                uac = subprocess.run(
                    ["sipp", "-sn", "uac", f"{host}:{endpoints.uas_port}",
                     "-rsa", f"{host}:{SIP_PORT}", "-i", host, "-mi", host,
                     "-p", str(endpoints.uac_port), "-m", str(CALLS), "-r", "20", "-d", "200",
                     "-nostdin", "-timeout", "15", "-timeout_error"],
                    capture_output=True, timeout=30, check=False,
                )
            finally:
                uas.kill()
                uas.wait(timeout=5)
            assert uac.returncode == 0, uac.stdout[-400:]
            rtp = RtpengineNgProbe(host, endpoints.ng_port).read()
            kam = KamailioProbe(kamailio_ctl(site.dir("kamailio"))).read()
        assert rtp["rtpengine.managed_sessions"] == CALLS
        assert rtp["rtpengine.sessions_own"] == 0
        assert kam["kamailio.shm_total"] > 31 * 2**20
    assert "Received command 'delete'" in (runtime / "rtpengine.log").read_text()
    record.remove()
