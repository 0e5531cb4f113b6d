"""rtpengine: sipwise's media relay, Debian's `rtpengine-daemon` (containers/rtpengine).

Userspace only (`--table=-1`): no kernel module, so no pins, but sessions and NG
statistics. It never reads the host's /etc/rtpengine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from rig.probes import Probe
from rig.probes.logs import parse_rtpengine_line
from rig.services import LogParser, MediaSettings, OwnBuildSettings, Peak, Site
from rig.topology import RunningService, ServiceSpec
from rig.topology.wait import NgPing

NG_PORT = 2223
CLI_PORT = 9900


class RtpengineSettings(MediaSettings, OwnBuildSettings):
    source: str = Field(default="containers/rtpengine", min_length=1,
                        description="folder of the service, from the repo root")
    delete_delay: int = Field(
        default=0, ge=0, le=3600, description="seconds a deleted call lingers (rtpengine: 30)"
    )


def rtpengine_options(settings: Any, site: Site) -> list[str]:
    endpoints = site.endpoints
    host = endpoints.host
    lo, hi = endpoints.relay_rtp_ports
    return [
        "--foreground", "--log-stderr",
        "--config-file=none",  # never read the host's /etc/rtpengine
        "--table=-1",  # userspace only: no kernel module, so no pins
        f"--interface={host}",
        f"--listen-ng={host}:{endpoints.ng_port}",
        f"--listen-cli={host}:{CLI_PORT}",
        f"--port-min={lo}", f"--port-max={hi}",
        f"--delete-delay={settings.delete_delay}",
        *settings.args,
    ]


VERSION_LINE = re.compile(r"^Version:\s*(?P<version>\S+)", re.MULTILINE)


def parse_rtpengine_version(text: str) -> str | None:
    """`rtpengine --version` prints `Version: 10.5.3.5-1+deb12u1` (on stderr)."""
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
    matrix_counter: None = None
    version_argv: tuple[str, ...] = ("rtpengine", "--version")
    parse_version: Callable[[str], str | None] | None = parse_rtpengine_version

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        return ServiceSpec(
            name="rtpengine",
            argv=[settings.executable("rtpengine"), *rtpengine_options(settings, site)],
            ready=NgPing(site.endpoints.host, site.endpoints.ng_port),
        )

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        """The image's entrypoint is `rtpengine` (a user's `image:` or `build:` too); the
        options are its command."""
        return replace(self.local_spec(settings, site, Path()),
                       argv=rtpengine_options(settings, site), image=image)

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        from rig.probes.maps import MapsShardProbe
        from rig.probes.proc import ProcessProbe
        from rig.probes.rtpengine import RtpengineNgProbe

        # NG statistics (bufferpools from mr26.1 on), and the shard estimate from the
        # daemon's memory map for the versions that do not report them
        return [RtpengineNgProbe(site.endpoints.host, site.endpoints.ng_port),
                ProcessProbe(running.pid, "rtpengine"), MapsShardProbe(running.pid)]


SERVICE = Rtpengine()
