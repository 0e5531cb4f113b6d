"""The relay's RTP port range: even ports (RTP), with port+1 kept for RTCP as rtpengine does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class OutOfPorts(Exception):
    pass


def parse_port_range(text: str) -> tuple[int, int]:
    """`LO-HI` with 1 <= LO < HI <= 65535 and room for at least one even/odd pair."""
    lo_text, dash, hi_text = text.partition("-")
    if not dash or not lo_text.isdigit() or not hi_text.isdigit():
        raise ValueError(f"port range {text!r} is not LO-HI")
    lo, hi = int(lo_text), int(hi_text)
    first = lo + lo % 2
    if not 1 <= lo < hi <= 65535 or first + 1 > hi:
        raise ValueError(f"port range {text!r} has no even/odd port pair within 1-65535")
    return lo, hi


class PortRange:
    """Hands out even ports round-robin, skipping ports in use here or bound by someone else."""

    def __init__(self, lo: int, hi: int) -> None:
        self._ports = list(range(lo + lo % 2, hi, 2))
        self._next = 0
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def take(self, bind: Callable[[int], T]) -> tuple[int, T]:
        """The next free port and what `bind(port)` made of it; bind raises OSError if in use."""
        with self._lock:
            for _ in range(len(self._ports)):
                port = self._ports[self._next]
                self._next = (self._next + 1) % len(self._ports)
                if port in self._taken:
                    continue
                try:
                    bound = bind(port)
                except OSError:
                    continue
                self._taken.add(port)
                return port, bound
        raise OutOfPorts("Ran out of ports")

    def give_back(self, port: int) -> None:
        with self._lock:
            self._taken.discard(port)

    def in_use(self) -> int:
        with self._lock:
            return len(self._taken)
