"""The stock bufferpool on its own, with an in-process pinner: allocation, recycling, counters."""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SHARD = 16384
STATS_KEYS = {
    "shard_size",
    "shards_total",
    "shards_active",
    "shards_full",
    "shards_free",
    "pins",
    "pinned_bytes",
    "live_allocations",
    "live_bytes",
    "make_shard_calls",
}


class FakePinner:
    """Remembers pins like kmod does; fails every pin once `fail_with` is set."""

    def __init__(self) -> None:
        self.pins: dict[int, int] = {}
        self.fail_with: Exception | None = None

    def pin(self, addr: int, size: int) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        assert addr not in self.pins
        self.pins[addr] = size

    def unpin(self, addr: int) -> None:
        del self.pins[addr]


class Logs(list[tuple[str, str]]):
    def __call__(self, level: str, text: str) -> None:
        self.append((level, text))

    def texts(self, level: str) -> list[str]:
        return [text for lvl, text in self if lvl == level]


def reraise(err: Exception) -> None:
    raise err


@pytest.fixture
def bufferpool(import_from: Any, containers_dir: Path) -> ModuleType:
    return import_from(containers_dir / "relay", "bufferpool")


@pytest.fixture
def pinner() -> FakePinner:
    return FakePinner()


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def pool(bufferpool: ModuleType, pinner: FakePinner, logs: Logs) -> Any:
    return bufferpool.BufferPool(SHARD, pinner, logs, on_pin_failure=reraise)


def phantoms(stats: dict[str, int]) -> int:
    needed = stats["shards_active"] + stats["shards_full"] + stats["shards_free"]
    return stats["shards_total"] - needed


def test_first_allocation_pins_one_shard_at_its_real_address(pool: Any, pinner: FakePinner) -> None:
    allocation = pool.alloc(100, "stream_stats")
    shard = allocation.shard
    assert pinner.pins == {shard.address: SHARD}
    ctypes.memset(allocation.address, 0xAB, allocation.size)
    assert shard.buffer[allocation.offset : allocation.offset + allocation.size] == b"\xab" * 104


def test_allocations_are_8_byte_aligned_and_do_not_overlap(pool: Any) -> None:
    allocations = [pool.alloc(size, "ssrc_entry") for size in (1, 13, 8, 100, 3)]
    assert [a.size for a in allocations] == [8, 16, 8, 104, 8]
    assert all(a.address % 8 == 0 for a in allocations)
    spans = sorted((a.address, a.address + a.size) for a in allocations)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("size", [0, -8, SHARD + 1])
def test_bad_allocation_size_is_a_clear_error(pool: Any, size: int) -> None:
    with pytest.raises(ValueError, match=rf"allocation of {size} bytes \(allowed: 1\.\.{SHARD}\)"):
        pool.alloc(size, "stream_stats")


@pytest.mark.parametrize("shard_size", [0, 1000, 4097])
def test_shard_size_must_be_whole_pages(
    bufferpool: ModuleType, pinner: FakePinner, logs: Logs, shard_size: int
) -> None:
    with pytest.raises(ValueError, match="not a positive multiple of 4096"):
        bufferpool.BufferPool(shard_size, pinner, logs)


def test_stats_have_exactly_the_contract_keys(pool: Any) -> None:
    pool.alloc(SHARD, "stream_stats")
    pool.alloc(8, "stream_stats")
    stats = pool.stats()
    assert set(stats) == STATS_KEYS
    assert stats == {
        "shard_size": SHARD,
        "shards_total": 2,
        "shards_active": 1,
        "shards_full": 1,
        "shards_free": 0,
        "pins": 2,
        "pinned_bytes": 2 * SHARD,
        "live_allocations": 2,
        "live_bytes": SHARD + 8,
        "make_shard_calls": 2,
    }


def test_make_shard_line_per_shard(pool: Any, logs: Logs) -> None:
    for _ in range(3):
        pool.alloc(SHARD, "stream_stats")
    lines = logs.texts("INFO")
    assert lines[0] == "make_shard num=1 full=0 space=0 thread=MainThread"
    assert lines[2] == "make_shard num=3 full=2 space=0 thread=MainThread"
    assert len(lines) == 3


def test_full_shard_is_recycled_when_its_allocations_are_freed(
    pool: Any, pinner: FakePinner
) -> None:
    first = [pool.alloc(SHARD // 4, "stream_stats") for _ in range(4)]
    pool.alloc(8, "ssrc_entry")  # does not fit: a second shard becomes current
    for allocation in first:
        pool.free(allocation)
    assert (pool.stats()["shards_free"], pool.stats()["shards_full"]) == (1, 0)
    pool.alloc(SHARD, "payload_type")  # too big for the current shard: takes the recycled one
    stats = pool.stats()
    assert len(pinner.pins) == 2, "the recycled shard is reused, not a new pin"
    assert stats["shards_total"] == 2 and stats["shards_free"] == 0
    assert phantoms(stats) == 0


def test_free_of_a_recycled_shards_allocation_is_refused(pool: Any) -> None:
    allocation = pool.alloc(SHARD, "stream_stats")
    pool.alloc(8, "stream_stats")
    pool.free(allocation)
    with pytest.raises(ValueError, match="double free"):
        pool.free(allocation)


def test_sites_count_live_allocations_and_bytes(pool: Any) -> None:
    stats = [pool.alloc(40, "stream_stats") for _ in range(3)]
    pool.alloc(20, "ssrc_entry")
    pool.free(stats[0])
    assert pool.sites() == {
        "stream_stats": {"count": 2, "bytes": 80},
        "ssrc_entry": {"count": 1, "bytes": 24},
    }
    assert pool.stats()["live_bytes"] == 104


def test_sequential_growth_makes_no_phantoms(pool: Any) -> None:
    for _ in range(200):
        pool.alloc(1000, "stream_stats")
    stats = pool.stats()
    assert stats["shards_total"] == 13
    assert phantoms(stats) == 0


def test_failed_pin_logs_crit_and_calls_the_handler(
    bufferpool: ModuleType, pinner: FakePinner, logs: Logs
) -> None:
    handled: list[Exception] = []
    pool = bufferpool.BufferPool(SHARD, pinner, logs, on_pin_failure=handled.append)
    pinner.fail_with = OSError("Argument list too long (E2BIG)")
    with pytest.raises(OSError):
        pool.alloc(8, "stream_stats")
    assert handled == [pinner.fail_with]
    assert logs == [("CRIT", "Failed to pin shared kernel memory: Argument list too long (E2BIG)")]
    assert pool.stats()["shards_total"] == 0 and pool.stats()["pins"] == 0
