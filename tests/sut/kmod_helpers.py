"""Helpers to start and read the kmod model in tests (importable by name, unlike conftest)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
PATCHES = ROOT / "scenarios" / "patches"
READY_TIMEOUT = 10.0


def parse_status(text: str) -> dict[str, int]:
    """`{label: value}` of a table status file, e.g. `{"Memory pins": 5, ...}`."""
    values = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"malformed status line {line!r}")
        values[label] = int(value)
    return values


@dataclass
class KmodProcess:
    dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    parse_status = staticmethod(parse_status)

    @property
    def socket(self) -> Path:
        return self.dir / "control.sock"

    def status_text(self, table: str | int) -> str:
        return (self.dir / str(table) / "status").read_text()

    def status(self, table: str | int) -> dict[str, int]:
        return parse_status(self.status_text(table))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_status(
        self, table: str | int, label: str, value: int, timeout: float = 5.0
    ) -> dict[str, int]:
        """The status once `label` shows `value`; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(table)
            if status[label] == value or time.monotonic() > deadline:
                assert status[label] == value, f"{label} stayed {status[label]}, wanted {value}"
                return status
            time.sleep(0.01)


@contextmanager
def running_kmod(
    kmod_py: Path, state_dir: Path, extra_args: tuple[str, ...] = ()
) -> Iterator[KmodProcess]:
    """kmod started on `state_dir`, ready (socket accepting), always stopped on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(kmod_py), "--dir", str(state_dir), *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    kmod = KmodProcess(state_dir, process, log_path)
    try:
        wait_ready(kmod)
        yield kmod
    finally:
        stop_process(process)


def wait_ready(kmod: KmodProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while "kmod ready" not in kmod.log():
        if kmod.process.poll() is not None:
            pytest.fail(f"kmod exited with {kmod.process.returncode}:\n{kmod.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"kmod not ready after {READY_TIMEOUT} s:\n{kmod.log()}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
