"""Per-machine bookkeeping: which loopback address a run holds, and what each run started.

Every run records its processes and temporary folders in a small JSON file, so that
`rig gc` can remove what a killed run left behind. Address reservations are fcntl locks:
the kernel drops them when the holder dies, so no lock outlives a run.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import psutil

from rig.atomic import write_text_atomic
from rig.errors import InfraError

RUN_ID_ENV = "RIG_RUN_ID"
RUNTIME_ENV = "RIG_RUNTIME_LABEL"  # which runtime folder a labelled process belongs to


def runtime_dir() -> Path:
    base = os.environ.get("RIG_RUNTIME_DIR") or os.path.join(
        tempfile.gettempdir(), f"rig-{os.getuid()}"
    )
    path = Path(base)
    (path / "hosts").mkdir(parents=True, exist_ok=True)
    (path / "runs").mkdir(parents=True, exist_ok=True)
    return path


def _ports_free(host: str, ports: list[int]) -> bool:
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


@contextmanager
def reserved_host(probe_ports: list[int], rng: random.Random | None = None) -> Iterator[str]:
    """Hold a loopback address 127.a.b.c (never 127.0.0.1) for the duration of a run."""
    rng = rng or random.Random()
    for _ in range(200):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        handle = _locked(host)
        if handle is None:
            continue
        if not _ports_free(host, probe_ports):
            handle.close()
            continue
        with _holding(host, handle):
            yield host
        return
    raise InfraError("no free loopback address found for this run")


@contextmanager
def held_host(host: str, probe_ports: list[int]) -> Iterator[str]:
    """Hold `host`, an address of this machine the scenario named (`targets.host`), for the
    duration of a run: the same lock as a reserved loopback address, so a second run on it
    at once is refused in one line instead of colliding on its ports."""
    if not _bindable(host):
        raise InfraError(f"targets.host {host} is not an address of this machine (allowed: "
                         "an address on one of its interfaces, `ip -br addr` lists them)")
    handle = _locked(host)
    if handle is None:
        raise InfraError(f"targets.host {host}: another run on this machine holds it "
                         "(allowed: one run per address at a time)")
    if not _ports_free(host, probe_ports):
        handle.close()
        raise InfraError(f"targets.host {host}: ports the run needs are taken there "
                         f"({', '.join(map(str, probe_ports[:8]))}...)")
    with _holding(host, handle):
        yield host


def _bindable(host: str) -> bool:
    """Whether this machine has `host` (all of 127.0.0.0/8 is, for one)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError:
            return False
    return True


def _locked(host: str) -> TextIO | None:
    """The lock file of `host`, locked by this process; None while another run holds it."""
    handle = open(runtime_dir() / "hosts" / f"{host}.lock", "w")  # noqa: SIM115 - held for the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


@contextmanager
def _holding(host: str, handle: TextIO) -> Iterator[str]:
    try:
        yield host
    finally:
        handle.close()
        (runtime_dir() / "hosts" / f"{host}.lock").unlink(missing_ok=True)


def interface_addresses() -> dict[str, set[str]]:
    """This machine's IP addresses (its network namespace's), by interface."""
    return {name: {a.address.split("%")[0] for a in addresses}
            for name, addresses in psutil.net_if_addrs().items()}


def local_addresses() -> set[str]:
    """This machine's IP addresses, whatever their interface."""
    return set().union(*interface_addresses().values())


@contextmanager
def held_kernel_table(table: int) -> Iterator[int]:
    """Hold kernel forwarding table `table` (/proc/rtpengine/<table>) for a run: the module's
    tables are one set per machine, so two runs at once (`--jobs`) must not share one. The
    lock lives beside the loopback blocks, machine-wide, whatever RIG_RUNTIME_DIR says."""
    from rig.topology.loopback import blocks_dir

    path = blocks_dir() / f"kernel-table-{table}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InfraError(f"kernel table {table} is in use by another run on this machine; "
                             "give each run at once a table of its own (e.g. a matrix axis "
                             "services.rtpengine.table=0,1)") from None
        yield table


@dataclass
class RunRecord:
    """What one run started; written when it changes, removed when the run ends cleanly."""

    run_id: str
    owner_pid: int
    owner_started: float
    processes: list[dict[str, float | int | str]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # network namespaces (rig/topology/netns)

    @property
    def path(self) -> Path:
        return runtime_dir() / "runs" / f"{self.run_id}.json"

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(asdict(self)))

    def add_process(self, name: str, pid: int) -> None:
        started = psutil.Process(pid).create_time()
        self.processes.append({"name": name, "pid": pid, "started": started})
        self.save()

    def add_folder(self, folder: Path) -> None:
        self.folders.append(str(folder))
        self.save()

    def add_namespace(self, name: str) -> None:
        """Record a network namespace before it is created, so gc never misses one."""
        self.namespaces.append(name)
        self.save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def for_this_process(cls, run_id: str) -> RunRecord:
        me = psutil.Process()
        record = cls(run_id=run_id, owner_pid=me.pid, owner_started=me.create_time())
        record.save()
        return record


def _same_process(pid: int, started: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) < 0.01:
            return proc
    except psutil.Error:
        pass
    return None


def _kill(proc: psutil.Process) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except psutil.Error:
        pass


@dataclass(frozen=True)
class GcReport:
    runs: list[str]
    processes: int
    folders: int
    namespaces: int = 0


def collect_garbage() -> GcReport:
    """Remove the leftovers of runs whose owner is gone: processes, folders, records."""
    runs, killed, removed, namespaces = [], 0, 0, 0
    for path in sorted((runtime_dir() / "runs").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _same_process(int(data["owner_pid"]), float(data["owner_started"])):
            continue  # that run is still going
        runs.append(str(data["run_id"]))
        for entry in data.get("processes", []):
            proc = _same_process(int(entry["pid"]), float(entry["started"]))
            if proc is not None:
                _kill(proc)
                killed += 1
        for name in data.get("namespaces", []):
            namespaces += _delete_namespace(str(name))
        for folder in data.get("folders", []):
            if Path(folder).exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        path.unlink(missing_ok=True)
    killed += _kill_orphans_by_label()
    from rig.topology.docker import remove_orphan_containers  # 0 without an engine

    killed += remove_orphan_containers()
    return GcReport(runs=runs, processes=killed, folders=removed, namespaces=namespaces)


def _delete_namespace(name: str) -> int:
    from rig.topology import netns

    try:
        return int(netns.delete(name))
    except InfraError:
        return 0


def process_labels(run_id: str) -> dict[str, str]:
    """Environment entries that mark a process as started by this run on this runtime."""
    return {RUN_ID_ENV: run_id, RUNTIME_ENV: str(runtime_dir())}


def _kill_orphans_by_label() -> int:
    """Processes that carry a run label whose run record is gone (the record write was lost).

    Only processes of this runtime folder: other rigs on the machine are not ours to kill.
    """
    live_runs = {p.stem for p in (runtime_dir() / "runs").glob("*.json")}
    ours = str(runtime_dir())
    killed = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        label = env.get(RUN_ID_ENV)
        if env.get(RUNTIME_ENV) != ours:
            continue
        if label and label not in live_runs and proc.pid != os.getpid():
            _kill(proc)
            killed += 1
    return killed
