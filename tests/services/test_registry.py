"""The service registry, and one compliance test every service module passes: it starts,
becomes ready, is probed, stops, and leaves no process behind."""

import shutil
from pathlib import Path
from typing import Any

import psutil
import pytest

from rig.errors import UsageError
from rig.runner import run_ports
from rig.services import (
    MODULES,
    ROLES,
    Site,
    all_services,
    ceiling_check,
    compared_peaks,
    names_with_role,
    service,
    start_order,
)
from rig.topology import Endpoints
from rig.topology.local import LocalBackend
from rig.topology.runtime import RunRecord, reserved_host

REPO = Path(__file__).resolve().parents[2]
# what each service's local start needs on PATH (the model services need only Python)
TOOLS = {"rtpengine": ("rtpengine",), "kamailio": ("kamailio", "kamcmd")}


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path / "runtime"


def test_an_unknown_service_lists_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown service 'janus' \(allowed: kmod, relay, "
                                         r"rtpengine, kamailio\)"):
        service("janus")


def test_every_module_declares_a_whole_service():
    for svc in all_services():
        assert svc.name in MODULES and svc.role in ROLES
        settings = svc.settings_model.model_validate({})
        assert settings.source == f"containers/{svc.name}"
        assert (REPO / settings.source / "Dockerfile").is_file()
        assert all(dep in MODULES for dep in svc.requires)


def test_roles_order_and_what_moved_out_of_report_matrix_and_sweep():
    assert names_with_role("media") == ("relay", "rtpengine")
    assert start_order(["relay", "kamailio"]) == ("kmod", "relay", "kamailio")
    assert start_order(["kmod", "relay"]) == ("kmod", "relay")
    assert ceiling_check("kmod.pins") == "pins_below_ceiling"
    assert ceiling_check("relay.fds") is None
    assert [p.counter for p in compared_peaks()] == [
        "kmod.pins", "media.sessions", "kamailio.shm_used"]
    assert run_ports() == [2223, 5060, 5070, 5080, 9900]


def stack_for(name: str) -> tuple[str, ...]:
    """The service with what it needs and, for one that serves others (kmod has no table
    until a relay opens one), the first service that uses it."""
    users = [s.name for s in all_services() if name in s.requires]
    return start_order([name, *users[:1]])


def _start(names: tuple[str, ...], backend: LocalBackend, site: Site) -> Any:
    backend.prepare({name: REPO / "containers" / name for name in names})
    specs = [backend.spec(service(name), service(name).settings_model.model_validate({}), site)
             for name in names]
    return backend.start(specs)


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(MODULES))
def test_service_starts_is_ready_is_probed_and_leaves_nothing(name: str, tmp_path: Path):
    missing = [tool for tool in TOOLS.get(name, ()) if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages)")
    svc = service(name)
    record = RunRecord.for_this_process(f"compliance-{name}")
    with reserved_host(run_ports()) as host:
        site = Site(Endpoints(host, relay_rtp_ports=(30000, 30099)), tmp_path / "site").make()
        backend = LocalBackend(site.endpoints, tmp_path, record)
        with _start(stack_for(name), backend, site) as stack:
            pids = [running.pid for running in stack.services.values()]
            assert stack.services[name].exit_code() is None
            probes = svc.probes(svc.settings_model.model_validate({}), site,
                                stack.services[name])
            counters = {key: value for probe in probes for key, value in probe.read().items()}
        assert probes and counters, f"{name}: its probes read nothing"
        assert all(key.startswith(f"{name}.") for key in counters)
        assert all(stack.exit_codes[n] is not None for n in stack.services)
        assert not [pid for pid in pids if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    record.remove()
