"""A loopback block of one's own: 127.N.0.0/16 held by one process until it exits.

Tests that start servers on addresses of their own (`127.0.3.1`, `127.0.77.1`, ...) collide
when several of them run at once, under pytest-xdist or in two checkouts on one machine. Each
process asks for `block_host("3.1")` instead and gets `127.N.3.1`, where N is a second octet
no other live process holds. The hold is an fcntl lock, which the kernel drops when the
holder dies, so nothing has to release it.

The lock lives beside the runtime folder but not in it: tests point RIG_RUNTIME_DIR at a
folder of their own, and a block must be exclusive across them all.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

from rig.errors import InfraError

FIRST_OCTET, LAST_OCTET = 64, 254  # run addresses (reserved_host) use all of 1..254


def blocks_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"rig-{os.getuid()}-blocks"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Held:
    """The block this process holds (one per process: a module-level singleton on purpose,
    since the lock must live exactly as long as the process)."""

    octet: int | None = None
    pid: int | None = None
    fd: int | None = None  # a raw descriptor: held to the end, closed by the kernel at exit


def reserve_block(rng: random.Random | None = None) -> tuple[int, int]:
    """Lock a free second octet; the caller keeps the returned descriptor open to hold it."""
    rng = rng or random.Random()
    octets = list(range(FIRST_OCTET, LAST_OCTET + 1))
    rng.shuffle(octets)
    for octet in octets:
        fd = os.open(blocks_dir() / f"{octet}.lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return octet, fd
    raise InfraError("every loopback block 127.64-254.x.x is held by another process")


def loopback_block() -> int:
    """This process's second octet; reserved on first use (again in a forked child)."""
    if _Held.octet is None or _Held.pid != os.getpid():
        _Held.octet, _Held.fd = reserve_block()
        _Held.pid = os.getpid()
    return _Held.octet


def block_host(rest: str) -> str:
    """`block_host("3.1")` -> "127.N.3.1" in this process's own block."""
    parts = rest.split(".")
    if len(parts) != 2 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise ValueError(f"expected the last two octets like '3.1', got {rest!r}")
    return f"127.{loopback_block()}.{rest}"
