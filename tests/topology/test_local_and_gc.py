import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rig.errors import InfraError
from rig.topology import Endpoints, ServiceSpec
from rig.topology.local import LocalBackend
from rig.topology.runtime import (
    RunRecord,
    collect_garbage,
    held_host,
    process_labels,
    reserved_host,
)
from rig.topology.wait import UnixSocketAccepts

SERVE_UNIX = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
    "print('listening', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path


def test_reserved_host_is_loopback_and_exclusive(runtime: Path):
    with reserved_host([2223]) as first:
        assert first.startswith("127.") and first != "127.0.0.1"
        with reserved_host([2223]) as second:
            assert second != first


def test_a_named_host_is_held_once_and_must_be_on_this_machine(runtime: Path):
    with held_host("127.0.0.77", [2223]) as host:
        assert host == "127.0.0.77"
        with pytest.raises(InfraError, match=r"^targets.host 127.0.0.77: another run on this "
                                             r"machine holds it"), held_host("127.0.0.77", [2223]):
            pass
    with held_host("127.0.0.77", [2223]):  # released at the end of the first run
        pass
    with pytest.raises(InfraError, match=r"^targets.host 192.0.2.44 is not an address of this "
                                         r"machine"), held_host("192.0.2.44", [2223]):
        pass


def test_service_starts_waits_and_stops(runtime: Path):
    record = RunRecord.for_this_process("test-run")
    sock = runtime / "svc.sock"
    spec = ServiceSpec("svc", [sys.executable, "-c", SERVE_UNIX, str(sock)],
                       ready=UnixSocketAccepts(sock))
    stack = LocalBackend(Endpoints("127.0.9.1"), runtime, record).start([spec])
    pid = stack.services["svc"].pid
    assert psutil.pid_exists(pid)
    assert "listening" in (runtime / "svc.log").read_text()
    stack.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert stack.exit_codes["svc"] == -15
    record.remove()


def test_a_service_that_dies_at_start_is_an_infra_error_with_its_log(runtime: Path):
    record = RunRecord.for_this_process("test-run-2")
    spec = ServiceSpec("bad", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(4)"],
                       ready=UnixSocketAccepts(runtime / "never.sock"))
    with pytest.raises(InfraError, match="bad exited with code 4") as info:
        LocalBackend(Endpoints("127.0.9.1"), runtime, record).start([spec])
    assert "cannot bind" in info.value.logs
    record.remove()


def test_gc_kills_what_a_dead_run_left(runtime: Path):
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_owner.wait()
        leftover = runtime / "leftover"
        leftover.mkdir()
        record = RunRecord(run_id="killed-run", owner_pid=dead_owner.pid, owner_started=1.0)
        record.save()
        record.add_process("relay", orphan.pid)
        record.add_folder(leftover)
        report = collect_garbage()
        assert report.runs == ["killed-run"]
        # gc reaps it (it is our child here), so only its absence can be seen
        assert not psutil.pid_exists(orphan.pid)
        assert not leftover.exists()
        assert not record.path.exists()
    finally:
        orphan.kill()


def test_gc_leaves_a_live_run_alone(runtime: Path):
    record = RunRecord.for_this_process("live-run")
    assert collect_garbage().runs == []
    assert record.path.exists()
    record.remove()


def test_gc_spares_labelled_processes_of_another_runtime(runtime: Path):
    other = {"RIG_RUN_ID": "someone-elses-run", "RIG_RUNTIME_LABEL": str(runtime / "elsewhere")}
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                env={**os.environ, **other})
    try:
        collect_garbage()
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_gc_kills_a_labelled_orphan_of_its_own_runtime(runtime: Path):
    labels = process_labels("run-without-record")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, **labels})
    try:
        time.sleep(0.2)  # let the child exec so its environment is readable
        assert collect_garbage().processes >= 1
        assert not psutil.pid_exists(orphan.pid)
    finally:
        orphan.kill()


FORKS_A_WORKER = (
    "import os, socket, sys, time\n"
    "child = os.fork()\n"
    "if child == 0:\n"
    "    time.sleep(60); os._exit(0)\n"
    "print('worker', child, flush=True)\n"
    "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
    "time.sleep(60)\n"
)


def test_stopping_a_service_whose_main_process_was_killed_kills_its_workers(runtime: Path):
    """Kamailio's workers do not die with a SIGKILLed main process (no parent-death signal
    reaches them); the stack's stop must not leave them running."""
    record = RunRecord.for_this_process("test-run-workers")
    sock = runtime / "forks.sock"
    spec = ServiceSpec("forks", [sys.executable, "-c", FORKS_A_WORKER, str(sock)],
                       ready=UnixSocketAccepts(sock))
    stack = LocalBackend(Endpoints("127.0.9.1"), runtime, record).start([spec])
    main = stack.services["forks"]
    worker = int((runtime / "forks.log").read_text().split()[1])
    os.kill(main.pid, 9)
    main.process.wait(5)
    assert psutil.Process(worker).status() != psutil.STATUS_ZOMBIE  # outlived its parent
    stack.close()
    assert stack.exit_codes["forks"] == -9
    assert gone_within(worker, 5.0)
    record.remove()


def gone_within(pid: int, seconds: float) -> bool:
    """A SIGKILL is delivered asynchronously: the process is gone (or a zombie) soon after."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False
