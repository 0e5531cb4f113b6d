"""The memory-map shard estimate on plain /proc/PID/maps text, and on a live process."""

import os

import pytest

from rig.probes import ProbeError
from rig.probes.maps import MIB, MapsShardProbe, estimate_shards, parse_maps

PAGE = 4096


def line(start: int, size: int, perms: str = "rw-p", path: str = "", inode: int = 0) -> str:
    dev = "00:00" if inode == 0 else "fe:01"
    return f"{start:012x}-{start + size:012x} {perms} 00000000 {dev} {inode}   {path}".rstrip()


BASE = 0x7F0000000000  # aligned to 64 MiB, like glibc's arenas
MAPS = "\n".join([
    line(0x55A000000000, 2 * MIB, "r-xp", "/usr/bin/rtpengine", 1234),
    line(0x55A000200000, 132 * 1024, "rw-p", "[heap]"),
    # arena 1: a small rw head, the rest of its 64 MiB reserved
    line(BASE, 132 * 1024), line(BASE + 132 * 1024, 64 * MIB - 132 * 1024, "---p"),
    # arena 2: a head that grew past a shard's size; still the arena's, left out
    line(BASE + 64 * MIB, 40 * MIB), line(BASE + 104 * MIB, 24 * MIB, "---p"),
    # a thread stack behind its guard page: below the size threshold
    line(BASE + 128 * MIB, PAGE, "---p"), line(BASE + 128 * MIB + PAGE, 8 * MIB),
    # two shards whose mmaps are adjacent: one line
    line(BASE + 160 * MIB, 2 * (32 * MIB + PAGE)),
    # one more shard alone
    line(BASE + 256 * MIB, 32 * MIB + PAGE),
    # a large file mapping is not a shard
    line(BASE + 320 * MIB, 40 * MIB, "rw-s", "/dev/shm/x", 99),
])


def test_shards_are_the_large_anonymous_rw_bytes_outside_arenas_in_32_mib_mmaps():
    estimate = estimate_shards(MAPS)
    assert estimate.anon_rw_bytes == 3 * (32 * MIB + PAGE)
    assert estimate.mappings == 2  # three shards in two lines
    assert estimate.shards == 3
    assert estimate.arena_bytes == 132 * 1024 + 40 * MIB
    counters = estimate.counters()
    assert counters["rtpengine.maps.shards_estimate"] == 3
    assert counters["rtpengine.maps.anon_rw_mappings"] == 2


def test_a_shard_merged_into_an_arenas_head_counts_only_outside_the_arena():
    # a shard's mmap right below an arena: the kernel merges it with the arena's rw head
    merged = "\n".join([line(BASE - 32 * MIB - PAGE, 32 * MIB + PAGE + 132 * 1024),
                        line(BASE + 132 * 1024, 64 * MIB - 132 * 1024, "---p")])
    estimate = estimate_shards(merged)
    assert estimate.anon_rw_bytes == 32 * MIB + PAGE and estimate.shards == 1


def test_an_idle_daemon_has_no_shards_and_bad_text_is_an_error():
    assert estimate_shards(line(BASE, 8 * MIB)).shards == 0
    assert estimate_shards("").shards == 0
    with pytest.raises(ValueError, match="line 2 is not a memory map line"):
        parse_maps(line(BASE, PAGE) + "\nnot a map\n")


def test_the_probe_reads_a_live_process_and_says_when_it_is_gone():
    counters = MapsShardProbe(os.getpid()).read()
    assert counters["rtpengine.maps.shards_estimate"] >= 0
    assert set(counters) == {"rtpengine.maps.anon_rw_bytes", "rtpengine.maps.anon_rw_mappings",
                             "rtpengine.maps.arena_bytes", "rtpengine.maps.shards_estimate"}
    with pytest.raises(ProbeError, match="No such file"):
        MapsShardProbe(2**22 + 12345).read()
