from pathlib import Path

import pytest

from rig.probes import ProbeError
from rig.probes.kmod import KmodStatusProbe, parse_kmod_status

# The layout of /proc/rtpengine/<table>/status as the real module prints it (DESIGN.md).
REAL_STATUS = (Path(__file__).parents[1] / "fixtures" / "kmod-status.txt").read_text()


def test_parses_every_counter_of_the_real_layout():
    values = parse_kmod_status(REAL_STATUS)
    assert values == {
        "refcount": 2, "opencount": 1, "targets": 37, "skb_refs": 0, "skb_copies": 0,
        "players": 0, "pstreams": 0, "pins": 5, "memory": 83886080, "ring_bufs": 0,
    }


def test_lines_that_follow_are_tolerated():
    text = REAL_STATUS + "Ring buf 0:  idx 3\nSomething new: 7\n"
    values = parse_kmod_status(text)
    assert values["pins"] == 5
    assert values["something_new"] == 7


def test_a_file_without_memory_pins_is_refused():
    with pytest.raises(ValueError, match="Memory pins"):
        parse_kmod_status("Refcount:    2\n")


def test_probe_prefixes_counters(tmp_path: Path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "status").write_text(REAL_STATUS)
    values = KmodStatusProbe.for_table(tmp_path, 0).read()
    assert values["kmod.pins"] == 5.0
    assert values["kmod.memory"] == 83886080.0


def test_the_models_limits_come_with_every_reading(tmp_path: Path):
    from dataclasses import replace

    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "status").write_text(REAL_STATUS)
    probe = replace(KmodStatusProbe.for_table(tmp_path, 0), constants={"kmod.max_targets": 20.0})
    values = probe.read()
    assert values["kmod.max_targets"] == 20.0 and values["kmod.targets"] == 37.0


def test_probe_reports_a_missing_file(tmp_path: Path):
    with pytest.raises(ProbeError, match="status"):
        KmodStatusProbe.for_table(tmp_path, 3).read()
