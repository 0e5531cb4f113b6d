"""The `statistics` reply: rtpengine's own block plus the model relay's pool and stream counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from media import STREAM_SITES

SITES = tuple(site for site, _ in STREAM_SITES)


@dataclass(frozen=True)
class Traffic:
    sessions: int
    streams: int
    packets_relayed: int
    bytes_relayed: int
    packets_dropped: int
    deleted_sessions: int
    timeout_sessions: int = 0
    kernel_streams: int = 0  # streams with a forwarding target in the kernel module


class RateMeter:
    """Per-second rate of a growing total, over the time since the previous full second."""

    def __init__(self) -> None:
        self._since: tuple[float, int] | None = None
        self._rate = 0

    def observe(self, now: float, total: int) -> int:
        if self._since is None:
            self._since = (now, total)
            return 0
        then, before = self._since
        if now - then >= 1.0:
            self._rate = round((total - before) / (now - then))
            self._since = (now, total)
        return self._rate


def all_sites(sites: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The pool's histogram with every stream site present, zero when nothing is live."""
    merged = {site: {"count": 0, "bytes": 0} for site in SITES}
    for site, numbers in sites.items():
        merged[site] = {"count": int(numbers["count"]), "bytes": int(numbers["bytes"])}
    return merged


def statistics_reply(
    traffic: Traffic, rates: tuple[int, int, int], uptime: float,
    bufferpool: dict[str, int], sites: dict[str, dict[str, int]],
) -> dict[str, Any]:
    packetrate, byterate, errorrate = rates
    current = {
        "sessionsown": traffic.sessions,
        "sessionsforeign": 0,
        "sessionstotal": traffic.sessions,
        "transcodedmedia": 0,
        "packetrate": packetrate,
        "byterate": byterate,
        "errorrate": errorrate,
        "packetrate_user": packetrate,
        "byterate_user": byterate,
        "errorrate_user": errorrate,
        "packetrate_kernel": 0,
        "byterate_kernel": 0,
        "errorrate_kernel": 0,
        "media_userspace": traffic.streams,
        "media_kernel": traffic.kernel_streams,
        "media_mixed": 0,
    }
    total = {
        "uptime": str(int(uptime)),
        "managedsessions": traffic.sessions + traffic.deleted_sessions,
        "regularterminatedsessions": traffic.deleted_sessions,
        "timeoutsessions": traffic.timeout_sessions,
        "relayedpackets": traffic.packets_relayed,
        "relayedbytes": traffic.bytes_relayed,
        "relayedpacketerrors": traffic.packets_dropped,
        "relayedpackets_user": traffic.packets_relayed,
        "relayedbytes_user": traffic.bytes_relayed,
        "relayedpacketerrors_user": traffic.packets_dropped,
        "relayedpackets_kernel": 0,
        "relayedbytes_kernel": 0,
        "relayedpacketerrors_kernel": 0,
    }
    return {
        "result": "ok",
        "statistics": {"currentstatistics": current, "totalstatistics": total},
        "bufferpool": dict(bufferpool),
        "allocation_sites": all_sites(sites),
        "sessions": traffic.sessions,
        "streams": traffic.streams,
        "kernel_streams": traffic.kernel_streams,
        "packets_relayed": traffic.packets_relayed,
        "bytes_relayed": traffic.bytes_relayed,
        "packets_dropped": traffic.packets_dropped,
    }


def dump_lines(traffic: Traffic, bufferpool: dict[str, int],
               sites: dict[str, dict[str, int]]) -> list[str]:
    """The SIGUSR1 dump: one `statistics` line, then one `alloc_site` line per site."""
    numbers = {
        "sessions": traffic.sessions, "streams": traffic.streams,
        "packets_relayed": traffic.packets_relayed, "packets_dropped": traffic.packets_dropped,
        **bufferpool,
    }
    lines = ["statistics " + " ".join(f"{key}={value}" for key, value in numbers.items())]
    for site, entry in all_sites(sites).items():
        lines.append(f"alloc_site site={site} count={entry['count']} bytes={entry['bytes']}")
    return lines
