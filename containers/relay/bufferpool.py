"""The relay's shard bufferpool: per-stream state bump-allocated from pinned shards.

A model of rtpengine's bufferpool since bcbe751de ("mostly lock-free"): shards live in an
array of slots filled by compare-and-swap, `current` is the shard being filled, and full
shards whose allocations are all freed are recycled through a lock-free free list. Every new
shard is pinned in the kernel module (kmod) before it joins the pool. No lock is held across
the scan, pin and insert steps; the only locks are inside the atomic cells.

The stock order pins before it inserts, so threads that find "no room" at the same instant
each pin and keep a shard (phantoms). The fixes are patches under scenarios/patches/.
Standard library only.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from atomic import AtomicCounter, AtomicRef

PAGE_SIZE = 4096
ALIGNMENT = 8
MAX_SLOTS = 1024


class Pinner(Protocol):
    """Pins memory in the kernel module; raises on failure (KmodClient is one)."""

    def pin(self, addr: int, size: int) -> None: ...

    def unpin(self, addr: int) -> None: ...


Log = Callable[[str, str], None]


@dataclass(frozen=True)
class Hooks:
    """Test hooks; `after_no_room` runs after a thread found no room anywhere, before it
    makes a shard (so a test can line threads up at the fill cliff); `before_insert` runs
    when a thread is about to put its new, pinned shard into a slot (so a test can hold it
    there while others allocate)."""

    after_no_room: Callable[[], None] | None = None
    before_insert: Callable[[], None] | None = None


def fatal_pin_failure(err: Exception) -> None:
    """What the daemon does when a pin fails (the pool has logged the CRIT line): abort()."""
    sys.stderr.flush()
    os.abort()


class Shard:
    """One pinned buffer, bump-allocated from `head`.

    Recycling puts a new Shard object over the same buffer, so a thread holding a stale
    reference can never win a compare-and-swap against the reused shard (no ABA).
    """

    def __init__(self, buffer: mmap.mmap, address: int, size: int) -> None:
        self.buffer = buffer
        self.address = address
        self.size = size
        self.slot = -1
        self.head = AtomicCounter(0)
        self.live = AtomicCounter(0)
        self.full = False
        self.recycled: AtomicRef[bool] = AtomicRef(False)


@dataclass(frozen=True, eq=False)
class Allocation:
    """A live allocation: `size` bytes (8-byte aligned) at `offset` in `shard`."""

    shard: Shard
    offset: int
    size: int
    site: str

    @property
    def address(self) -> int:
        return self.shard.address + self.offset


@dataclass(frozen=True)
class _FreeNode:
    shard: Shard
    next: _FreeNode | None


class _SiteCounters:
    def __init__(self) -> None:
        self.count = AtomicCounter()
        self.bytes = AtomicCounter()


class BufferPool:
    """Allocations of per-stream state from shards of `shard_size` bytes pinned by `pinner`."""

    def __init__(
        self,
        shard_size: int,
        pinner: Pinner,
        log: Log,
        hooks: Hooks | None = None,
        on_pin_failure: Callable[[Exception], None] = fatal_pin_failure,
    ) -> None:
        if shard_size <= 0 or shard_size % PAGE_SIZE:
            raise ValueError(f"shard size {shard_size} is not a positive multiple of {PAGE_SIZE}")
        self.shard_size = shard_size
        self._pinner = pinner
        self._log = log
        self._hooks = hooks or Hooks()
        self._on_pin_failure = on_pin_failure
        self._slots: list[AtomicRef[Shard | None]] = [AtomicRef(None) for _ in range(MAX_SLOTS)]
        self._current: AtomicRef[Shard | None] = AtomicRef(None)
        self._free: AtomicRef[_FreeNode | None] = AtomicRef(None)
        self._pins = AtomicCounter()
        self._make_shard_calls = AtomicCounter()
        self._live_allocations = AtomicCounter()
        self._live_bytes = AtomicCounter()
        self._sites: dict[str, _SiteCounters] = {}

    def alloc(self, size: int, site: str) -> Allocation:
        """Bump-allocate `size` bytes tagged with `site`; makes (and pins) a shard if needed."""
        size = self._aligned(size)
        while True:
            seen = self._current.load()
            allocation = self._bump(seen, size, site)
            if allocation is not None:
                return allocation
            if self._reuse_recycled(seen):
                continue
            if self._hooks.after_no_room is not None:
                self._hooks.after_no_room()
            shard = self._make_shard(seen)
            if shard is not None:
                allocation = self._bump(shard, size, site)
                if allocation is not None:
                    return allocation

    def free(self, allocation: Allocation) -> None:
        shard = allocation.shard
        if shard.recycled.load():
            raise ValueError("free of an allocation whose shard was recycled (double free?)")
        self._live_allocations.add(-1)
        self._live_bytes.add(-allocation.size)
        counters = self._site(allocation.site)
        counters.count.add(-1)
        counters.bytes.add(-allocation.size)
        self._release(shard)

    def stats(self) -> dict[str, int]:
        """The `bufferpool` block of the relay's NG statistics reply."""
        shards = self._shards()
        current = self._current.load()
        return {
            "shard_size": self.shard_size,
            "shards_total": len(shards),
            "shards_active": int(isinstance(current, Shard) and not current.full),
            "shards_full": sum(1 for shard in shards if shard.full),
            "shards_free": self._free_count(),
            "pins": self._pins.load(),
            "pinned_bytes": self._pins.load() * self.shard_size,
            "live_allocations": self._live_allocations.load(),
            "live_bytes": self._live_bytes.load(),
            "make_shard_calls": self._make_shard_calls.load(),
        }

    def sites(self) -> dict[str, dict[str, int]]:
        """Live allocations per allocation site: `{site: {"count": n, "bytes": b}}`."""
        return {
            site: {"count": counters.count.load(), "bytes": counters.bytes.load()}
            for site, counters in list(self._sites.items())
        }

    def _aligned(self, size: int) -> int:
        if not 0 < size <= self.shard_size:
            raise ValueError(f"allocation of {size} bytes (allowed: 1..{self.shard_size})")
        return -(-size // ALIGNMENT) * ALIGNMENT

    def _bump(self, shard: Shard | None, size: int, site: str) -> Allocation | None:
        if shard is None or shard.full:
            return None
        # Count the allocation before claiming space, so a concurrent free of the shard's
        # last allocation cannot recycle it under us.
        shard.live.add(1)
        end = shard.head.add(size)
        if end > shard.size:
            shard.full = True
            self._release(shard)
            return None
        self._live_allocations.add(1)
        self._live_bytes.add(size)
        counters = self._site(site)
        counters.count.add(1)
        counters.bytes.add(size)
        return Allocation(shard, end - size, size, site)

    def _release(self, shard: Shard) -> None:
        if shard.live.add(-1) == 0 and shard.full:
            self._recycle(shard)

    def _recycle(self, shard: Shard) -> None:
        if not shard.recycled.compare_and_swap(False, True):
            return
        fresh = Shard(shard.buffer, shard.address, shard.size)
        fresh.slot = shard.slot
        self._slots[shard.slot].compare_and_swap(shard, fresh)
        self._push_free(fresh)

    def _reuse_recycled(self, seen: Shard | None) -> bool:
        """Make a recycled shard current; False when the free list is empty."""
        shard = self._pop_free()
        if shard is None:
            return False
        if not self._current.compare_and_swap(seen, shard):
            self._push_free(shard)  # someone else moved `current` on: keep it for later
        return True

    def _make_shard(self, seen: Shard | None) -> Shard | None:
        """Pin a new shard and add it to the pool, replacing `seen` as current.

        Returns the shard this thread allocates from, or None to look again.
        """
        self._make_shard_calls.add(1)
        shard = self._new_pinned_shard()
        self._insert(shard)
        # The loser of this swap keeps its pinned shard in its slot and allocates from it:
        # never current, so never full and never recycled.
        self._current.compare_and_swap(seen, shard)
        self._log_made(shard)
        return shard

    def _new_pinned_shard(self) -> Shard:
        buffer = mmap.mmap(-1, self.shard_size)
        address = buffer_address(buffer)
        try:
            self._pinner.pin(address, self.shard_size)
        except Exception as err:  # any failed pin is fatal, as in the daemon
            buffer.close()
            self._log("CRIT", f"Failed to pin shared kernel memory: {err}")
            self._on_pin_failure(err)
            raise
        self._pins.add(1)
        return Shard(buffer, address, self.shard_size)

    def _insert(self, shard: Shard) -> None:
        if self._hooks.before_insert is not None:
            self._hooks.before_insert()
        for index, slot in enumerate(self._slots):
            if slot.load() is None and slot.compare_and_swap(None, shard):
                shard.slot = index
                return
        raise MemoryError(f"bufferpool: all {MAX_SLOTS} shard slots are in use")

    def _log_made(self, shard: Shard) -> None:
        shards = self._shards()
        full = sum(1 for other in shards if other.full)
        space = sum(1 for other in shards if other is not shard and not other.full)
        thread = threading.current_thread().name
        self._log("INFO", f"make_shard num={len(shards)} full={full} space={space} thread={thread}")

    def _shards(self) -> list[Shard]:
        return [shard for slot in self._slots if (shard := slot.load()) is not None]

    def _site(self, site: str) -> _SiteCounters:
        counters = self._sites.get(site)
        if counters is None:
            # dict.setdefault is a single atomic step in CPython: one entry per site wins.
            counters = self._sites.setdefault(site, _SiteCounters())
        return counters

    def _push_free(self, shard: Shard) -> None:
        while True:
            top = self._free.load()
            if self._free.compare_and_swap(top, _FreeNode(shard, top)):
                return

    def _pop_free(self) -> Shard | None:
        while True:
            top = self._free.load()
            if top is None:
                return None
            if self._free.compare_and_swap(top, top.next):
                return top.shard

    def _free_count(self) -> int:
        count, node = 0, self._free.load()
        while node is not None:
            count, node = count + 1, node.next
        return count


def buffer_address(buffer: mmap.mmap) -> int:
    """The real address of an mmap's memory (what the daemon hands to the kernel)."""
    view = ctypes.c_char.from_buffer(buffer)
    address = ctypes.addressof(view)
    del view  # release the export, or the mmap could not be closed later
    return address
