"""rtpengine: sipwise's media relay, Debian's `rtpengine-daemon` (containers/rtpengine).

Userspace by default (`table: -1`): no kernel module, so no pins, but sessions, NG
statistics and the memory map's shard estimate. With `table: N` (N >= 0, local target, as
root, the module loaded) it forwards through kernel table N and the rig reads
/proc/rtpengine/N/status with the kmod model's parser, so the pin checks apply unchanged.
It never reads the host's /etc/rtpengine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from rig.errors import InfraError, UsageError
from rig.probes import Probe
from rig.probes.logs import parse_rtpengine_line
from rig.services import LogParser, MediaSettings, OwnBuildSettings, Peak, Site
from rig.topology import RunningService, ServiceSpec
from rig.topology.wait import NgPing

NG_PORT = 2223
CLI_PORT = 9900
MAX_TABLE = 63
PROC_RTPENGINE = Path("/proc/rtpengine")


class RtpengineSettings(MediaSettings, OwnBuildSettings):
    source: str = Field(default="containers/rtpengine", min_length=1,
                        description="folder of the service, from the repo root")
    delete_delay: int = Field(
        default=0, ge=0, le=3600, description="seconds a deleted call lingers (rtpengine: 30)"
    )
    table: int = Field(default=-1, ge=-1, le=MAX_TABLE,
                       description="kernel forwarding table; -1: userspace only (no module)")

    def check_target(self, name: str, target: str) -> None:
        super().check_target(name, target)
        if self.table >= 0 and target != "local":
            raise UsageError(f"services.{name}.table {self.table} needs the local target "
                             "(the kernel module's /proc/rtpengine, as root)")


def kernel_table_problem(table: int, proc: Path, euid: int) -> str | None:
    """Why rtpengine cannot use kernel table `table` here (module not loaded, not root),
    in one line; None when it can or when it runs in userspace (-1)."""
    if table < 0:
        return None
    reasons = []
    if not (proc / "control").exists():
        reasons.append(f"the rtpengine kernel module is not loaded (no {proc / 'control'}; "
                       "modprobe xt_RTPENGINE)")
    if euid != 0:
        reasons.append(f"the rig is not root (uid {euid}); rtpengine opens its kernel table "
                       "as root")
    return f"services.rtpengine.table {table}: {' and '.join(reasons)}" if reasons else None


def rtpengine_options(settings: Any, site: Site) -> list[str]:
    endpoints = site.endpoints
    host = endpoints.host
    lo, hi = endpoints.relay_rtp_ports
    return [
        "--foreground", "--log-stderr",
        "--config-file=none",  # never read the host's /etc/rtpengine
        f"--table={settings.table}",
        # a kernel table that cannot be opened is an error, not a silent userspace run
        *(["--no-fallback"] if settings.table >= 0 else []),
        f"--interface={host}",
        f"--listen-ng={host}:{endpoints.ng_port}",
        f"--listen-cli={host}:{CLI_PORT}",
        f"--port-min={lo}", f"--port-max={hi}",
        f"--delete-delay={settings.delete_delay}",
        *settings.args,
    ]


VERSION_LINE = re.compile(r"^Version:\s*(?P<version>\S+)", re.MULTILINE)


def parse_rtpengine_version(text: str) -> str | None:
    """`rtpengine --version` prints `Version: 10.5.3.5-1+deb12u1` (on stderr); trixie's
    says `12.5.1.31-1`, sid's `26.0.1.26+0~mr26.0.1.26`."""
    match = VERSION_LINE.search(text)
    return match["version"] if match else None


@dataclass(frozen=True)
class Rtpengine:
    name: str = "rtpengine"
    role: str = "media"
    settings_model: type[RtpengineSettings] = RtpengineSettings
    requires: tuple[str, ...] = ()
    ports: tuple[int, ...] = (NG_PORT, CLI_PORT)
    peaks: tuple[Peak, ...] = (Peak("media.sessions", "peak media sessions"),)
    ceilings: dict[str, str] = field(default_factory=dict)
    # make_shard lines where a user's build carries the instrumentation line
    parse_log: LogParser | None = parse_rtpengine_line
    sip_port: None = None
    # what `rig matrix` compares across suites and builds: sessions at the peak and left over
    matrix_counter: Peak = Peak("media.sessions", "sessions")
    # 26.0 parses its config file before it prints the version, and Debian's default one
    # names an interface `default` that a bare container lacks: "Fatal error"
    version_argv: tuple[str, ...] = ("rtpengine", "--config-file=none", "--version")
    parse_version: Callable[[str], str | None] | None = parse_rtpengine_version

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        if problem := kernel_table_problem(settings.table, PROC_RTPENGINE, os.geteuid()):
            raise InfraError(problem)
        return ServiceSpec(
            name="rtpengine",
            argv=[settings.executable("rtpengine"), *rtpengine_options(settings, site)],
            ready=NgPing(site.endpoints.host, site.endpoints.ng_port, site.endpoints.guard()),
        )

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        """The image's entrypoint is `rtpengine` (a user's `image:` or `build:` too); the
        options are its command."""
        return replace(self.local_spec(settings, site, Path()),
                       argv=rtpengine_options(settings, site), image=image)

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        from rig.probes.kmod import KmodStatusProbe
        from rig.probes.maps import MapsShardProbe
        from rig.probes.proc import ProcessProbe
        from rig.probes.rtpengine import RtpengineNgProbe

        # NG statistics (bufferpools from mr26.1 on), and the shard estimate from the
        # daemon's memory map for the versions that do not report them
        probes: list[Probe] = [RtpengineNgProbe(site.endpoints.host, site.endpoints.ng_port,
                                                destinations=site.endpoints.guard()),
                               ProcessProbe(running.pid, "rtpengine"),
                               MapsShardProbe(running.pid)]
        if settings.table >= 0:
            probes.append(KmodStatusProbe.for_table(PROC_RTPENGINE, settings.table))
        return probes


SERVICE = Rtpengine()
