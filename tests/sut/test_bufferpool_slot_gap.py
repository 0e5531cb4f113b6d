"""The slot gap of a fix that makes a shard current before it has a slot, forced by a hook.

Deterministic: the `before_insert` hook holds the first thread that makes a shard just before
it takes a slot. Meanwhile the test's thread fills that thread's shard (if it is already
current), overflows it and frees it again, so a shard without a slot would be recycled
through `_slots[-1]`: its buffer then counts as full (the old object, put in its slot later)
and as free (the recycled one) at once.

`data/relay-recheck-after-pin-slot-gap.patch` is the recheck fix as it shipped before, kept
so the test below is shown to fail where the gap exists.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

SHARD = 16384
SLOT_GAP_PATCH = str(Path(__file__).parent / "data" / "relay-recheck-after-pin-slot-gap.patch")
RECHECK_PATCH = "relay-recheck-after-pin.patch"


class HoldFirstInsert:
    """`before_insert` hook: holds the first caller until released; later callers pass."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()

    def __call__(self) -> None:
        if self._first.acquire(blocking=False):
            self.held.set()
            assert self.release.wait(timeout=10), "the test never released the held insert"


class FakePinner:
    def __init__(self) -> None:
        self.pins: set[int] = set()

    def pin(self, addr: int, size: int) -> None:
        assert addr not in self.pins
        self.pins.add(addr)

    def unpin(self, addr: int) -> None:
        self.pins.remove(addr)


def reraise(err: Exception) -> None:
    raise err


def counted_twice(stats: dict[str, int]) -> int:
    """Shards counted as more than one of active, full or free (0 in a sound pool)."""
    counted = stats["shards_active"] + stats["shards_full"] + stats["shards_free"]
    return max(0, counted - stats["shards_total"])


def phantoms(stats: dict[str, int]) -> int:
    counted = stats["shards_active"] + stats["shards_full"] + stats["shards_free"]
    return max(0, stats["shards_total"] - counted)


def fill_and_drain_while_an_insert_is_held(bufferpool: Any) -> tuple[dict[str, int], FakePinner]:
    hold = HoldFirstInsert()
    pinner = FakePinner()
    pool = bufferpool.BufferPool(
        SHARD,
        pinner,
        lambda level, text: None,
        hooks=bufferpool.Hooks(before_insert=hold),
        on_pin_failure=reraise,
    )
    errors: list[BaseException] = []

    def make_the_first_shard() -> None:
        try:
            pool.free(pool.alloc(64, "held"))
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    holder = threading.Thread(target=make_the_first_shard, name="holder", daemon=True)
    holder.start()
    try:
        assert hold.held.wait(timeout=10), "the first shard's insert was never reached"
        whole = pool.alloc(SHARD, "fill")  # from the held shard if it is current already
        overflow = pool.alloc(64, "overflow")  # marks that shard full, makes the next one
        pool.free(whole)  # its last allocation: the full shard is recycled
    finally:
        hold.release.set()
        holder.join(timeout=10)
    assert not holder.is_alive(), "the held thread hung"
    if errors:
        raise errors[0]
    pool.free(overflow)
    return pool.stats(), pinner


def test_recheck_fix_recycles_a_shard_only_through_its_own_slot(
    patched_tree: Any, import_from: Any
) -> None:
    bufferpool = import_from(patched_tree(RECHECK_PATCH) / "containers" / "relay", "bufferpool")
    stats, pinner = fill_and_drain_while_an_insert_is_held(bufferpool)
    assert counted_twice(stats) == 0, stats
    assert phantoms(stats) == 0, "the held thread lost the swap and must give its shard back"
    assert stats["shards_total"] == stats["pins"] == len(pinner.pins) == 2, stats
    assert (stats["shards_active"], stats["shards_full"], stats["shards_free"]) == (1, 0, 1)


def test_the_hold_finds_the_slot_gap_of_the_former_recheck_fix(
    patched_tree: Any, import_from: Any
) -> None:
    bufferpool = import_from(patched_tree(SLOT_GAP_PATCH) / "containers" / "relay", "bufferpool")
    stats, _ = fill_and_drain_while_an_insert_is_held(bufferpool)
    assert counted_twice(stats) == 1, stats
    assert (stats["shards_full"], stats["shards_free"]) == (1, 1), "one buffer, full and free"


def test_the_stock_pool_held_at_its_insert_keeps_a_phantom_but_counts_nothing_twice(
    patched_tree: Any, import_from: Any
) -> None:
    bufferpool = import_from(patched_tree() / "containers" / "relay", "bufferpool")
    stats, pinner = fill_and_drain_while_an_insert_is_held(bufferpool)
    assert counted_twice(stats) == 0, stats
    assert phantoms(stats) == 1 and len(pinner.pins) == stats["pins"] == 3, stats

