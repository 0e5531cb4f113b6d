"""Which services run, where, and how the rig knows they are ready.

A backend turns a list of `ServiceSpec` into running services and stops them again.
The local backend (processes on 127.x addresses) is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rig.errors import UsageError
from rig.topology.destinations import Destinations, IPNetwork
from rig.topology.suite import DEFAULT_SUITE
from rig.topology.wait import WaitStrategy


@dataclass(frozen=True)
class Endpoints:
    """Addresses of one run: every service and the rig itself bind on `host`."""

    host: str
    ng_port: int = 2223
    relay_rtp_ports: tuple[int, int] = (30000, 31999)
    uac_port: int = 5060
    uas_port: int = 5080
    rig_rtp_ports: tuple[int, int] = (40000, 49999)
    table: int = 0
    allowed: tuple[IPNetwork, ...] = ()  # targets.allow: a `host` beyond loopback is in it

    def guard(self) -> Destinations:
        """The destination guard for the rig's own requests to these services (probes,
        readiness checks)."""
        return Destinations(allowed=self.allowed)


@dataclass(frozen=True)
class ServiceSpec:
    """One process to start: its command line, its readiness test, and its log name."""

    name: str
    argv: Sequence[str]
    ready: WaitStrategy
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 15.0
    # Docker backend only: the image to run (argv becomes the container's command) and
    # host folders bind-mounted read-write into it, host path -> container path.
    image: str | None = None
    volumes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecipe:
    """How the docker backend gets one service's image: `image` as given (the rig does not
    build it), else a build of the service's (patched) source copy: the rig's own on the
    rig's base of `suite` (rig.topology.suite), or the user's (`own`) with their Dockerfile
    and build arguments."""

    image: str | None = None
    dockerfile: str = "Dockerfile"
    args: Mapping[str, str] = field(default_factory=dict)
    own: bool = False
    suite: str = DEFAULT_SUITE


class RunningService(Protocol):
    name: str
    log_path: Path

    @property
    def pid(self) -> int: ...

    def exit_code(self) -> int | None:
        """None while running; the return code (negative: killed by that signal) after."""
        ...


class Stack(Protocol):
    endpoints: Endpoints
    services: Mapping[str, RunningService]

    def close(self) -> None: ...


class Backend(Protocol):
    """Where services run. `prepare` gets what they run from (the local backend: the
    sources; docker: images built from them, or given by `recipes`) and returns its
    timings; `spec` asks the service for the spec of this backend; `version` runs a spec's
    executable with `argv[1:]` and returns what it printed; `close` releases the backend."""

    name: str

    def prepare(self, sources: Mapping[str, Path],
                recipes: Mapping[str, ImageRecipe] | None = None) -> dict[str, float]: ...

    def spec(self, service: Any, settings: Any, site: Any) -> ServiceSpec: ...

    def version(self, spec: ServiceSpec, argv: Sequence[str]) -> str: ...

    def start(self, specs: Sequence[ServiceSpec]) -> Stack: ...

    def close(self) -> None: ...


BackendFactory = Callable[..., Backend]
BACKENDS: dict[str, str] = {
    "local": "rig.topology.local:LocalBackend",
    "docker": "rig.topology.docker:DockerBackend",
}


def backend_class(name: str) -> BackendFactory:
    """Look a backend up by name; heavy modules are imported only when chosen."""
    if name not in BACKENDS:
        raise UsageError(f"unknown target {name!r} (allowed: {', '.join(sorted(BACKENDS))})")
    module_name, _, attr = BACKENDS[name].partition(":")
    module = __import__(module_name, fromlist=[attr])
    factory: BackendFactory = getattr(module, attr)
    return factory
