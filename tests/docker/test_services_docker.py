"""The service compliance test on the docker target: every registered service, in its
image, starts, becomes ready, is probed, and leaves no container behind."""

from pathlib import Path
from typing import Any

import pytest

from rig.runner import run_ports
from rig.services import MODULES, Site, all_services, service, start_order
from rig.topology import Endpoints
from rig.topology.docker import RUN_LABEL, DockerBackend
from rig.topology.runtime import RunRecord, reserved_host

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]


def stack_for(name: str) -> tuple[str, ...]:
    users = [s.name for s in all_services() if name in s.requires]
    return start_order([name, *users[:1]])


@pytest.mark.parametrize("name", list(MODULES))
def test_service_in_its_container_is_ready_probed_and_removed(
    name: str, docker_client: Any, runtime: Path
):
    svc = service(name)
    names = stack_for(name)
    run_id = f"compliance-docker-{name}"
    record = RunRecord.for_this_process(run_id)
    with reserved_host(run_ports()) as host:
        site = Site(Endpoints(host, relay_rtp_ports=(30000, 30099)), runtime / "site").make()
        backend = DockerBackend(site.endpoints, runtime, record, client=docker_client)
        backend.prepare({n: REPO / "containers" / n for n in names})
        specs = [backend.spec(service(n), service(n).settings_model.model_validate({}), site)
                 for n in names]
        with backend.start(specs) as stack:
            probes = svc.probes(svc.settings_model.model_validate({}), site,
                                stack.services[name])
            counters = {key: value for probe in probes for key, value in probe.read().items()}
        assert counters and all(key.startswith(f"{name}.") for key in counters)
    assert docker_client.containers.list(all=True,
                                         filters={"label": f"{RUN_LABEL}={run_id}"}) == []
    record.remove()
