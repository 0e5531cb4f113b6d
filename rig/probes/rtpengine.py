"""Real rtpengine's counters: NG `statistics`, or the CLI's `list totals`.

Both sources give the same `rtpengine.*` names, so a check does not care which one a
run used. The NG reply is the richer one; the CLI needs `rtpengine-ctl` (rtpengine-utils).

From mr26.1 (sipwise/rtpengine 0faa777e1, daemon/statistics.c bpool_stats) the NG reply
also carries the bufferpools: `bufferpools: {main|shared|static: {num_shards, shards:
[{references, size, used}, ...]}}`, read into `rtpengine.bufferpool.<pool>.shards`,
`.empty_shards` (used == 0 and references == 0) and `.bytes_used`. Older daemons
(Debian's 10.5, 12.5, 26.0.1) have none, and then these counters are absent.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.probes import ProbeError
from rig.topology.destinations import Destinations

if TYPE_CHECKING:
    from rig.probes.ng import NgRequester

# NG `statistics` -> counter name, per block.
NG_CURRENT = {
    "sessionsown": "sessions_own",
    "sessionsforeign": "sessions_foreign",
    "sessionstotal": "sessions_total",
    "packetrate": "packet_rate",
    "byterate": "byte_rate",
    "errorrate": "error_rate",
    "media_userspace": "media_userspace",
}
NG_TOTAL = {
    "managedsessions": "managed_sessions",
    "rejectedsessions": "rejected_sessions",
    "regularterminatedsessions": "regular_terminated_sessions",
    "forcedterminatedsessions": "forced_terminated_sessions",
    "timeoutsessions": "timeout_sessions",
    "relayedpackets": "relayed_packets",
    "relayedpacketerrors": "relayed_packet_errors",
    "uptime": "uptime",
}
# `rtpengine-ctl list totals` label -> the same counter names.
CLI_LABELS = {
    "Owned sessions": "sessions_own",
    "Foreign sessions": "sessions_foreign",
    "Total sessions": "sessions_total",
    "Packets per second (total)": "packet_rate",
    "Bytes per second (total)": "byte_rate",
    "Errors per second (total)": "error_rate",
    "Userspace-only media streams": "media_userspace",
    "Total managed sessions": "managed_sessions",
    "Total rejected sessions": "rejected_sessions",
    "Total regular terminated sessions": "regular_terminated_sessions",
    "Total forced terminated sessions": "forced_terminated_sessions",
    "Total timed-out sessions via TIMEOUT": "timeout_sessions",
    "Total relayed packets": "relayed_packets",
    "Total relayed packet errors": "relayed_packet_errors",
    "Uptime of rtpengine": "uptime",
}
CLI_LINE = re.compile(r"^\s*(?P<label>\S.*?)\s*:(?P<value>-?\d+(?:\.\d+)?)(?:\s.*)?$")
CLI_SECTION_END = "Graphite interval statistics"


def _number(value: Any) -> float | None:
    """rtpengine sends some numbers as bencoded strings ("26", "0.508080")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text_keys(block: Any) -> Mapping[str, Any]:
    if not isinstance(block, Mapping):
        return {}
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in block.items()}


BUFFERPOOL_PREFIX = "rtpengine.bufferpool."
BUFFERPOOL_SHARDS = "rtpengine.bufferpool.shards"  # every pool's shards together
BUFFERPOOLS_SINCE = "mr26.1"
# The first release line with lib/bufferpool.c that the rig has run: Debian's 12.5 has it,
# bookworm's 10.5 has none (releases in between were not checked)
BUFFERPOOL_FROM = (12, 0)


@dataclass(frozen=True)
class PoolShards:
    """One bufferpool as the daemon reports it."""

    pool: str
    shards: int
    empty_shards: int  # neither used nor referenced: a shard nothing is in
    bytes_used: int

    def counters(self) -> dict[str, float]:
        base = f"{BUFFERPOOL_PREFIX}{self.pool}"
        return {f"{base}.shards": float(self.shards),
                f"{base}.empty_shards": float(self.empty_shards),
                f"{base}.bytes_used": float(self.bytes_used)}


def parse_bufferpools(block: Any) -> list[PoolShards]:
    """The pools of a `bufferpools` block; [] when there is none (rtpengine before mr26.1).

    `num_shards` is the daemon's count; a reply without it counts the listed shards."""
    pools = []
    for name, pool in _text_keys(block).items():
        fields = _text_keys(pool)
        shards = [_text_keys(shard) for shard in fields.get("shards") or ()
                  if isinstance(shard, Mapping)]
        used = [_number(shard.get("used")) or 0.0 for shard in shards]
        refs = [_number(shard.get("references")) or 0.0 for shard in shards]
        count = _number(fields.get("num_shards"))
        pools.append(PoolShards(
            pool=name,
            shards=int(count if count is not None else len(shards)),
            empty_shards=sum(1 for u, r in zip(used, refs, strict=True) if u == 0 and r == 0),
            bytes_used=int(sum(used)),
        ))
    return pools


def release_line(version: str) -> tuple[int, int] | None:
    """(10, 5) of `10.5.3.5-1+deb12u1`, (26, 0) of `mr26.0.1.26`; None when unreadable."""
    match = re.match(r"^(?:mr)?(\d+)\.(\d+)", version.strip())
    return (int(match[1]), int(match[2])) if match else None


def predates_bufferpool(version: str | None) -> bool:
    """Whether this rtpengine is older than its bufferpool (so it has no shards at all)."""
    line = release_line(version) if version else None
    return line is not None and line < BUFFERPOOL_FROM


def short_version(version: str) -> str:
    """`10.5` of `10.5.3.5-1+deb12u1`: the release line a reader knows."""
    return ".".join(version.split("-")[0].split(".")[:2]) or version


def not_reported(counter: str, version: str | None) -> str | None:
    """Why rtpengine has no `counter` (a bufferpool counter before mr26.1), else None."""
    if not counter.startswith(BUFFERPOOL_PREFIX):
        return None
    which = f"rtpengine {short_version(version)}" if version else "this rtpengine"
    return (f"{counter} not reported by {which} (NG statistics carry bufferpools "
            f"from {BUFFERPOOLS_SINCE} on)")


def ng_statistics_counters(reply: Mapping[Any, Any]) -> dict[str, float]:
    """`rtpengine.*` counters from a decoded NG `statistics` reply, bufferpools included
    where the daemon reports them (inside `statistics`, or beside it)."""
    top = _text_keys(reply)
    stats = _text_keys(top.get("statistics"))
    if not stats:
        raise ValueError("NG reply has no 'statistics' block")
    counters: dict[str, float] = {}
    pools = parse_bufferpools(stats.get("bufferpools", top.get("bufferpools")))
    for pool in pools:
        counters.update(pool.counters())
    if pools:
        counters[BUFFERPOOL_SHARDS] = float(sum(pool.shards for pool in pools))
    for block_name, names in (("currentstatistics", NG_CURRENT), ("totalstatistics", NG_TOTAL)):
        block = _text_keys(stats.get(block_name))
        for key, name in names.items():
            value = _number(block.get(key))
            if value is not None:
                counters[f"rtpengine.{name}"] = value
    if "rtpengine.sessions_own" not in counters:
        raise ValueError("NG statistics reply has no currentstatistics.sessionsown")
    return counters


def parse_list_totals(text: str) -> dict[str, float]:
    """`rtpengine.*` counters from `rtpengine-ctl list totals`.

    The Graphite section at the end repeats labels with interval values: it is skipped.
    """
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(CLI_SECTION_END):
            break
        match = CLI_LINE.match(line)
        if match and match["label"] in CLI_LABELS:
            counters[f"rtpengine.{CLI_LABELS[match['label']]}"] = float(match["value"])
    if "rtpengine.sessions_own" not in counters:
        raise ValueError("not rtpengine 'list totals' output: no 'Owned sessions' line")
    return counters


@dataclass
class RtpengineNgProbe:
    """NG `statistics` over UDP: works for a local or a containerised rtpengine alike."""

    host: str
    port: int
    timeout: float = 0.5
    name: str = "rtpengine"
    _ng: NgRequester | None = field(default=None, init=False, repr=False)
    destinations: Destinations = field(default_factory=Destinations)  # loopback only

    def read(self) -> dict[str, float]:
        from rig.probes.ng import NgRequester  # imported late, like every NG user

        self._ng = self._ng or NgRequester(self.host, self.port, self.timeout,
                                            self.destinations)
        try:
            reply = self._ng.request({"command": "statistics"})
        except Exception as exc:
            raise ProbeError(f"rtpengine statistics: {exc}") from exc
        try:
            return ng_statistics_counters(reply)
        except ValueError as exc:
            raise ProbeError(f"rtpengine statistics: {exc}") from exc


@dataclass
class RtpengineCliProbe:
    """`rtpengine-ctl -ip HOST -port PORT list totals` against the daemon's CLI port."""

    host: str
    port: int
    ctl: Sequence[str] = ("rtpengine-ctl",)
    timeout: float = 2.0
    name: str = "rtpengine"

    def read(self) -> dict[str, float]:
        argv = [*self.ctl, "-ip", self.host, "-port", str(self.port), "list", "totals"]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeError(f"rtpengine-ctl: {exc}") from exc
        if result.returncode != 0:
            reason = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
            raise ProbeError(f"rtpengine-ctl: {reason}")
        try:
            return parse_list_totals(result.stdout)
        except ValueError as exc:
            raise ProbeError(f"rtpengine-ctl: {exc}") from exc
