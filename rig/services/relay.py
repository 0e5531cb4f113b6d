"""relay: the rig's rtpengine-like media relay (containers/relay), pinned through kmod.

It speaks NG on the run's NG port, pins its bufferpool shards through the kmod model's
table, and logs a `make_shard` line per new shard and a CRIT line before it aborts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from rig.probes import Probe
from rig.probes.logs import parse_relay_line
from rig.series import Series
from rig.services import LogParser, MediaSettings, Peak, Site
from rig.topology import RunningService, ServiceSpec
from rig.topology.wait import NgPing

PAGE = 4096
SOURCES_IN_IMAGE = Path("/opt/rig")
NG_PORT = 2223
# The shard lists the report draws beside the pins: (counter, label).
SHARD_LINES = (
    ("relay.shards_active", "active"),
    ("relay.shards_full", "full"),
    ("relay.shards_free", "free (recycled)"),
)


class RelaySettings(MediaSettings):
    source: str = Field(default="containers/relay", min_length=1,
                        description="folder of the service, from the repo root")
    workers: int = Field(default=4, ge=1, le=64, description="worker threads")
    shard_size: int = Field(
        default=65536, ge=PAGE, le=16 * 1024 * 1024, multiple_of=PAGE, description="bytes per shard"
    )
    timeout: float = Field(default=60, ge=0, le=86400, description=(
        "seconds without signal or RTP after which the relay closes a call itself (0: never)"))


def phantoms(series: Series) -> list[tuple[float, float]]:
    """(t, shards_total - needed shards) where the relay reported all four counters."""
    wanted = ["relay.shards_total", *(name for name, _ in SHARD_LINES)]
    return [
        (s.t, s.values[wanted[0]] - sum(s.values[c] for c in wanted[1:]))
        for s in series.samples
        if all(c in s.values for c in wanted)
    ]


@dataclass(frozen=True)
class Relay:
    name: str = "relay"
    role: str = "media"
    settings_model: type[RelaySettings] = RelaySettings
    requires: tuple[str, ...] = ("kmod",)
    ports: tuple[int, ...] = (NG_PORT,)
    peaks: tuple[Peak, ...] = (Peak("media.sessions", "peak media sessions"),)
    ceilings: dict[str, str] = field(default_factory=dict)
    parse_log: LogParser | None = parse_relay_line
    sip_port: None = None
    matrix_counter: None = None
    version_argv: tuple[str, ...] = ()  # the model's version is the rig's commit
    parse_version: None = None

    def local_spec(self, settings: Any, site: Site, source: Path) -> ServiceSpec:
        endpoints = site.endpoints
        lo, hi = endpoints.relay_rtp_ports
        return ServiceSpec(
            name="relay",
            argv=[
                sys.executable,
                str(source / "relay.py"),
                "--ng", f"{endpoints.host}:{endpoints.ng_port}",
                "--rtp-addr", endpoints.host,
                "--rtp-ports", f"{lo}-{hi}",
                "--workers", str(settings.workers),
                "--shard-size", str(settings.shard_size),
                "--kmod", str(site.state),
                "--table", str(endpoints.table),
                "--timeout", f"{settings.timeout:g}",
            ],
            ready=NgPing(endpoints.host, endpoints.ng_port, endpoints.guard()),
        )

    def container_spec(self, settings: Any, site: Site, image: str) -> ServiceSpec:
        local = self.local_spec(settings, site, SOURCES_IN_IMAGE / "relay")
        return replace(local, argv=["python3", *local.argv[1:]], image=image,
                       volumes={str(site.state): str(site.state)})

    def probes(self, settings: Any, site: Site, running: RunningService) -> list[Probe]:
        from rig.probes.proc import ProcessProbe
        from rig.probes.relay import RelayStatsProbe

        endpoints = site.endpoints
        return [RelayStatsProbe(endpoints.host, endpoints.ng_port,
                                destinations=endpoints.guard()),
                ProcessProbe(running.pid, "relay")]


SERVICE = Relay()
