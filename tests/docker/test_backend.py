"""The Docker backend against a real engine: start, readiness, logs, pid, cleanup, gc."""

import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from rig.errors import InfraError
from rig.services import Site
from rig.services.kmod import SERVICE as KMOD
from rig.services.kmod import KmodSettings
from rig.topology import Endpoints, ServiceSpec
from rig.topology.docker import (
    RUN_LABEL,
    RUNTIME_LABEL,
    DockerBackend,
    remove_orphan_containers,
)
from rig.topology.images import build_image
from rig.topology.runtime import RunRecord, runtime_dir
from rig.topology.wait import UnixSocketAccepts

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def kmod_image(docker_client: Any) -> str:
    return build_image(docker_client, "kmod", REPO / "containers" / "kmod",
                       progress=lambda line: None).tag


def labelled(client: Any, run_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})


def test_kmod_container_starts_with_host_pid_logs_and_shared_folder(
    docker_client: Any, kmod_image: str, runtime: Path
):
    record = RunRecord.for_this_process("docker-kmod")
    site = Site(Endpoints("127.0.9.1"), runtime / "site").make()
    state = site.state
    backend = DockerBackend(Endpoints("127.0.9.1"), runtime, record, client=docker_client)
    with backend.start(
            [KMOD.container_spec(KmodSettings(), site, kmod_image)]) as stack:
        service = stack.services["kmod"]
        assert service.exit_code() is None
        assert "kmod.py" in " ".join(psutil.Process(service.pid).cmdline())
        assert (state / "control.sock").exists()  # made inside, seen outside
        assert os.stat(state / "control.sock").st_uid == os.getuid()
        assert len(labelled(docker_client, "docker-kmod")) == 1
    assert labelled(docker_client, "docker-kmod") == []
    assert "kmod ready" in (runtime / "kmod.log").read_text()
    record.remove()


def test_a_container_that_dies_at_start_is_an_infra_error_with_its_logs(
    docker_client: Any, kmod_image: str, runtime: Path
):
    record = RunRecord.for_this_process("docker-bad")
    spec = ServiceSpec(
        "bad", ["python3", "-c", "print('cannot bind', flush=True); raise SystemExit(4)"],
        ready=UnixSocketAccepts(runtime / "never.sock"), image=kmod_image,
    )
    backend = DockerBackend(Endpoints("127.0.9.1"), runtime, record, client=docker_client)
    with pytest.raises(InfraError, match="bad exited with code 4") as info:
        backend.start([spec])
    assert "cannot bind" in info.value.logs
    assert labelled(docker_client, "docker-bad") == []
    record.remove()


def test_a_missing_image_is_an_infra_error(docker_client: Any, runtime: Path):
    record = RunRecord.for_this_process("docker-noimage")
    spec = ServiceSpec("x", ["true"], ready=UnixSocketAccepts(runtime / "s"),
                       image="rig-nonexistent:0")
    with pytest.raises(InfraError, match="image rig-nonexistent:0 not found"):
        DockerBackend(Endpoints("127.0.9.1"), runtime, record, client=docker_client).start([spec])
    record.remove()


def test_gc_removes_containers_of_dead_runs_of_its_own_runtime_only(
    docker_client: Any, kmod_image: str, runtime: Path
):
    def sleeper(run_id: str, runtime_label: str) -> Any:
        return docker_client.containers.run(
            kmod_image, ["sleep", "60"], detach=True, network_mode="host",
            labels={RUN_LABEL: run_id, RUNTIME_LABEL: runtime_label},
        )

    ours = str(runtime_dir())
    dead, live = sleeper("gc-dead-run", ours), sleeper("gc-live-run", ours)
    stranger = sleeper("gc-other-rig", ours + "-elsewhere")  # another rig's, on this machine
    try:
        assert remove_orphan_containers({"gc-live-run"}, client=docker_client) == 1
        assert labelled(docker_client, "gc-dead-run") == []
        assert len(labelled(docker_client, "gc-live-run")) == 1
        assert len(labelled(docker_client, "gc-other-rig")) == 1
    finally:
        for container in (dead, live, stranger):
            try:
                container.remove(force=True)
            except Exception:
                pass


def test_unchanged_sources_are_not_rebuilt(docker_client: Any, kmod_image: str):
    again = build_image(docker_client, "kmod", REPO / "containers" / "kmod",
                        progress=lambda line: None)
    assert again.tag == kmod_image and not again.built


def test_a_failing_build_is_an_infra_error_with_the_build_output(
    docker_client: Any, tmp_path: Path
):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE=rig-base:bookworm\nFROM ${BASE}\nRUN echo broken-step && exit 3\n"
    )
    lines: list[str] = []
    with pytest.raises(InfraError, match="image build failed: .*non-zero code: 3") as info:
        build_image(docker_client, "broken", tmp_path, progress=lines.append)
    assert "broken-step" in info.value.logs
    assert lines[0].startswith("building rig-broken:")
