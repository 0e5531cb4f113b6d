"""rtpengine's bufferpool shards seen from outside: an estimate from the daemon's memory map.

Without the kernel module (`--table=-1`) each shard is an `aligned_alloc` of 16 MiB with
16 MiB alignment. glibc serves it from an anonymous read-write mmap of the size plus the
alignment (32 MiB and a page) and keeps all of it mapped. Adjacent mappings of the same
kind merge into one line of /proc/PID/maps, so the lines are not counted: the sizes of the
large anonymous rw mappings are summed, and the sum is divided by what one shard maps.

glibc's per-thread arenas are anonymous too: each is a 64 MiB reservation aligned to 64
MiB, a rw head and a `---p` rest. Those bytes are left out, the rw head included. Thread
stacks (8 MiB, each behind a guard page) and the `[heap]` stay below the size threshold or
carry a name. What is left is an estimate: any other large anonymous allocation of the
daemon counts too, which is why a check looks at its growth, not at its level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rig.probes import ProbeError

MIB = 1024 * 1024
SHARD_BYTES = 16 * MIB
SHARD_MAPPING_BYTES = 2 * SHARD_BYTES  # aligned_alloc(16 MiB, 16 MiB): size + alignment
LARGE_BYTES = SHARD_BYTES  # a mapping smaller than one shard holds none
ARENA_BYTES = 64 * MIB  # glibc's HEAP_MAX_SIZE on 64-bit
MAPS_SHARDS = "rtpengine.maps.shards_estimate"


@dataclass(frozen=True)
class MapLine:
    start: int
    end: int
    perms: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def anonymous(self) -> bool:
        return self.inode == 0 and not self.path


@dataclass(frozen=True)
class ShardEstimate:
    """The large anonymous rw bytes outside glibc's arenas, and the shards they make."""

    anon_rw_bytes: int
    mappings: int
    arena_bytes: int

    @property
    def shards(self) -> int:
        return self.anon_rw_bytes // SHARD_MAPPING_BYTES

    def counters(self, prefix: str = "rtpengine.maps") -> dict[str, float]:
        return {f"{prefix}.anon_rw_bytes": float(self.anon_rw_bytes),
                f"{prefix}.anon_rw_mappings": float(self.mappings),
                f"{prefix}.arena_bytes": float(self.arena_bytes),
                f"{prefix}.shards_estimate": float(self.shards)}


def parse_maps(text: str) -> list[MapLine]:
    """The lines of /proc/PID/maps: `start-end perms offset dev inode [path]`."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(maxsplit=5)
        if not fields:
            continue
        try:
            start, end = (int(part, 16) for part in fields[0].split("-"))
            lines.append(MapLine(start, end, fields[1], int(fields[4]),
                                 fields[5].strip() if len(fields) > 5 else ""))
        except (ValueError, IndexError):
            raise ValueError(f"line {number} is not a memory map line: {line[:80]!r}") from None
    return lines


def arena_ranges(lines: list[MapLine]) -> list[tuple[int, int]]:
    """glibc arenas: the 64 MiB ending where an anonymous `---p` reservation ends on a
    64 MiB boundary (the rw head below it is the arena's used part)."""
    return [(line.end - ARENA_BYTES, line.end) for line in lines
            if line.anonymous and line.perms.startswith("---") and line.end % ARENA_BYTES == 0
            and line.size < ARENA_BYTES]


def _outside(line: MapLine, ranges: list[tuple[int, int]]) -> int:
    inside = sum(max(0, min(line.end, hi) - max(line.start, lo)) for lo, hi in ranges)
    return line.size - inside


def estimate_shards(text: str) -> ShardEstimate:
    """The shard estimate of one /proc/PID/maps text."""
    lines = parse_maps(text)
    arenas = arena_ranges(lines)
    rw = [line for line in lines if line.anonymous and line.perms.startswith("rw")]
    outside = [_outside(line, arenas) for line in rw]
    large = [size for size in outside if size >= LARGE_BYTES]
    arena_rw = sum(line.size for line in rw) - sum(outside)
    return ShardEstimate(anon_rw_bytes=sum(large), mappings=len(large), arena_bytes=arena_rw)


@dataclass
class MapsShardProbe:
    """The shard estimate of a running rtpengine (any process, given its pid)."""

    pid: int
    name: str = "rtpengine-maps"
    prefix: str = "rtpengine.maps"

    def read(self) -> dict[str, float]:
        path = Path(f"/proc/{self.pid}/maps")
        try:
            return estimate_shards(path.read_text()).counters(self.prefix)
        except OSError as exc:
            raise ProbeError(f"{path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ProbeError(f"{path}: {exc}") from exc
