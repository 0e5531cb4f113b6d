"""The parts of the Docker backend and the real-peer factories that need no engine."""

from pathlib import Path

import pytest

from rig.errors import InfraError
from rig.services import Site, service
from rig.services.kamailio import KamailioSettings, kamailio_spec
from rig.services.relay import RelaySettings
from rig.services.rtpengine import RtpengineSettings
from rig.topology import Endpoints
from rig.topology.docker import container_name, exit_code_from_state
from rig.topology.images import build_lines

ENDPOINTS = Endpoints("127.0.8.1")


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Status": "running", "ExitCode": 0}, None),
        ({"Status": "created", "ExitCode": 0}, None),
        ({"Status": "exited", "ExitCode": 0}, 0),
        ({"Status": "exited", "ExitCode": 4}, 4),
        ({"Status": "exited", "ExitCode": 134}, -6),  # SIGABRT, like Popen
        ({"Status": "exited", "ExitCode": 137}, -9),
    ],
)
def test_exit_codes_read_like_popen(state: dict, expected: int | None):
    assert exit_code_from_state(state) == expected


def test_container_names_are_valid_for_the_engine():
    assert container_name("pin race/1", "relay") == "rig-pin-race-1-relay"


def test_build_stream_error_carries_the_last_lines():
    chunks = [{"stream": "Step 1/2 : FROM x\n"}, {"stream": "E: no package\n"},
              {"error": "The command returned a non-zero code: 100"}]
    seen: list[str] = []
    with pytest.raises(InfraError, match="image build failed: The command") as info:
        build_lines(chunks, seen.append)
    assert "E: no package" in info.value.logs
    assert seen == ["Step 1/2 : FROM x", "E: no package"]


def test_kamailio_command_line_carries_managers_and_defines(tmp_path: Path):
    spec = kamailio_spec(Path("kamailio.cfg"), tmp_path, ENDPOINTS,
                         KamailioSettings(shm_manager="tlsf", pkg_manager="fm", shm_mb=32))
    argv = list(spec.argv)
    assert argv[argv.index("-x") + 1] == "tlsf" and argv[argv.index("-X") + 1] == "fm"
    assert argv[argv.index("-m") + 1] == "32"
    assert 'RTPENGINE_SOCK="udp:127.0.8.1:2223"' in argv
    assert "SIP_LISTEN=udp:127.0.8.1:5070" in argv
    assert 'CALLEE="sip:127.0.8.1:5080"' in argv


def test_container_specs_keep_the_local_readiness_and_mount_shared_folders(tmp_path: Path):
    site = Site(ENDPOINTS, tmp_path)
    kam = service("kamailio").container_spec(KamailioSettings(), site, "rig-kamailio:x")
    assert kam.image == "rig-kamailio:x" and kam.argv[0] == "-DD"  # the image runs kamailio
    run_dir = str(site.dir("kamailio"))
    assert kam.volumes == {run_dir: run_dir}
    relay = service("relay").container_spec(RelaySettings(workers=2), site, "rig-relay:x")
    assert relay.argv[:2] == ["python3", "/opt/rig/relay/relay.py"]
    assert relay.volumes == {str(site.state): str(site.state)}
    assert relay.ready.describe() == "NG ping on 127.0.8.1:2223"


def test_rtpengine_is_userspace_only_and_never_reads_host_config(tmp_path: Path):
    spec = service("rtpengine").local_spec(RtpengineSettings(), Site(ENDPOINTS, tmp_path), Path())
    argv = list(spec.argv)
    assert "--table=-1" in argv and "--config-file=none" in argv
    assert "--listen-ng=127.0.8.1:2223" in argv
