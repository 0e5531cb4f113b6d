"""The Docker backend: each service in a container on the host network.

Same shape as the local backend: `start(specs)` returns a stack whose services have a
`pid` (the container's main process as the host sees it, for /proc probes), a `log_path`
(followed into the run folder while the container runs) and an `exit_code()`; `close()`
stops and removes every container. Each container carries the label `rig.run-id`, so
`rig gc` can remove what a killed run left behind (`remove_orphan_containers`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import InfraError
from rig.topology import Endpoints, ImageRecipe, ServiceSpec
from rig.topology.runtime import RunRecord, process_labels, runtime_dir
from rig.topology.wait import ServiceDied, wait_until_ready

RUN_LABEL = "rig.run-id"
SERVICE_LABEL = "rig.service"
# Which runtime folder a container belongs to: gc (and a test with a runtime folder of its
# own) removes only its own runtime's orphans, never those of another rig on the machine.
RUNTIME_LABEL = "rig.runtime"
STOP_GRACE_S = 3
LOG_TAIL_LINES = 20
SIGNAL_EXIT_BASE = 128  # the engine reports "killed by signal N" as exit code 128 + N
RUNNING_STATES = ("created", "running", "restarting", "paused")
API_VERSION = "1.41"
DEFAULT_HOST = "unix:///var/run/docker.sock"


def _unix_socket_path(host: str) -> str | None:
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def connect(client: Any = None) -> Any:
    """A Docker client whose engine answers, or an InfraError saying why not."""
    try:
        import docker
    except ImportError:
        raise InfraError("the docker target needs the Docker SDK: install rig[docker]") from None
    given = client is not None
    socket_path = _unix_socket_path(os.environ.get("DOCKER_HOST", DEFAULT_HOST))
    if not given and socket_path and not os.path.exists(socket_path):
        # checked here: the SDK leaks a socket when it cannot connect to a missing path
        raise InfraError(f"no Docker engine reachable: {socket_path} does not exist")
    try:
        # A fixed API version: "auto" would query the engine inside the constructor and
        # leak its connection when there is no engine. 1.41 is Docker 20.10 and later.
        client = client or docker.from_env(version=API_VERSION)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        if client is not None and not given:
            client.close()
        raise InfraError(f"no Docker engine reachable: {exc}") from None
    return client


def container_name(run_id: str, service: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"rig-{run_id}-{service}")


def exit_code_from_state(state: dict[str, Any]) -> int | None:
    """None while running; like `Popen.returncode` after (negative: killed by that signal)."""
    if state.get("Status") in RUNNING_STATES:
        return None
    code = int(state.get("ExitCode", 0))
    return -(code - SIGNAL_EXIT_BASE) if code > SIGNAL_EXIT_BASE else code


def _follow_logs(container: Any, log_path: Path) -> None:
    """Copy the container's output into the run folder until it stops."""
    stream = None
    try:
        stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
        with open(log_path, "ab") as log:
            for chunk in stream:
                log.write(chunk)
                log.flush()
    except Exception:  # noqa: BLE001 - the container went away: nothing more to copy
        return
    finally:
        if stream is not None:
            stream.close()


@dataclass
class DockerService:
    name: str
    container: Any
    log_path: Path
    follower: threading.Thread
    _pid: int = 0

    @property
    def pid(self) -> int:
        if not self._pid:
            self.container.reload()
            self._pid = int(self.container.attrs["State"].get("Pid") or 0)
        return self._pid

    def exit_code(self) -> int | None:
        from docker.errors import NotFound

        try:
            self.container.reload()
        except NotFound:
            return -9  # removed behind the rig's back
        return exit_code_from_state(self.container.attrs["State"])

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            data = self.container.logs(stdout=True, stderr=True, tail=lines)
        except Exception:  # noqa: BLE001 - best effort, for an error message
            return ""
        return bytes(data).decode(errors="replace").rstrip()

    def stop(self) -> int:
        """Stop (SIGTERM, grace, SIGKILL), keep the exit code, remove the container."""
        from docker.errors import NotFound

        code = -9
        try:
            self.container.stop(timeout=STOP_GRACE_S)
            code = exit_code_from_state(self._state()) or 0
        except NotFound:
            pass
        finally:
            self.follower.join(timeout=STOP_GRACE_S)
            try:
                self.container.remove(force=True)
            except NotFound:
                pass
        return code

    def _state(self) -> dict[str, Any]:
        self.container.reload()
        state: dict[str, Any] = self.container.attrs["State"]
        return state


@dataclass
class DockerStack:
    endpoints: Endpoints
    record: RunRecord
    services: dict[str, DockerService] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        """Stop and remove containers in reverse start order (the relay before kmod)."""
        for name in reversed(list(self.services)):
            if name not in self.exit_codes:
                self.exit_codes[name] = self.services[name].stop()

    def __enter__(self) -> DockerStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DockerBackend:
    name = "docker"

    def __init__(
        self, endpoints: Endpoints, logs_dir: Path, record: RunRecord, client: Any = None,
        user: str | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.logs_dir = logs_dir
        self.record = record
        self.owns_client = client is None
        self.client = connect(client)
        # Files the services write into bind mounts belong to the rig's user, not root.
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.images: dict[str, str] = {}

    def prepare(self, sources: Mapping[str, Path],
                recipes: Mapping[str, ImageRecipe] | None = None) -> dict[str, float]:
        """Images of the (patched) copies, built unless their content hash exists, or the
        images the recipes name."""
        from rig.topology.images import build_images

        began = time.monotonic()
        with open(self.logs_dir / "build.log", "a", encoding="utf-8") as log:
            images = build_images(self.client, sources,
                                  progress=lambda line: print(line, file=log, flush=True),
                                  recipes=recipes)
        self.images = {name: image.tag for name, image in images.items()}
        return {"images_s": round(time.monotonic() - began, 3)}

    def version(self, spec: ServiceSpec, argv: Sequence[str]) -> str:
        """What `argv` prints in a throwaway container of the spec's image (entrypoint
        replaced, no network), both streams."""
        from docker.errors import APIError, ContainerError

        name = container_name(self.record.run_id, f"{spec.name}-version")
        try:
            output = self.client.containers.run(
                spec.image, entrypoint=[argv[0]], command=list(argv[1:]), name=name,
                network_mode="none", stdout=True, stderr=True, remove=True,
                labels={RUN_LABEL: self.record.run_id, SERVICE_LABEL: spec.name,
                        RUNTIME_LABEL: str(runtime_dir())})
        except ContainerError as exc:
            return bytes(exc.stderr or b"").decode(errors="replace")
        except APIError as exc:
            raise InfraError(f"{spec.name}: {' '.join(argv)} in {spec.image}: "
                             f"{exc.explanation or exc}") from None
        return bytes(output).decode(errors="replace")

    def spec(self, service: Any, settings: Any, site: Any) -> ServiceSpec:
        if service.name not in self.images:
            raise InfraError(f"{service.name}: no image prepared for the docker target")
        return service.container_spec(settings, site, self.images[service.name])  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.owns_client:
            self.client.close()

    def start(self, specs: Sequence[ServiceSpec]) -> DockerStack:
        stack = DockerStack(endpoints=self.endpoints, record=self.record)
        try:
            for spec in specs:
                self._start_one(spec, stack)
        except BaseException:
            stack.close()
            raise
        return stack

    def _start_one(self, spec: ServiceSpec, stack: DockerStack) -> None:
        from docker.errors import APIError, ImageNotFound

        if not spec.image:
            raise InfraError(f"{spec.name}: no image given for the docker target")
        log_path = self.logs_dir / f"{spec.name}.log"
        try:
            self.client.images.get(spec.image)  # run() would try to pull it from a registry
        except ImageNotFound:
            raise InfraError(
                f"{spec.name}: image {spec.image} not found (build it first)"
            ) from None
        try:
            container = self.client.containers.run(
                spec.image,
                command=list(spec.argv),
                name=container_name(self.record.run_id, spec.name),
                detach=True,
                network_mode="host",
                labels={RUN_LABEL: self.record.run_id, SERVICE_LABEL: spec.name,
                        RUNTIME_LABEL: str(runtime_dir())},
                environment={**dict(spec.env), **process_labels(self.record.run_id)},
                volumes={host: {"bind": inside, "mode": "rw"}
                         for host, inside in spec.volumes.items()},
                working_dir=str(spec.cwd) if spec.cwd else None,
                user=self.user,
            )
        except APIError as exc:
            raise InfraError(f"{spec.name} would not start: {exc.explanation or exc}") from None
        follower = threading.Thread(
            target=_follow_logs, args=(container, log_path), name=f"logs-{spec.name}", daemon=True
        )
        follower.start()
        service = DockerService(spec.name, container, log_path, follower)
        stack.services[spec.name] = service  # from here on, close() removes it
        self._wait_ready(spec, service)

    def _wait_ready(self, spec: ServiceSpec, service: DockerService) -> None:
        try:
            wait_until_ready(spec.ready, spec.startup_timeout,
                             lambda: service.exit_code() is None)
        except ServiceDied:
            raise InfraError(
                f"{spec.name} exited with code {service.exit_code()} before it was ready "
                f"({spec.ready.describe()})",
                logs=service.logs_tail(),
            ) from None
        except Exception as exc:
            raise InfraError(
                f"{spec.name} not ready after {spec.startup_timeout:.0f} s "
                f"({spec.ready.describe()}): {exc}",
                logs=service.logs_tail(),
            ) from None


def _live_run_ids() -> set[str]:
    return {path.stem for path in (runtime_dir() / "runs").glob("*.json")}


def remove_orphan_containers(
    live_run_ids: Collection[str] | None = None, client: Any = None
) -> int:
    """Remove this runtime's labelled containers whose run has no record left (its owner is
    gone).

    Call it after the run records of dead runs were removed. Returns 0 without touching
    anything when the SDK or an engine is missing.
    """
    try:
        client = connect(client)
    except InfraError:
        return 0
    live = _live_run_ids() if live_run_ids is None else set(live_run_ids)
    removed = 0
    ours = [RUN_LABEL, f"{RUNTIME_LABEL}={runtime_dir()}"]
    for container in client.containers.list(all=True, filters={"label": ours}):
        if container.labels.get(RUN_LABEL) not in live:
            container.remove(force=True)
            removed += 1
    return removed
