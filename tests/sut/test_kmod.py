"""The kmod model: its line protocol, its status file and the release of pins."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

MIB16 = 16 * 1024 * 1024
# The sample in the shared design notes, with this table's numbers (no targets in the model).
EXPECTED_STATUS = (
    "Refcount:    2\n"
    "Opencount:   1\n"
    "Targets:     0\n"
    "Skb refs:    0\n"
    "Skb copies:  0\n"
    "Players:     0\n"
    "PStreams:    0\n"
    "Memory pins: 5\n"
    "Memory:      83886080\n"
    "Ring bufs:   0\n"
)

LABELS = [line.partition(":")[0] for line in EXPECTED_STATUS.splitlines()]


class RawConnection:
    """A control connection speaking the line protocol by hand."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"no reply line (got {line!r})"
        return line.decode().rstrip("\n")

    def ask(self, line: str) -> str:
        self.send(line.encode() + b"\n")
        return self.reply()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def kmodclient(import_from: Any, containers_dir: Path) -> ModuleType:
    return import_from(containers_dir / "relay", "kmodclient")


@pytest.fixture
def raw(kmod_process: Any) -> Iterator[RawConnection]:
    conn = RawConnection(kmod_process.socket)
    yield conn
    conn.close()


def test_ready_line_names_the_folder(kmod_process: Any) -> None:
    assert f"kmod ready dir={kmod_process.dir}" in kmod_process.log()


def test_pin_and_unpin_round_trip(kmod_process: Any, kmodclient: ModuleType) -> None:
    client = kmodclient.KmodClient(kmod_process.dir, 7)
    try:
        client.pin(0x10000, 8192)
        client.pin(0x20000, 4096)
        assert kmod_process.status(7)["Memory pins"] == 2
        assert kmod_process.status(7)["Memory"] == 12288
        client.unpin(0x10000)
        status = kmod_process.status(7)
    finally:
        client.close()
    assert (status["Memory pins"], status["Memory"]) == (1, 4096)
    assert "kmod: table=7 pin addr=10000 size=8192 pins=1" in kmod_process.log()
    assert "kmod: table=7 unpin addr=10000 size=8192 pins=1" in kmod_process.log()


def test_status_layout_is_byte_exact(kmod_process: Any, raw: RawConnection) -> None:
    assert raw.ask("open 0") == "ok"
    for index in range(5):
        assert raw.ask(f"pin {0x7F0000000000 + index * MIB16:x} {MIB16}") == "ok"
    assert kmod_process.status_text(0) == EXPECTED_STATUS


def test_status_is_replaced_atomically(kmod_process: Any, kmodclient: ModuleType) -> None:
    client = kmodclient.KmodClient(kmod_process.dir, "hammer")
    status_path = kmod_process.dir / "hammer" / "status"
    stop = threading.Event()
    bad: list[str] = []
    seen_pins: set[int] = set()

    def read_until_stopped() -> None:
        while not stop.is_set():
            text = status_path.read_text()
            try:
                values = kmod_process.parse_status(text)
                assert list(values) == LABELS
                assert values["Memory"] == values["Memory pins"] * 4096
                seen_pins.add(values["Memory pins"])
            except (ValueError, AssertionError):
                bad.append(text)

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    try:
        for _ in range(40):
            for index in range(8):
                client.pin(0x1000 * (index + 1), 4096)
            for index in range(8):
                client.unpin(0x1000 * (index + 1))
    finally:
        stop.set()
        reader.join()
        client.close()
    assert bad == []
    assert len(seen_pins) > 2, "the reader should have seen the pin count change"


def test_seventeenth_pin_is_refused_with_e2big(kmod_process: Any, kmodclient: ModuleType) -> None:
    client = kmodclient.KmodClient(kmod_process.dir, 1)
    try:
        for index in range(16):
            client.pin(0x100000 * (index + 1), MIB16)
        with pytest.raises(kmodclient.PinError) as caught:
            client.pin(0x100000 * 17, MIB16)
    finally:
        client.close()
    assert caught.value.errno_name == "E2BIG"
    assert str(caught.value) == "Argument list too long (E2BIG)"
    assert "table=1 error E2BIG" in kmod_process.log()


@pytest.mark.parametrize("size", [0, 1000, 4097])
def test_size_not_a_page_multiple_is_einval(raw: RawConnection, size: int) -> None:
    assert raw.ask("open 0") == "ok"
    assert raw.ask(f"pin 1000 {size}").startswith("error EINVAL ")


@pytest.mark.parametrize(
    "line", ["", "hello", "pin", "pin xyz 4096", "pin 1000 -4096", "unpin", "open a/b", "open 0 1"]
)
def test_garbage_line_is_einval_and_connection_stays_usable(raw: RawConnection, line: str) -> None:
    assert raw.ask(line).startswith("error EINVAL ")
    assert raw.ask("open 0") == "ok"
    assert raw.ask("pin 1000 4096") == "ok"


def test_unpin_of_unknown_address_is_enoent(kmod_process: Any, kmodclient: ModuleType) -> None:
    client = kmodclient.KmodClient(kmod_process.dir, 0)
    try:
        with pytest.raises(kmodclient.PinError) as caught:
            client.unpin(0xABC000)
    finally:
        client.close()
    assert caught.value.errno_name == "ENOENT"
    assert str(caught.value) == "No such file or directory (ENOENT)"


def test_second_open_on_one_connection_is_einval(raw: RawConnection) -> None:
    assert raw.ask("open 0") == "ok"
    assert raw.ask("open 1").startswith("error EINVAL ")
    assert raw.ask("pin 1000 4096") == "ok"


def test_command_before_open_is_ebadf(raw: RawConnection) -> None:
    assert raw.ask("pin 1000 4096").startswith("error EBADF ")


def test_pinning_an_address_twice_is_eexist(raw: RawConnection) -> None:
    assert raw.ask("open 0") == "ok"
    assert raw.ask("pin 1000 4096") == "ok"
    assert raw.ask("pin 1000 4096").startswith("error EEXIST ")


def test_pins_are_released_when_the_last_connection_closes(kmod_process: Any) -> None:
    first, second = RawConnection(kmod_process.socket), RawConnection(kmod_process.socket)
    try:
        assert first.ask("open 3") == "ok" and second.ask("open 3") == "ok"
        assert first.ask("pin 1000 4096") == "ok" and second.ask("pin 2000 4096") == "ok"
        assert kmod_process.status(3)["Opencount"] == 2
        first.close()
        status = kmod_process.wait_for_status(3, "Opencount", 1)
        assert status["Memory pins"] == 2, "pins belong to the table, not to one handle"
    finally:
        second.close()
    status = kmod_process.wait_for_status(3, "Opencount", 0)
    assert (status["Memory pins"], status["Memory"], status["Refcount"]) == (0, 0, 1)
    assert "table=3 release pins=2 targets=0 (last close)" in kmod_process.log()


CLIENT_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from kmodclient import KmodClient
client = KmodClient(sys.argv[2], "victim")
for index in range(3):
    client.pin(0x1000 * (index + 1), 4096)
print("pinned", flush=True)
time.sleep(60)
"""


def test_pins_are_released_when_the_client_is_killed(
    kmod_process: Any, containers_dir: Path
) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, str(containers_dir / "relay"), str(kmod_process.dir)],
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline() == b"pinned\n"
        assert kmod_process.status("victim")["Memory pins"] == 3
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=5)
        status = kmod_process.wait_for_status("victim", "Memory pins", 0)
    finally:
        client.kill()
        client.wait()
        if client.stdout is not None:
            client.stdout.close()
    assert status["Opencount"] == 0


def test_kmod_survives_random_bytes(kmod_process: Any) -> None:
    rng = random.Random(1)
    garbage = RawConnection(kmod_process.socket)
    try:
        noise = bytes(rng.randrange(256) for _ in range(20000)) + b"x" * 10000 + b"\n"
        garbage.send(noise)
        replies = [garbage.reply() for _ in range(noise.count(b"\n"))]
    finally:
        garbage.close()
    assert replies and all(reply.startswith("error E") for reply in replies)
    fresh = RawConnection(kmod_process.socket)
    try:
        assert fresh.ask("open 0") == "ok"
        assert fresh.ask("pin 1000 4096") == "ok"
    finally:
        fresh.close()
    assert kmod_process.process.poll() is None


def test_sigterm_exits_cleanly_and_removes_the_socket(kmod_process: Any) -> None:
    kmod_process.process.send_signal(signal.SIGTERM)
    assert kmod_process.process.wait(timeout=5) == 0
    assert not kmod_process.socket.exists()


def test_client_reports_a_missing_kmod(tmp_path: Path, kmodclient: ModuleType) -> None:
    with pytest.raises(kmodclient.PinError) as caught:
        kmodclient.KmodClient(tmp_path, 0)
    assert caught.value.errno_name == "ENOENT"
    assert "cannot reach kmod" in caught.value.text


def test_client_uses_one_connection_per_thread(kmod_process: Any, kmodclient: ModuleType) -> None:
    client = kmodclient.KmodClient(kmod_process.dir, "threads")
    try:
        workers = [
            threading.Thread(target=client.pin, args=(0x1000 * (index + 1), 4096))
            for index in range(3)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=5)
        status = kmod_process.status("threads")
        assert (status["Opencount"], status["Memory pins"]) == (4, 3)
    finally:
        client.close()
    status = kmod_process.wait_for_status("threads", "Opencount", 0)
    assert status["Memory pins"] == 0
    with pytest.raises(kmodclient.PinError, match="EBADF"):
        client.pin(0x9000, 4096)
