"""The embedded default system under test: the kmod model and the model relay, as processes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rig.topology import Endpoints, ServiceSpec
from rig.topology.wait import NgPing, UnixSocketAccepts


@dataclass(frozen=True)
class RelaySettings:
    workers: int
    shard_size: int


def kmod_spec(source: Path, state_dir: Path) -> ServiceSpec:
    return ServiceSpec(
        name="kmod",
        argv=[sys.executable, str(source / "kmod.py"), "--dir", str(state_dir)],
        ready=UnixSocketAccepts(state_dir / "control.sock"),
    )


def relay_spec(
    source: Path, state_dir: Path, endpoints: Endpoints, settings: RelaySettings
) -> ServiceSpec:
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
            "--kmod", str(state_dir),
            "--table", str(endpoints.table),
        ],
        ready=NgPing(endpoints.host, endpoints.ng_port),
    )
