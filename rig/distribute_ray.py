"""Runs as Ray tasks: on a cluster (`--cluster ADDRESS` or RAY_ADDRESS), or on a Ray
embedded in this process for the run's length (`--cluster local`).

Imported only by rig.distribute.open_pool when a cluster is asked for, so that a plain
command never imports Ray. Each run is one task holding one CPU of a node, so a node runs
as many at once as it offers CPUs; `jobs` caps the runs in flight over the whole cluster.
Paths in the requests are made absolute: the worker's cwd is not the caller's, and on
another host they must name the same files (a shared folder, docs/cluster.md).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from rig import interrupts
from rig.clock import SystemClock
from rig.distribute import (
    LOCAL_CLUSTER,
    STOP_GRACE_S,
    Done,
    RunFn,
    absolute,
    private_temp_dir,
    quiet,
    remove_tree,
    timed,
)
from rig.errors import InfraError, UsageError

# Ray swaps a node address of 127.0.0.1 for the machine's own unless it believes it runs
# where clusters are unsupported; this switch (read when Ray is imported) keeps an embedded
# Ray, its GCS, raylet and workers, on 127.0.0.1 alone.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CONNECT_TIMEOUT_S = 5.0  # a cluster's GCS port answers a TCP connect within this


def _task(run: RunFn, index: int, request: Any) -> Done:
    return timed(run, index, request, SystemClock())


def start_ray(address: str, *, num_cpus: int | None = None,
              resources: dict[str, float] | None = None,
              namespace: str | None = None) -> str | None:
    """ray.init for `address` (in Ray namespace `namespace`, else an anonymous one); returns
    the temporary folder of an embedded Ray (`local`: on 127.0.0.1, offering `num_cpus` and
    `resources`), None when joining a cluster.

    Afterwards the caller's SIGTERM handler is put back: Ray's core installs its own, which
    prints a stack and kills the process with nothing the rig started stopped. A Ctrl-C
    (or SIGTERM) meanwhile is held until ray.init has returned, then Ray is left and the
    KeyboardInterrupt raised: one inside ray.init leaves Ray's core worker half made, and
    the process then crashed at exit now and then (SIGSEGV, SIGABRT) instead of exiting
    with 130. A second one is not held."""
    with interrupts.held() as came:
        temp = _init_ray(address, num_cpus, resources, namespace)
    if came:
        leave_ray(temp)
        raise KeyboardInterrupt
    return temp


def leave_ray(temp: str | None) -> None:
    """ray.shutdown; an embedded Ray's folder goes too."""
    import ray

    try:
        ray.shutdown()
    finally:
        if temp is not None:
            remove_tree(temp)


def _init_ray(address: str, num_cpus: int | None, resources: dict[str, float] | None,
              namespace: str | None) -> str | None:
    if not address.strip():
        raise UsageError("--cluster needs an address (host:port, ray://..., or local)")
    if address == LOCAL_CLUSTER or loopback_address(address):
        os.environ[LOOPBACK_ONLY_ENV] = "0"  # before the first `import ray`
    if address != LOCAL_CLUSTER:
        check_reachable(address)
    ray = import_ray_or_fail()
    if address != LOCAL_CLUSTER:
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InfraError(f"--cluster {address}: cannot join the Ray cluster: "
                             f"{first_line(exc)}") from exc
        return None
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # the switch, when Ray was imported before it
    temp = private_temp_dir("rig-ray-")
    try:
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                 num_cpus=num_cpus or os.cpu_count() or 1, resources=resources or {},
                 namespace=namespace, log_to_driver=False, _temp_dir=temp)
    except BaseException:
        remove_tree(temp)
        raise
    return temp


def first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n")[0][:300]


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` GCS address; None for ray://, `auto` and the like."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def loopback_address(address: str) -> bool:
    """A GCS on a loopback address: Ray would otherwise swap 127.0.0.1 for the machine's
    own address and look for the cluster there."""
    found = host_port(address)
    try:
        return found is not None and ipaddress.ip_address(found[0]).is_loopback
    except ValueError:
        return found is not None and found[0] == "localhost"


def check_reachable(address: str) -> None:
    """Fail in one line when nothing listens at a host:port address (ray.init would retry
    for minutes)."""
    found = host_port(address)
    if found is None:
        return
    try:
        socket.create_connection(found, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InfraError(f"--cluster {address}: no Ray cluster answers there "
                         f"({exc.strerror or exc})") from exc


class RayPool:
    """Runs as Ray tasks, at most `jobs` in flight (None: as many as the cluster takes)."""

    def __init__(self, address: str, jobs: int | None) -> None:
        self.address = address
        self.jobs = jobs
        self.temp: str | None = None
        self.running: dict[Any, int] = {}  # ObjectRef -> request index
        self.task: Any = None

    def __enter__(self) -> RayPool:
        self.temp = start_ray(self.address, num_cpus=self.jobs)
        import ray

        self.task = ray.remote(num_cpus=1, max_retries=0)(_task)
        return self

    def each(self, run: RunFn, requests: Sequence[Any]) -> Iterator[Done]:
        import ray

        waiting = [(i, absolute(quiet(r))) for i, r in enumerate(requests)]
        limit = self.jobs or max(1, len(requests))
        while waiting or self.running:
            while waiting and len(self.running) < limit:
                index, request = waiting.pop(0)
                self.running[self.task.remote(run, index, request)] = index
            ready, _ = ray.wait(list(self.running), num_returns=1)
            index = self.running[ready[0]]
            try:
                done: Done = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                done = Done(index, None, InfraError(f"run {index} on the Ray cluster "
                                                    f"failed: {exc}"), 0.0)
            del self.running[ready[0]]
            yield done

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Tasks still going get Ctrl-C (the run stops its services and returns), are
        waited for, and only then is Ray left (an embedded Ray stops, its folder goes)."""
        import ray

        try:
            refs, self.running = list(self.running), {}
            for ref in refs:
                ray.cancel(ref)
            if refs:
                _, hanging = ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)
                for ref in hanging:
                    ray.cancel(ref, force=True)
        finally:
            ray.shutdown()
            if self.temp is not None:
                remove_tree(self.temp)


def import_ray_or_fail() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InfraError("--cluster needs the `ray` package (pip install ray; `make venv` "
                         "installs it)") from exc
    return ray
