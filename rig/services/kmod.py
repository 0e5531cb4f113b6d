"""kmod: the userspace model of rtpengine's kernel module (containers/kmod).

Its tables live in the run's state folder, laid out like /proc/rtpengine: a control
socket and `<table>/status` in the real module's format, which its probe reads.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from rig.probes import Probe
from rig.services import Peak, ServiceSettings, Site
from rig.topology import RunningService, ServiceSpec
from rig.topology.wait import UnixSocketAccepts

SOURCES_IN_IMAGE = Path("/opt/rig")


class KmodSettings(ServiceSettings):
    source: str = Field(default="containers/kmod", min_length=1,
                        description="folder of the service, from the repo root")
    max_targets: int = Field(default=65536, ge=1, le=10_000_000, description=(
        "forwarding targets a table holds before kmod refuses one with ENOMEM"))


@dataclass(frozen=True)
class Kmod:
    name: str = "kmod"
    role: str = "kernel"
    settings_model: type[KmodSettings] = KmodSettings
    requires: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    peaks: tuple[Peak, ...] = (Peak("kmod.pins", "peak kmod.pins"),)
    ceilings: dict[str, str] = field(
        default_factory=lambda: {"kmod.pins": "pins_below_ceiling"})
    parse_log: None = None
    sip_port: None = None
    matrix_counter: None = None
    version_argv: tuple[str, ...] = ()  # the model's version is the rig's commit
    parse_version: None = None

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        return ServiceSpec(
            name="kmod",
            argv=[sys.executable, str(source / "kmod.py"), "--dir", str(site.state),
                  "--max-targets", str(settings.max_targets)],
            ready=UnixSocketAccepts(site.state / "control.sock"),
        )

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        """Its folder (control socket, status files) is a bind mount at the same path, so
        the relay container and the rig's probes see one folder."""
        local = self.local_spec(settings, site, SOURCES_IN_IMAGE / "kmod")
        return replace(local, argv=["python3", *local.argv[1:]], image=image,
                       volumes={str(site.state): str(site.state)})

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        from rig.probes.kmod import KmodStatusProbe

        # the status file does not show the limit (the real module has none; it runs out of
        # memory): the model's configured one is a counter, a ceiling `tracks` can name
        probe = KmodStatusProbe.for_table(site.state, site.endpoints.table)
        return [replace(probe, constants={"kmod.max_targets": float(settings.max_targets)})]


SERVICE = Kmod()
