"""What each system under test is, one module per service, behind one Protocol.

A service module declares in one place its scenario settings (a `Frozen` model under
`services.<name>`), how it starts as a local process and as a container, its readiness
check (inside the spec), its probes, its log-line parser, its role in the topology, the
peaks the report compares and the counters whose ceiling a check enforces. The runner,
the report, the matrix and the sweep ask the registry; adding a system under test is one
module here (and its folder under containers/).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Protocol

from pydantic import Field, field_validator, model_validator

from rig.errors import UsageError, quote
from rig.frozen import Frozen
from rig.probes import Probe
from rig.series import Event
from rig.topology import Endpoints, ImageRecipe, RunningService, ServiceSpec
from rig.topology.suite import DEFAULT_SUITE, Suite, host_suite, local_suite_problem

ROLES = ("kernel", "media", "proxy")
# The registry, in the order the report lists the services' peaks.
MODULES: dict[str, str] = {
    "kmod": "rig.services.kmod",
    "relay": "rig.services.relay",
    "rtpengine": "rig.services.rtpengine",
    "kamailio": "rig.services.kamailio",
}


class ServiceSettings(Frozen):
    """The keys every service takes under `services.<name>`."""

    source: str

    @field_validator("source")
    @classmethod
    def stays_in_the_repository(cls, value: str) -> str:
        """A relative folder may not climb out of the repository (checked again, with
        symbolic links followed, when the run copies it: rig.topology.source)."""
        return inside_the_repository(value)

    def folder(self) -> str:
        """The folder the run copies (and patches): the service's source."""
        return self.source

    def recipe(self) -> ImageRecipe:
        """How the docker backend gets the image: the rig builds `source` on its base."""
        return ImageRecipe()

    def check_target(self, name: str, target: str) -> None:
        """UsageError when these settings cannot run on `target`."""


def inside_the_repository(value: str) -> str:
    climbs = posixpath.normpath(value).split("/")[0] == ".."
    if climbs and not PurePosixPath(value).is_absolute():
        raise ValueError(f"{quote(value)} leads out of the repository (allowed: a folder "
                         "inside it, or an absolute path with --allow-outside-sources)")
    return value


class BuildSettings(Frozen):
    """`build:`: the user's own image, built by the docker backend at each commit."""

    context: str = Field(min_length=1, description="build context, from the --repo root")
    dockerfile: str = Field(default="Dockerfile", min_length=1,
                            description="the Dockerfile, from the context's root")
    args: dict[str, str] = Field(default_factory=dict, description="build arguments")

    @field_validator("context")
    @classmethod
    def context_in_the_repository(cls, value: str) -> str:
        return inside_the_repository(value)

    @field_validator("dockerfile")
    @classmethod
    def dockerfile_in_the_context(cls, value: str) -> str:
        if PurePosixPath(value).is_absolute() or posixpath.normpath(value).startswith(".."):
            raise ValueError(f"{quote(value)} leads out of the build context")
        return value


class MediaSettings(ServiceSettings):
    """The keys every media relay takes besides `source`."""

    port_range: tuple[int, int] | None = Field(
        default=None, strict=False,
        description="[LO, HI]: the relay's RTP ports (2 per stream: RTP and RTCP); null: "
                    "sized from load.max_concurrent and the bursts (rig.plan.port_layout)")

    @field_validator("port_range")
    @classmethod
    def a_usable_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            lo, hi = value
            if not 1024 <= lo < hi <= 65535 or lo + lo % 2 + 1 > hi:
                raise ValueError(f"{quote(list(value))} is not a port range (allowed: [LO, HI] "
                                 "with 1024 <= LO < HI <= 65535 holding an even/odd pair)")
        return value


class OwnBuildSettings(ServiceSettings):
    """A real service from Debian's package of `suite`, or the user's own build: `binary:`
    (local target), `image:` or `build:` (docker target), and `args:` after the rig's own
    options."""

    suite: Suite = Field(
        default=DEFAULT_SUITE,
        description="Debian suite whose package runs: the docker target builds the image on "
                    "rig-base:<suite>; the local target runs the host's own (another suite "
                    "is an error there)")

    binary: str | None = Field(default=None, min_length=1,
                               description="executable to run instead of the one on PATH "
                                           "(local target)")
    image: str | None = Field(default=None, min_length=1,
                              description="image to run, not built by the rig (docker target)")
    build: BuildSettings | None = Field(default=None,
                                        description="the user's own image build (docker target)")
    args: Annotated[tuple[str, ...], Field(strict=False)] = Field(
        default=(), description="extra command-line options, after the rig's own")

    @model_validator(mode="after")
    def one_image_source(self) -> OwnBuildSettings:
        if self.image is not None and self.build is not None:
            raise ValueError("give image: or build:, not both")
        own = [key for key in ("binary", "image", "build") if getattr(self, key) is not None]
        if own and "suite" in self.model_fields_set:
            raise ValueError(f"give suite: or {own[0]}:, not both (suite picks Debian's "
                             f"package; with {own[0]}: the build is your own)")
        return self

    def folder(self) -> str:
        return self.build.context if self.build is not None else self.source

    def recipe(self) -> ImageRecipe:
        if self.image is not None:
            return ImageRecipe(image=self.image)
        if self.build is not None:
            return ImageRecipe(dockerfile=self.build.dockerfile, args=dict(self.build.args),
                               own=True)
        return ImageRecipe(suite=self.suite)

    def check_target(self, name: str, target: str) -> None:
        docker_only = "image" if self.image is not None else (
            "build" if self.build is not None else None)
        if target == "local" and docker_only and self.binary is None:
            raise UsageError(f"services.{name}.{docker_only} is for the docker target "
                             f"(on the local target give services.{name}.binary)")
        if target == "docker" and self.binary is not None and docker_only is None:
            raise UsageError(f"services.{name}.binary is for the local target "
                             f"(on the docker target give services.{name}.image or build)")
        self.check_local_suite(name, target, host_suite)

    def check_local_suite(self, name: str, target: str,
                          host: Callable[[], str | None]) -> None:
        """On the local target a suite given explicitly must be the host's: what is
        installed there comes from it. Left at its default, the local target runs whatever
        is installed, as it always did."""
        if target == "local" and "suite" in self.model_fields_set:
            if problem := local_suite_problem(name, self.suite, host()):
                raise UsageError(problem)

    def executable(self, default: str) -> str:
        return self.binary or default


@dataclass(frozen=True)
class Peak:
    """A counter whose peak runs are compared by; the label names the unit after dividing."""

    counter: str
    label: str
    divisor: float = 1
    unit: str = ""


@dataclass(frozen=True)
class Site:
    """Where one run's services live: the run's addresses and its host folders.

    `state` is the kernel module's table folder (the kmod model's stand-in for
    /proc/rtpengine), shared by the kernel and the media relay; `dir(name)` is a
    service's own run folder (Kamailio's control socket, for one).
    """

    endpoints: Endpoints
    root: Path

    @property
    def state(self) -> Path:
        return self.root / "proc"

    def dir(self, name: str) -> Path:
        return self.root / name

    def make(self) -> Site:
        self.state.mkdir(parents=True, exist_ok=True)
        for name in MODULES:
            self.dir(name).mkdir(parents=True, exist_ok=True)
        return self


LogParser = Callable[[str, float], Event | None]


class Service(Protocol):
    """One system under test. `settings` is the value of the service's `settings_model`."""

    name: str
    role: str  # one of ROLES
    settings_model: type[ServiceSettings]
    requires: tuple[str, ...]  # services started before this one (the relay needs kmod)
    ports: tuple[int, ...]  # fixed ports it binds on the run's host
    peaks: tuple[Peak, ...]
    ceilings: Mapping[str, str]  # counter -> the check whose limit is its ceiling
    parse_log: LogParser | None  # (line, run start wall time) -> an event, else None
    sip_port: int | None  # where a proxy takes the rig's calls
    matrix_counter: Peak | None  # what `rig matrix` compares across cells, peak and last
    # how to ask it its version: argv (its first word replaced by the spec's executable
    # on the local target, the image's entrypoint on docker), and the version in its answer
    version_argv: tuple[str, ...]
    parse_version: Callable[[str], str | None] | None

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        """A process on this machine; `source` is the (patched) copy of its folder."""
        ...

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        """The same service in `image` on the host network."""
        ...

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        ...


def service(name: str) -> Service:
    """The service called `name`; an unknown name lists the known ones."""
    if name not in MODULES:
        raise UsageError(f"unknown service {name!r} (allowed: {', '.join(MODULES)})")
    found: Service = import_module(MODULES[name]).SERVICE
    return found


def all_services() -> list[Service]:
    return [service(name) for name in MODULES]


def names_with_role(role: str) -> tuple[str, ...]:
    return tuple(s.name for s in all_services() if s.role == role)


def role_of(name: str) -> str:
    return service(name).role if name in MODULES else name


def compared_peaks() -> list[Peak]:
    """Every service's compared peaks, each counter once, in registry order."""
    seen: dict[str, Peak] = {}
    for svc in all_services():
        for peak in svc.peaks:
            seen.setdefault(peak.counter, peak)
    return list(seen.values())


def matrix_counters() -> list[Peak]:
    return [svc.matrix_counter for svc in all_services() if svc.matrix_counter is not None]


def ceiling_check(counter: str) -> str | None:
    """The check whose limit is `counter`'s ceiling (kmod.pins: pins_below_ceiling)."""
    for svc in all_services():
        if counter in svc.ceilings:
            return svc.ceilings[counter]
    return None


def service_ports() -> list[int]:
    return sorted({port for svc in all_services() for port in svc.ports})


def start_order(names: Sequence[str]) -> tuple[str, ...]:
    """`names` with each one's requirements before it, each once."""
    order: list[str] = []

    def visit(name: str) -> None:
        for dep in service(name).requires:
            visit(dep)
        if name not in order:
            order.append(name)

    for name in names:
        visit(name)
    return tuple(order)
