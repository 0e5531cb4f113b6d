"""Atomic cells for the lock-free bufferpool, in the sense of the hardware instructions.

Each lock here only makes one load, compare-and-swap or add indivisible, as the CPU would;
no caller ever holds it across a sequence of steps. Standard library only.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class AtomicRef(Generic[T]):
    """A reference that is swapped by identity (`is`), like a pointer CAS."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._lock = threading.Lock()

    def load(self) -> T:
        return self._value

    def compare_and_swap(self, expected: T, new: T) -> bool:
        """Set `new` if the value is still `expected`; True when this call made the swap."""
        with self._lock:
            if self._value is not expected:
                return False
            self._value = new
            return True


class AtomicCounter:
    """An integer with an indivisible add that returns the new value."""

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._lock = threading.Lock()

    def load(self) -> int:
        return self._value

    def add(self, delta: int) -> int:
        with self._lock:
            self._value += delta
            return self._value
