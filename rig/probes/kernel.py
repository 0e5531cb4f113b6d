"""Counters of the real kernel: slab caches, conntrack and the route cache.

`/proc/slabinfo` is the host's (readable by root only); conntrack and the route cache are
per network namespace, read through `/proc/<pid>/net` of a process inside the namespace
(the relay), so the rig reads another namespace's numbers without entering it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rig.probes import ProbeError

SLABINFO = Path("/proc/slabinfo")
CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")


@dataclass(frozen=True)
class SlabCache:
    active: int
    total: int


def parse_slabinfo(text: str) -> dict[str, SlabCache]:
    """`{cache: active and total objects}` of a `slabinfo - version: 2.x` text."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("slabinfo - version: 2."):
        raise ValueError("not a slabinfo 2.x file (first line)")
    caches = {}
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        words = line.split()
        if len(words) < 3 or not (words[1].isdigit() and words[2].isdigit()):
            raise ValueError(f"malformed slabinfo line {line[:60]!r}")
        caches[words[0]] = SlabCache(int(words[1]), int(words[2]))
    return caches


def parse_stat_entries(text: str) -> int:
    """The `entries` column of a `/proc/net/stat/*` table (hex, the same on every CPU row)."""
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].split()[:1] != ["entries"]:
        raise ValueError("no 'entries' column")
    try:
        return int(lines[1].split()[0], 16)
    except (IndexError, ValueError):
        raise ValueError(f"malformed row {lines[1][:60]!r}") from None


@dataclass
class SlabProbe:
    """Active and total objects of the named caches: `slab.<cache>.active|total`."""

    caches: Sequence[str]
    path: Path = SLABINFO
    name: str = "slab"

    def read(self) -> dict[str, float]:
        try:
            text = self.path.read_text()
        except PermissionError:
            raise ProbeError(f"{self.path} is readable by root only") from None
        except OSError as exc:
            raise ProbeError(f"{self.path}: {exc.strerror}") from exc
        try:
            caches = parse_slabinfo(text)
        except ValueError as exc:
            raise ProbeError(f"{self.path}: {exc}") from exc
        values: dict[str, float] = {}
        for cache in self.caches:
            found = caches.get(cache)
            if found is None:
                # SLUB merges caches of one object size unless booted with slab_nomerge
                raise ProbeError(f"{self.path}: no cache {cache!r} (merged into another?)")
            values[f"slab.{cache}.active"] = float(found.active)
            values[f"slab.{cache}.total"] = float(found.total)
        return values


@dataclass
class NetnsProbe:
    """Conntrack entries (`conntrack.count`, `conntrack.listed`, `conntrack.max`) and the
    IPv4 route cache's entries (`route.cache_entries`, where the kernel has the table) of
    the network namespace that process `pid` is in.

    Each read first lists the namespace's table (`/proc/<pid>/net/nf_conntrack`, what
    `conntrack -L` shows: `conntrack.listed`, the entries that have not expired), then reads
    the kernel's count. Listing drops the expired entries it passes, as `conntrack -L` does,
    so the count follows the configured timeouts rather than the pace of the garbage
    collector (which on 6.x kernels may come back to a table only after a minute). A kernel
    without that file (no CONFIG_NF_CONNTRACK_PROCFS) gives the count alone.
    """

    pid: int
    name: str = "netns"
    max_path: Path = CONNTRACK_MAX
    proc: Path = Path("/proc")
    _max: float | None = field(default=None, init=False)

    def read(self) -> dict[str, float]:
        net = self.proc / str(self.pid) / "net"
        stat = net / "stat"
        values: dict[str, float] = {}
        try:
            with open(net / "nf_conntrack", "rb") as listing:
                values["conntrack.listed"] = float(sum(1 for _ in listing))
        except OSError:
            pass  # no listing on this kernel (or the process is gone: said just below)
        try:
            values["conntrack.count"] = float(parse_stat_entries(
                (stat / "nf_conntrack").read_text()))
        except FileNotFoundError:
            raise ProbeError(f"{stat}/nf_conntrack missing: no conntrack in that "
                             "namespace (nf_conntrack not loaded, or the process is gone)"
                             ) from None
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{stat}/nf_conntrack: {exc}") from exc
        if self._max is None:
            try:
                self._max = float(self.max_path.read_text().strip())
            except (OSError, ValueError) as exc:
                raise ProbeError(f"{self.max_path}: {exc}") from exc
        values["conntrack.max"] = self._max
        try:
            values["route.cache_entries"] = float(parse_stat_entries(
                (stat / "rt_cache").read_text()))
        except (OSError, ValueError):
            pass  # kernels without the table: the counter is simply absent
        return values
