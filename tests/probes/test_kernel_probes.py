"""Kernel counters: slabinfo, conntrack and the route cache, parsed from captured files and
read through a fake /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rig.probes import ProbeError
from rig.probes.kernel import (
    NetnsProbe,
    SlabCache,
    SlabProbe,
    parse_slabinfo,
    parse_stat_entries,
)

DATA = Path(__file__).parent / "data"


def test_slabinfo_gives_active_and_total_objects_per_cache():
    caches = parse_slabinfo((DATA / "slabinfo_head.txt").read_text())
    assert caches["nf_conntrack"] == SlabCache(active=64, total=64)
    assert caches["kmalloc-256"] == SlabCache(active=829, total=896)


@pytest.mark.parametrize("text", ["", "something else\n", "slabinfo - version: 2.1\nx 1\n",
                                  "slabinfo - version: 2.1\nx a b\n"])
def test_bad_slabinfo_is_refused(text):
    with pytest.raises(ValueError):
        parse_slabinfo(text)


def test_stat_tables_give_their_entries():
    assert parse_stat_entries((DATA / "stat_nf_conntrack.txt").read_text()) == 30
    assert parse_stat_entries((DATA / "stat_rt_cache.txt").read_text()) == 5
    with pytest.raises(ValueError):
        parse_stat_entries("entries\nzz\n")
    with pytest.raises(ValueError):
        parse_stat_entries("hits\n00000001\n")


def test_slab_probe_reads_the_named_caches(tmp_path):
    path = tmp_path / "slabinfo"
    path.write_text((DATA / "slabinfo_head.txt").read_text())
    probe = SlabProbe(["nf_conntrack"], path)
    assert probe.read() == {"slab.nf_conntrack.active": 64.0, "slab.nf_conntrack.total": 64.0}
    with pytest.raises(ProbeError, match="no cache 'ip_dst_cache'"):
        SlabProbe(["ip_dst_cache"], path).read()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_slab_probe_says_when_slabinfo_is_for_root_only():
    with pytest.raises(ProbeError, match="readable by root only"):
        SlabProbe(["nf_conntrack"]).read()


def test_unreadable_slabinfo_is_a_probe_error(tmp_path):
    with pytest.raises(ProbeError, match="slabinfo"):
        SlabProbe(["nf_conntrack"], tmp_path / "slabinfo").read()


LISTING = """\
ipv4     2 udp      17 2 src=127.9.3.1 dst=127.9.3.1 sport=40000 dport=30000 src=127.9.3.1 \
dst=127.9.3.1 sport=30000 dport=40000 mark=0 zone=0 use=2
ipv4     2 udp      17 1 src=127.9.3.1 dst=127.9.3.1 sport=40002 dport=30002 [UNREPLIED] \
src=127.9.3.1 dst=127.9.3.1 sport=30002 dport=40002 mark=0 zone=0 use=2
"""


def fake_proc(tmp_path: Path, pid: int, route: bool = True, listing: bool = False) -> Path:
    stat = tmp_path / "proc" / str(pid) / "net" / "stat"
    stat.mkdir(parents=True)
    if listing:
        (stat.parent / "nf_conntrack").write_text(LISTING)
    (stat / "nf_conntrack").write_text((DATA / "stat_nf_conntrack.txt").read_text())
    if route:
        (stat / "rt_cache").write_text((DATA / "stat_rt_cache.txt").read_text())
    (tmp_path / "max").write_text("262144\n")
    return tmp_path / "proc"


def test_netns_probe_reads_conntrack_and_the_route_cache(tmp_path):
    probe = NetnsProbe(7, max_path=tmp_path / "max", proc=fake_proc(tmp_path, 7))
    assert probe.read() == {"conntrack.count": 30.0, "conntrack.max": 262144.0,
                            "route.cache_entries": 5.0}


def test_netns_probe_lists_the_table_where_the_kernel_has_the_file(tmp_path):
    probe = NetnsProbe(7, max_path=tmp_path / "max", proc=fake_proc(tmp_path, 7, listing=True))
    values = probe.read()
    assert values["conntrack.listed"] == 2.0 and values["conntrack.count"] == 30.0


def test_netns_probe_without_a_route_cache_leaves_the_counter_out(tmp_path):
    probe = NetnsProbe(7, max_path=tmp_path / "max", proc=fake_proc(tmp_path, 7, route=False))
    assert "route.cache_entries" not in probe.read()


def test_netns_probe_without_conntrack_says_so(tmp_path):
    probe = NetnsProbe(8, max_path=tmp_path / "max", proc=tmp_path)
    with pytest.raises(ProbeError, match="no conntrack in that namespace"):
        probe.read()


@pytest.mark.skipif(not Path("/proc/self/net/stat/nf_conntrack").exists(),
                    reason="no conntrack on this machine")
def test_netns_probe_reads_this_machine():
    values = NetnsProbe(os.getpid()).read()
    assert values["conntrack.max"] > 0 and values["conntrack.count"] >= 0
