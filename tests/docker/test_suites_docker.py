"""Debian's rtpengine and Kamailio of each suite in their images: trixie's and sid's rtpengine
start, become ready, are probed and report their own version; the rig's Kamailio config
passes `kamailio -c` on 6.0 and 6.1; session-leak passes on sid's pair."""

import shutil
from pathlib import Path
from typing import Any

import pytest

from rig.runner import RunRequest, run_ports, run_scenario, service_versions
from rig.services import Site, service
from rig.topology import Endpoints
from rig.topology.docker import RUN_LABEL, DockerBackend
from rig.topology.runtime import RunRecord, reserved_host

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
# A cold build installs the suite's packages (sid's rtpengine: ~25 s, more on a busy machine).
BUILD_TIMEOUT_S = 600
# The version line of each suite's package: trixie 12.5.1.31, sid 26.0.1.26 (2026-12).
LINES = {"trixie": "12.5.", "sid": "26."}


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize("suite", ["trixie", "sid"])
def test_rtpengine_of_each_suite_starts_is_probed_and_says_its_version(
    suite: str, docker_client: Any, runtime: Path, suite_base: Any
):
    suite_base(suite)
    svc = service("rtpengine")
    settings = svc.settings_model.model_validate({"suite": suite})
    run_id = f"suite-docker-rtpengine-{suite}"
    record = RunRecord.for_this_process(run_id)
    with reserved_host(run_ports()) as host:
        site = Site(Endpoints(host, relay_rtp_ports=(30000, 30099)), runtime / "site").make()
        backend = DockerBackend(site.endpoints, runtime, record, client=docker_client)
        backend.prepare({"rtpengine": REPO / "containers" / "rtpengine"},
                        {"rtpengine": settings.recipe()})
        assert backend.images["rtpengine"].endswith(f"-{suite}")
        spec = backend.spec(svc, settings, site)
        versions = service_versions(backend, [spec])
        with backend.start([spec]) as stack:
            counters = {key: value for probe in svc.probes(settings, site,
                                                           stack.services["rtpengine"])
                        for key, value in probe.read().items()}
    assert versions["rtpengine"].startswith(LINES[suite]), versions
    assert counters["rtpengine.sessions_total"] == 0
    assert counters["rtpengine.rss_bytes"] > 0
    assert docker_client.containers.list(all=True,
                                         filters={"label": f"{RUN_LABEL}={run_id}"}) == []
    record.remove()


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.parametrize(("suite", "line"), [("trixie", "6.0."), ("sid", "6.1.")])
def test_the_rigs_kamailio_config_passes_kamailio_c_on_each_suite(
    suite: str, line: str, docker_client: Any, runtime: Path, suite_base: Any
):
    suite_base(suite)
    svc = service("kamailio")
    settings = svc.settings_model.model_validate({"suite": suite})
    record = RunRecord.for_this_process(f"suite-docker-kamailio-{suite}")
    backend = DockerBackend(Endpoints("127.0.0.1"), runtime, record, client=docker_client)
    backend.prepare({"kamailio": REPO / "containers" / "kamailio"},
                    {"kamailio": settings.recipe()})
    image = backend.images["kamailio"]
    output = docker_client.containers.run(
        image, entrypoint=["kamailio"], command=["-c", "-f", "/etc/kamailio/rig.cfg"],
        network_mode="none", stdout=True, stderr=True, remove=True,
        labels={RUN_LABEL: record.run_id}).decode(errors="replace")
    version = docker_client.containers.run(
        image, entrypoint=["kamailio"], command=["-v"], network_mode="none",
        remove=True, labels={RUN_LABEL: record.run_id}).decode(errors="replace")
    assert "config file ok" in output.lower(), output
    assert "ERROR" not in output and "WARNING" not in output, output
    parsed = svc.parse_version(version)
    assert parsed is not None and parsed.startswith(line), version
    record.remove()


@pytest.mark.timeout(BUILD_TIMEOUT_S)
@pytest.mark.skipif(not shutil.which("kamcmd"), reason="needs kamcmd on the host")
def test_session_leak_passes_on_sids_rtpengine_and_kamailio(
    docker_client: Any, runtime: Path, suite_base: Any, tmp_path: Path
):
    suite_base("sid")
    outcome = run_scenario(RunRequest(
        scenario_path=REPO / "scenarios" / "session-leak.yaml",
        overrides=("duration=3", "services.rtpengine.suite=sid", "services.kamailio.suite=sid"),
        out=tmp_path / "sid", progress=False, target="docker"))
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    versions = outcome.summary.sut.versions
    assert versions["rtpengine"].startswith(LINES["sid"]), versions
    assert versions["kamailio"].startswith("6.1."), versions
