"""Real peers as services: Kamailio and rtpengine from their Debian packages, as local
processes or in containers, and the model SUT (kmod, relay) in containers.

Every service binds on the run's loopback address (`Endpoints.host`); containers use the
host network, so the same addresses and readiness checks serve both backends.
`StackPlan` says which services one run starts; `local_specs`/`container_specs` turn it
into the specs a backend starts, in start order.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from rig.errors import UsageError
from rig.topology import Endpoints, ServiceSpec
from rig.topology.model import RelaySettings, kmod_spec, relay_spec
from rig.topology.wait import NgPing, NotReady

MEMORY_MANAGERS = ("qm", "fm", "tlsf")
CONFIG_IN_IMAGE = Path("/etc/kamailio/rig.cfg")
MODEL_SOURCES_IN_IMAGE = Path("/opt/rig")
CTL_SOCKET_NAME = "kamailio_ctl"


@dataclass(frozen=True)
class KamailioSettings:
    """Start-up choices a scenario may vary: allocators (`-x`/`-X`), pool sizes in MiB
    (`-m`/`-M`), SIP worker processes, and the proxy's port on the run's host."""

    shm_manager: str = "qm"
    pkg_manager: str = "qm"
    shm_mb: int = 64
    pkg_mb: int = 8
    workers: int = 2
    sip_port: int = 5070

    def __post_init__(self) -> None:
        for option, value in (("shm_manager", self.shm_manager),
                              ("pkg_manager", self.pkg_manager)):
            if value not in MEMORY_MANAGERS:
                raise UsageError(
                    f"kamailio {option}: unknown memory manager {value!r} "
                    f"(allowed: {', '.join(MEMORY_MANAGERS)})"
                )
        for option, number, low in (("shm_mb", self.shm_mb, 8), ("pkg_mb", self.pkg_mb, 1),
                                    ("workers", self.workers, 1)):
            if number < low:
                raise UsageError(f"kamailio {option}: {number} is below {low}")


@dataclass(frozen=True)
class RtpengineSettings:
    cli_port: int = 9900
    delete_delay: int = 0  # seconds a deleted call lingers; rtpengine's own default is 30


@dataclass(frozen=True)
class SipOptionsAnswered:
    """Ready when an OPTIONS sent to HOST:PORT over UDP gets any SIP response."""

    host: str
    port: int
    timeout: float = 0.3

    def check(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            sock.bind((self.host, 0))
            call_id = secrets.token_hex(8)
            try:
                sock.sendto(options_request(self.host, sock.getsockname()[1], self.port,
                                            call_id), (self.host, self.port))
                data, _ = sock.recvfrom(65535)
            except OSError as exc:
                raise NotReady(f"no answer to OPTIONS: {exc}") from exc
        if not data.startswith(b"SIP/2.0 ") or call_id.encode() not in data:
            raise NotReady(f"unexpected answer to OPTIONS: {data[:40]!r}")

    def describe(self) -> str:
        return f"SIP OPTIONS answered on {self.host}:{self.port}"


def options_request(host: str, local_port: int, port: int, call_id: str) -> bytes:
    branch = "z9hG4bK" + call_id
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
        f"Max-Forwards: 10\r\n"
        f"From: <sip:rig@{host}>;tag={call_id[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def kamailio_options(run_dir: Path, endpoints: Endpoints, settings: KamailioSettings) -> list[str]:
    """Command-line options after `-f CONFIG`: managers, sizes, and the config's defines."""
    host = endpoints.host
    return [
        "-DD", "-E",
        "-Y", str(run_dir),
        "-x", settings.shm_manager, "-X", settings.pkg_manager,
        "-m", str(settings.shm_mb), "-M", str(settings.pkg_mb),
        "-A", f"SIP_LISTEN=udp:{host}:{settings.sip_port}",
        "-A", f'RTPENGINE_SOCK="udp:{host}:{endpoints.ng_port}"',
        "-A", f'CALLEE="sip:{host}:{endpoints.uas_port}"',
        "-A", f'CTL_SOCK="unix:{run_dir / CTL_SOCKET_NAME}"',
        "-A", f"WORKERS={settings.workers}",
    ]


def kamailio_ctl(run_dir: Path) -> str:
    """The `kamcmd -s` address of a Kamailio started by these factories."""
    return f"unix:{run_dir / CTL_SOCKET_NAME}"


def kamailio_spec(
    config: Path, run_dir: Path, endpoints: Endpoints, settings: KamailioSettings | None = None
) -> ServiceSpec:
    """Kamailio from the Debian package, in the foreground, proxying UAC -> UAS."""
    settings = settings or KamailioSettings()
    return ServiceSpec(
        name="kamailio",
        argv=["kamailio", "-f", str(config), *kamailio_options(run_dir, endpoints, settings)],
        ready=SipOptionsAnswered(endpoints.host, settings.sip_port),
    )


def rtpengine_options(endpoints: Endpoints, settings: RtpengineSettings) -> list[str]:
    host = endpoints.host
    lo, hi = endpoints.relay_rtp_ports
    return [
        "--foreground", "--log-stderr",
        "--config-file=none",  # never read the host's /etc/rtpengine
        "--table=-1",  # userspace only: no kernel module, so no pins
        f"--interface={host}",
        f"--listen-ng={host}:{endpoints.ng_port}",
        f"--listen-cli={host}:{settings.cli_port}",
        f"--port-min={lo}", f"--port-max={hi}",
        f"--delete-delay={settings.delete_delay}",
    ]


def rtpengine_spec(endpoints: Endpoints, settings: RtpengineSettings | None = None) -> ServiceSpec:
    """rtpengine-daemon, userspace only, NG and CLI on the run's host."""
    settings = settings or RtpengineSettings()
    return ServiceSpec(
        name="rtpengine",
        argv=["rtpengine", *rtpengine_options(endpoints, settings)],
        ready=NgPing(endpoints.host, endpoints.ng_port),
    )


def kamailio_container_spec(
    image: str, run_dir: Path, endpoints: Endpoints, settings: KamailioSettings | None = None
) -> ServiceSpec:
    """The image's entrypoint runs `kamailio -f` with its built-in config; the run folder
    (control socket) is bind-mounted at the same path so host tools find it."""
    settings = settings or KamailioSettings()
    local = kamailio_spec(CONFIG_IN_IMAGE, run_dir, endpoints, settings)
    return replace(
        local,
        argv=kamailio_options(run_dir, endpoints, settings),
        image=image,
        volumes={str(run_dir): str(run_dir)},
    )


def rtpengine_container_spec(
    image: str, endpoints: Endpoints, settings: RtpengineSettings | None = None
) -> ServiceSpec:
    settings = settings or RtpengineSettings()
    return replace(rtpengine_spec(endpoints, settings),
                   argv=rtpengine_options(endpoints, settings), image=image)


def kmod_container_spec(image: str, state_dir: Path) -> ServiceSpec:
    """The kmod model; its folder (control socket, status files) is a bind mount at the
    same path, so the relay container and the rig's probes see one folder."""
    local = kmod_spec(MODEL_SOURCES_IN_IMAGE / "kmod", state_dir)
    return replace(local, argv=["python3", *local.argv[1:]], image=image,
                   volumes={str(state_dir): str(state_dir)})


def relay_container_spec(
    image: str, state_dir: Path, endpoints: Endpoints, settings: RelaySettings
) -> ServiceSpec:
    local = relay_spec(MODEL_SOURCES_IN_IMAGE / "relay", state_dir, endpoints, settings)
    return replace(local, argv=["python3", *local.argv[1:]], image=image,
                   volumes={str(state_dir): str(state_dir)})


# -- the stack of one run ----------------------------------------------------------------

TOPOLOGIES = ("model", "kamailio")
MEDIA_RELAYS = ("relay", "rtpengine")
KAMAILIO_CONFIG = "kamailio.cfg"


@dataclass(frozen=True)
class StackPlan:
    """Which services a run starts: the media relay (the model relay with kmod, or
    rtpengine), and Kamailio in front of it with the `kamailio` topology."""

    topology: str = "model"
    media: str = "relay"
    relay: RelaySettings = RelaySettings(workers=4, shard_size=65536)
    kamailio: KamailioSettings = field(default_factory=KamailioSettings)
    rtpengine: RtpengineSettings = field(default_factory=RtpengineSettings)

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise UsageError(f"unknown topology {self.topology!r} "
                             f"(allowed: {', '.join(TOPOLOGIES)})")
        if self.media not in MEDIA_RELAYS:
            raise UsageError(f"unknown media relay {self.media!r} "
                             f"(allowed: {', '.join(MEDIA_RELAYS)})")

    @property
    def services(self) -> tuple[str, ...]:
        """Service names in start order: the relay's dependencies first, the proxy last."""
        media = ("kmod", "relay") if self.media == "relay" else ("rtpengine",)
        return media + (("kamailio",) if self.topology == "kamailio" else ())

    @property
    def with_kamailio(self) -> bool:
        return self.topology == "kamailio"


@dataclass(frozen=True)
class RunDirs:
    """Host folders of one run: kmod's stand-in for /proc/rtpengine, Kamailio's run folder."""

    state: Path
    kamailio: Path


def local_specs(
    plan: StackPlan, sources: Mapping[str, Path], dirs: RunDirs, endpoints: Endpoints
) -> list[ServiceSpec]:
    """Specs for local processes; `sources` maps a service to its (patched) folder copy."""
    factories: dict[str, Callable[[], ServiceSpec]] = {
        "kmod": lambda: kmod_spec(sources["kmod"], dirs.state),
        "relay": lambda: relay_spec(sources["relay"], dirs.state, endpoints, plan.relay),
        "rtpengine": lambda: rtpengine_spec(endpoints, plan.rtpengine),
        "kamailio": lambda: kamailio_spec(sources["kamailio"] / KAMAILIO_CONFIG, dirs.kamailio,
                                          endpoints, plan.kamailio),
    }
    return [factories[name]() for name in plan.services]


def container_specs(
    plan: StackPlan, images: Mapping[str, str], dirs: RunDirs, endpoints: Endpoints
) -> list[ServiceSpec]:
    """Specs for the docker backend; `images` maps a service to its image tag."""
    factories: dict[str, Callable[[], ServiceSpec]] = {
        "kmod": lambda: kmod_container_spec(images["kmod"], dirs.state),
        "relay": lambda: relay_container_spec(images["relay"], dirs.state, endpoints,
                                              plan.relay),
        "rtpengine": lambda: rtpengine_container_spec(images["rtpengine"], endpoints,
                                                      plan.rtpengine),
        "kamailio": lambda: kamailio_container_spec(images["kamailio"], dirs.kamailio,
                                                    endpoints, plan.kamailio),
    }
    return [factories[name]() for name in plan.services]
