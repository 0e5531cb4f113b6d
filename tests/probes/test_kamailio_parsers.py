"""Kamailio parsers on kamcmd output captured from Kamailio 5.6.3 (Debian bookworm)."""

import stat
from pathlib import Path

import pytest

from rig.probes import ProbeError
from rig.probes.kamailio import (
    KamailioProbe,
    kamailio_counters,
    parse_mod_mem_stats,
    parse_pkg_stats,
    parse_shmmem,
)

DATA = Path(__file__).parent / "data"


def captured(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize("manager", ["qm", "fm", "tlsf"])
def test_shmmem_of_every_manager_parses(manager: str):
    shm = parse_shmmem(captured(f"kamcmd_core_shmmem_{manager}.txt"))
    assert shm.used + shm.free <= shm.total
    assert shm.real_used >= shm.used
    assert shm.fragments >= 1


def test_shmmem_values_are_the_captured_ones():
    shm = parse_shmmem(captured("kamcmd_core_shmmem_tlsf.txt"))
    assert (shm.total, shm.used, shm.fragments) == (67108784, 2785424, 3)


@pytest.mark.parametrize("manager", ["qm", "fm", "tlsf"])
def test_pkg_stats_has_one_entry_per_process(manager: str):
    procs = parse_pkg_stats(captured(f"kamcmd_pkg_stats_{manager}.txt"))
    assert [p.entry for p in procs] == list(range(len(procs)))
    assert procs[0].desc == "main process - attendant"
    assert len({p.pid for p in procs}) == len(procs)
    assert all(p.real_used < p.total_size for p in procs)


def test_mod_mem_stats_totals_match_their_sites():
    modules = parse_mod_mem_stats(captured("kamcmd_mod_mem_stats_all.txt"))
    assert {"core", "tm", "rtpengine", "sl"} <= set(modules)
    for memory in modules.values():
        assert sum(v for k, v in memory.sites.items() if k.startswith("pkg:")) == memory.pkg
        assert sum(v for k, v in memory.sites.items() if k.startswith("shm:")) == memory.shm
    assert modules["tm"].shm == 2275680


def test_mod_mem_stats_of_one_module():
    modules = parse_mod_mem_stats(captured("kamcmd_mod_mem_stats_rtpengine.txt"))
    assert list(modules) == ["rtpengine"]
    assert (modules["rtpengine"].pkg, modules["rtpengine"].shm) == (296, 21752)


def test_counters_are_named_by_source_and_entry():
    shm = parse_shmmem(captured("kamcmd_core_shmmem_tlsf.txt"))
    pkg = parse_pkg_stats(captured("kamcmd_pkg_stats_qm.txt"))
    modules = parse_mod_mem_stats(captured("kamcmd_mod_mem_stats_rtpengine.txt"))
    counters = kamailio_counters(shm, pkg, modules)
    assert counters["kamailio.shm_used"] == 2785424
    assert counters["kamailio.pkg_real_used.1"] == pkg[1].real_used
    assert counters["kamailio.pkg_real_used_max"] == max(p.real_used for p in pkg)
    assert counters["kamailio.mod.rtpengine.shm"] == 21752


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_shmmem, "", "expected one struct, got 0"),
        (parse_shmmem, "{\n\ttotal: 1\n}\n", "no 'free' field"),
        (parse_shmmem, "{\n" + "".join(f"\t{k}: x\n" for k in
         ("total", "free", "used", "real_used", "max_used", "fragments")) + "}\n",
         "'total' is not a number"),
        (parse_pkg_stats, "error: 500 - no such method\n", "no process entries"),
        (parse_mod_mem_stats, "{\n\tTotal: 0\n}\n", "no 'Module:' section"),
        (parse_mod_mem_stats, "Module: tm\n{\n\tTotal: 0\n}\n", "expected pkg and shm"),
    ],
)
def test_bad_output_is_a_clear_error(parser, text: str, message: str):
    with pytest.raises(ValueError, match=message):
        parser(text)


def fake_kamcmd(folder: Path, body: str) -> Path:
    script = folder / "kamcmd"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_probe_reads_all_three_rpcs(tmp_path: Path):
    script = fake_kamcmd(tmp_path, (
        f'case "$3" in\n'
        f'  core.shmmem) cat {DATA / "kamcmd_core_shmmem_qm.txt"};;\n'
        f'  pkg.stats) cat {DATA / "kamcmd_pkg_stats_qm.txt"};;\n'
        f'  mod.mem_stats) cat {DATA / "kamcmd_mod_mem_stats_all.txt"};;\n'
        f'esac\n'
    ))
    counters = KamailioProbe("unix:/nowhere", kamcmd=[str(script)]).read()
    assert counters["kamailio.shm_total"] == 33554432
    assert counters["kamailio.mod.tm.shm"] == 2275680


def test_probe_error_names_the_rpc_and_the_reason(tmp_path: Path):
    script = fake_kamcmd(
        tmp_path, 'echo "ERROR: connect_unix_sock: connect(/x): No such file" >&2; exit 255\n'
    )
    with pytest.raises(ProbeError, match=r"kamcmd core.shmmem: ERROR: connect_unix_sock"):
        KamailioProbe("unix:/x", kamcmd=[str(script)]).read()


def test_probe_without_kamcmd_is_a_probe_error():
    with pytest.raises(ProbeError, match="kamcmd core.shmmem"):
        KamailioProbe("unix:/x", kamcmd=["/nonexistent/kamcmd"]).read()
