"""kamailio: the SIP proxy in front of the media relay, Debian's package (containers/kamailio).

Its memory managers (`-x`/`-X`) and pool sizes (`-m`/`-M`) come from the scenario; the
rig's config (`kamailio.cfg` in its folder) offers on INVITE, answers on the 200 and
deletes on BYE and on every failure path. The rig reads it over its control socket.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rig.probes import Probe
from rig.services import OwnBuildSettings, Peak, Site
from rig.topology import Endpoints, RunningService, ServiceSpec
from rig.topology.destinations import Destinations
from rig.topology.wait import NotReady

MemoryManager = Literal["qm", "fm", "tlsf"]
SIP_PORT = 5070
CONFIG = "kamailio.cfg"
CONFIG_IN_IMAGE = Path("/etc/kamailio/rig.cfg")
CTL_SOCKET_NAME = "kamailio_ctl"


class KamailioSettings(OwnBuildSettings):
    """Kamailio's start-up choices: allocators (`-x`/`-X`) and pool sizes (`-m`/`-M`)."""

    source: str = Field(default="containers/kamailio", min_length=1,
                        description="folder of the service, from the repo root")
    shm_manager: MemoryManager = Field(default="qm", description="shared memory allocator")
    pkg_manager: MemoryManager = Field(default="qm", description="private memory allocator")
    shm_mb: int = Field(default=64, ge=8, le=4096, description="shared memory pool, MiB")
    pkg_mb: int = Field(default=8, ge=1, le=1024, description="private pool per process, MiB")
    workers: int = Field(default=2, ge=1, le=64, description="SIP worker processes")


@dataclass(frozen=True)
class SipOptionsAnswered:
    """Ready when an OPTIONS sent to HOST:PORT over UDP gets any SIP response."""

    host: str
    port: int
    timeout: float = 0.3
    destinations: Destinations = field(default_factory=Destinations)  # loopback only

    def check(self) -> None:
        self.destinations.check(self.host, self.port, "Kamailio's readiness OPTIONS")
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


def kamailio_options(run_dir: Path, endpoints: Endpoints, settings: Any) -> list[str]:
    """Command-line options after `-f CONFIG`: managers, sizes, and the config's defines."""
    host = endpoints.host
    return [
        "-DD", "-E",
        "-Y", str(run_dir),
        "-x", settings.shm_manager, "-X", settings.pkg_manager,
        "-m", str(settings.shm_mb), "-M", str(settings.pkg_mb),
        "-A", f"SIP_LISTEN=udp:{host}:{SIP_PORT}",
        "-A", f'RTPENGINE_SOCK="udp:{host}:{endpoints.ng_port}"',
        "-A", f'CALLEE="sip:{host}:{endpoints.uas_port}"',
        "-A", f'CTL_SOCK="unix:{run_dir / CTL_SOCKET_NAME}"',
        "-A", f"WORKERS={settings.workers}",
        *settings.args,
    ]


VERSION_LINE = re.compile(r"^version:\s*kamailio\s+(?P<version>\S+)", re.MULTILINE)


def parse_kamailio_version(text: str) -> str | None:
    """`kamailio -v` starts with `version: kamailio 5.6.3 (x86_64/linux)`."""
    match = VERSION_LINE.search(text)
    return match["version"] if match else None


def kamailio_ctl(run_dir: Path) -> str:
    """The `kamcmd -s` address of a Kamailio started with these options."""
    return f"unix:{run_dir / CTL_SOCKET_NAME}"


def kamailio_spec(config: Path, run_dir: Path, endpoints: Endpoints,
                  settings: Any = None) -> ServiceSpec:
    """Kamailio from the Debian package, in the foreground, proxying UAC -> UAS."""
    settings = settings or KamailioSettings()
    return ServiceSpec(
        name="kamailio",
        argv=[settings.executable("kamailio"), "-f", str(config),
              *kamailio_options(run_dir, endpoints, settings)],
        ready=SipOptionsAnswered(endpoints.host, SIP_PORT, destinations=endpoints.guard()),
    )


@dataclass(frozen=True)
class Kamailio:
    name: str = "kamailio"
    role: str = "proxy"
    settings_model: type[KamailioSettings] = KamailioSettings
    requires: tuple[str, ...] = ()
    ports: tuple[int, ...] = (SIP_PORT,)
    peaks: tuple[Peak, ...] = (
        Peak("kamailio.shm_used", "peak Kamailio shm used (KiB)", 1024),)
    ceilings: dict[str, str] = field(default_factory=dict)
    parse_log: None = None
    sip_port: int = SIP_PORT
    # what `rig matrix` compares across allocators
    matrix_counter: Peak = Peak("kamailio.shm_used", "shm", 1024, "KiB")
    version_argv: tuple[str, ...] = ("kamailio", "-v")
    parse_version: Callable[[str], str | None] | None = parse_kamailio_version

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        return kamailio_spec(source / CONFIG, site.dir("kamailio"), site.endpoints, settings)

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        """The image's entrypoint runs `kamailio -f` with its built-in config; the run folder
        (control socket) is bind-mounted at the same path so host tools find it."""
        run_dir = site.dir("kamailio")
        local = kamailio_spec(CONFIG_IN_IMAGE, run_dir, site.endpoints, settings)
        return replace(local, argv=kamailio_options(run_dir, site.endpoints, settings),
                       image=image, volumes={str(run_dir): str(run_dir)})

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        from rig.probes.kamailio import KamailioProbe

        return [KamailioProbe(kamailio_ctl(site.dir("kamailio")), modules=False)]


SERVICE = Kamailio()
