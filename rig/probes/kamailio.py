"""Kamailio's memory counters, read over its control socket with `kamcmd`.

Three RPCs: `core.shmmem` (the shared pool), `pkg.stats` (one private pool per process)
and `mod.mem_stats all all` (bytes per module, from the allocator's debug records; only
meaningful with a manager that keeps them, `-x qm`/`-X qm`). The parsers take kamcmd's
text output and know nothing of processes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from rig.probes import ProbeError

FIELD = re.compile(r"^\s*(?P<key>[^:{}]+?):\s*(?P<value>.*?)\s*$")
MODULE = re.compile(r"^Module:\s*(?P<name>\S+)\s*$")
SHM_KEYS = ("total", "free", "used", "real_used", "max_used", "fragments")


@dataclass(frozen=True)
class ShmStats:
    total: int
    free: int
    used: int
    real_used: int
    max_used: int
    fragments: int


@dataclass(frozen=True)
class PkgStats:
    """One process's private memory pool (`pkg.stats` entry)."""

    entry: int
    pid: int
    rank: int
    used: int
    free: int
    real_used: int
    total_size: int
    total_frags: int
    desc: str


@dataclass(frozen=True)
class ModuleMemory:
    """Bytes a module holds, by pool. `sites` is the per call-site breakdown."""

    pkg: int
    shm: int
    sites: dict[str, int] = field(default_factory=dict, compare=False)


def parse_struct_fields(text: str) -> list[list[tuple[str, str]]]:
    """kamcmd prints each struct as `{`, one `key: value` per line, `}`. Keys may repeat."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "{":
            current = []
        elif stripped == "}":
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None and (match := FIELD.match(line)):
            current.append((match["key"], match["value"]))
    return blocks


def parse_blocks(text: str) -> list[dict[str, str]]:
    return [dict(fields) for fields in parse_struct_fields(text)]


def _site_bytes(fields: list[tuple[str, str]], pool: str) -> dict[str, int]:
    """Bytes per allocation site; a site listed twice (one per allocation) is summed."""
    sites: dict[str, int] = {}
    for key, value in fields:
        if key != "Total" and value.isdigit():
            sites[f"{pool}:{key}"] = sites.get(f"{pool}:{key}", 0) + int(value)
    return sites


def _int(block: dict[str, str], key: str, what: str) -> int:
    try:
        return int(block[key])
    except KeyError:
        raise ValueError(f"{what}: no '{key}' field") from None
    except ValueError:
        raise ValueError(f"{what}: '{key}' is not a number: {block[key]!r}") from None


def parse_shmmem(text: str) -> ShmStats:
    blocks = parse_blocks(text)
    if len(blocks) != 1:
        raise ValueError(f"core.shmmem: expected one struct, got {len(blocks)}")
    values = {key: _int(blocks[0], key, "core.shmmem") for key in SHM_KEYS}
    return ShmStats(**values)


def parse_pkg_stats(text: str) -> list[PkgStats]:
    entries = []
    for block in parse_blocks(text):
        numbers = {
            key: _int(block, key, "pkg.stats")
            for key in ("entry", "pid", "rank", "used", "free", "real_used", "total_size",
                        "total_frags")
        }
        entries.append(PkgStats(**numbers, desc=block.get("desc", "")))
    if not entries:
        raise ValueError("pkg.stats: no process entries")
    return entries


def parse_mod_mem_stats(text: str) -> dict[str, ModuleMemory]:
    """`mod.mem_stats <module|all> all`: per module, a pkg struct then a shm struct."""
    modules: dict[str, ModuleMemory] = {}
    name: str | None = None
    chunk: list[str] = []

    def finish() -> None:
        if name is None:
            return
        blocks = parse_struct_fields("\n".join(chunk))
        if len(blocks) != 2:
            raise ValueError(f"mod.mem_stats: module {name}: expected pkg and shm structs")
        pkg, shm = blocks
        modules[name] = ModuleMemory(
            pkg=_int(dict(pkg), "Total", f"mod.mem_stats {name}"),
            shm=_int(dict(shm), "Total", f"mod.mem_stats {name}"),
            sites={**_site_bytes(pkg, "pkg"), **_site_bytes(shm, "shm")},
        )

    for line in text.splitlines():
        match = MODULE.match(line)
        if match:
            finish()
            name, chunk = match["name"], []
        else:
            chunk.append(line)
    finish()
    if not modules:
        raise ValueError("mod.mem_stats: no 'Module:' section")
    return modules


def kamailio_counters(
    shm: ShmStats, pkg: Sequence[PkgStats], modules: dict[str, ModuleMemory] | None = None
) -> dict[str, float]:
    """`kamailio.*` counters. Processes are named by their pkg.stats entry number, which is
    stable across runs of one config (pids are not)."""
    counters = {f"kamailio.shm_{key}": float(getattr(shm, key)) for key in SHM_KEYS}
    for proc in pkg:
        counters[f"kamailio.pkg_real_used.{proc.entry}"] = float(proc.real_used)
        counters[f"kamailio.pkg_frags.{proc.entry}"] = float(proc.total_frags)
    counters["kamailio.pkg_real_used_max"] = float(max(p.real_used for p in pkg))
    counters["kamailio.pkg_real_used_sum"] = float(sum(p.real_used for p in pkg))
    for name, memory in (modules or {}).items():
        counters[f"kamailio.mod.{name}.pkg"] = float(memory.pkg)
        counters[f"kamailio.mod.{name}.shm"] = float(memory.shm)
    return counters


@dataclass
class KamailioProbe:
    """Runs kamcmd against the ctl socket (`unix:PATH` or `udp:HOST:PORT`).

    `kamcmd` is the command prefix, so a containerised Kamailio can be read with
    `("docker", "exec", NAME, "kamcmd")` when the host has no kamcmd.
    """

    ctl: str
    kamcmd: Sequence[str] = ("kamcmd",)
    modules: bool = True
    timeout: float = 2.0
    name: str = "kamailio"

    def _rpc(self, *command: str) -> str:
        argv = [*self.kamcmd, "-s", self.ctl, *command]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeError(f"kamcmd {command[0]}: {exc}") from exc
        if result.returncode != 0:
            reason = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()
            raise ProbeError(f"kamcmd {command[0]}: {reason[-1]}")
        return result.stdout

    def read(self) -> dict[str, float]:
        try:
            shm = parse_shmmem(self._rpc("core.shmmem"))
            pkg = parse_pkg_stats(self._rpc("pkg.stats"))
            modules = (
                parse_mod_mem_stats(self._rpc("mod.mem_stats", "all", "all"))
                if self.modules
                else None
            )
        except ValueError as exc:
            raise ProbeError(str(exc)) from exc
        return kamailio_counters(shm, pkg, modules)
