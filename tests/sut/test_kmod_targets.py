"""Forwarding targets in the kmod model: the `Targets:` line, the limit and the release."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kmod_helpers import CONTAINERS, running_kmod
from test_kmod import RawConnection


@pytest.fixture
def small_kmod(tmp_path: Path) -> Iterator[Any]:
    with running_kmod(CONTAINERS / "kmod" / "kmod.py", tmp_path / "kmod",
                      ("--max-targets", "3")) as kmod:
        yield kmod


@pytest.fixture
def raw(small_kmod: Any) -> Iterator[RawConnection]:
    conn = RawConnection(small_kmod.socket)
    assert conn.ask("open 0") == "ok"
    yield conn
    conn.close()


def test_targets_line_counts_the_targets_at_every_change(raw: RawConnection,
                                                         small_kmod: Any) -> None:
    assert small_kmod.status(0)["Targets"] == 0
    assert raw.ask("target 127.0.0.1:30000 127.0.0.1:4000") == "ok"
    assert small_kmod.status(0)["Targets"] == 1
    assert raw.ask("target 127.0.0.1:30002 -") == "ok"
    assert small_kmod.status(0)["Targets"] == 2
    assert raw.ask("untarget 127.0.0.1:30000") == "ok"
    assert small_kmod.status(0)["Targets"] == 1
    assert "table=0 target local=127.0.0.1:30002 dest=- targets=2" in small_kmod.log()


def test_past_the_limit_kmod_refuses_with_enomem(raw: RawConnection, small_kmod: Any) -> None:
    for port in (30000, 30002, 30004):
        assert raw.ask(f"target 127.0.0.1:{port} 127.0.0.1:4000") == "ok"
    assert raw.ask("target 127.0.0.1:30006 127.0.0.1:4000") == (
        "error ENOMEM table holds 3 targets")
    assert small_kmod.status(0)["Targets"] == 3
    assert raw.ask("untarget 127.0.0.1:30000") == "ok"
    assert raw.ask("target 127.0.0.1:30006 127.0.0.1:4000") == "ok"


def test_target_errors(raw: RawConnection) -> None:
    assert raw.ask("target 127.0.0.1:30000 127.0.0.1:4000") == "ok"
    assert raw.ask("target 127.0.0.1:30000 127.0.0.1:4002").startswith("error EEXIST ")
    assert raw.ask("untarget 127.0.0.1:30002").startswith("error ENOENT ")
    for bad in ("target 127.0.0.1 127.0.0.1:4000", "target :30000 -",
                "target 127.0.0.1:0 -", "target 127.0.0.1:70000 -", "untarget x:y"):
        assert raw.ask(bad).startswith("error EINVAL "), bad
    assert raw.ask("target 127.0.0.1:30000").startswith("error EINVAL bad command")


def test_targets_go_with_the_last_handle(small_kmod: Any) -> None:
    conn = RawConnection(small_kmod.socket)
    assert conn.ask("open 5") == "ok"
    assert conn.ask("target 127.0.0.1:30000 -") == "ok"
    conn.close()
    status = small_kmod.wait_for_status(5, "Opencount", 0)
    assert status["Targets"] == 0
    assert "table=5 release pins=0 targets=1 (last close)" in small_kmod.log()


def test_a_bad_limit_is_refused(tmp_path: Path, import_from: Any) -> None:
    kmod: ModuleType = import_from(CONTAINERS / "kmod", "kmod")
    with pytest.raises(SystemExit):
        kmod.main(["--dir", str(tmp_path), "--max-targets", "0"])
