"""The relay's own counters over NG `statistics`: sessions, shard lists, live allocations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.probes import ProbeError
from rig.topology.destinations import Destinations

if TYPE_CHECKING:
    from rig.probes.ng import NgRequester

BUFFERPOOL_KEYS = (
    "shards_total",
    "shards_active",
    "shards_full",
    "shards_free",
    "pins",
    "pinned_bytes",
    "live_allocations",
    "live_bytes",
    "make_shard_calls",
)
TOP_KEYS = ("sessions", "streams", "kernel_streams", "packets_relayed", "packets_dropped")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes | str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def relay_counters(reply: Mapping[str, Any]) -> dict[str, float]:
    """Flatten a `statistics` reply of the model relay into `relay.*` counters, its
    allocation-site histogram into `relay.site.<site>.count|bytes`.

    A real rtpengine reply has no bufferpool block; its session counts still come through.
    """
    counters: dict[str, float] = {}
    pool = reply.get("bufferpool") or {}
    for key in BUFFERPOOL_KEYS:
        value = _number(pool.get(key))
        if value is not None:
            counters[f"relay.{key}"] = value
    for key in TOP_KEYS:
        value = _number(reply.get(key))
        if value is not None:
            counters[f"relay.{key}"] = value
    for site, numbers in (reply.get("allocation_sites") or {}).items():
        name = site.decode() if isinstance(site, bytes) else str(site)
        for what in ("count", "bytes"):
            value = _number((numbers or {}).get(what))
            if value is not None:
                counters[f"relay.site.{name}.{what}"] = value
    current = (reply.get("statistics") or {}).get("currentstatistics") or {}
    for key in ("sessionsown", "sessionstotal"):
        value = _number(current.get(key))
        if value is not None:
            counters[f"relay.{key}"] = value
    return counters


@dataclass
class RelayStatsProbe:
    host: str
    port: int
    timeout: float = 0.5
    name: str = "relay"
    _ng: NgRequester | None = field(default=None, init=False, repr=False)
    destinations: Destinations = field(default_factory=Destinations)  # loopback only

    def read(self) -> dict[str, float]:
        from rig.probes.ng import NgRequester

        self._ng = self._ng or NgRequester(self.host, self.port, self.timeout,
                                            self.destinations)
        try:
            reply = self._ng.request({"command": "statistics"})
        except Exception as exc:
            raise ProbeError(f"relay statistics: {exc}") from exc
        return relay_counters(reply)
