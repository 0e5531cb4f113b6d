"""Log lines on stderr in rtpengine's shape: `[<unix time>] <LEVEL>: [<thread>] <text>`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = ("CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")


def format_line(now: float, level: str, thread: str, text: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (allowed: {', '.join(LEVELS)})")
    return f"[{now:.6f}] {level}: [{thread}] {text}"


class StreamLog:
    """The `log(level, text)` callable the relay and its bufferpool write through."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()

    def __call__(self, level: str, text: str) -> None:
        line = format_line(self._clock(), level, threading.current_thread().name, text)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
