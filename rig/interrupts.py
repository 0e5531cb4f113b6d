"""Ctrl-C and SIGTERM that cannot get lost.

Python runs a signal handler in the main thread at the next bytecode it executes, wherever
that is. The rig's handler raises KeyboardInterrupt, which unwinds the run through the
cleanup that stops everything it started. But raised inside a `__del__` method or a weakref
callback, which the garbage collector runs at whatever allocation triggers it, a
KeyboardInterrupt is printed as "Exception ignored in ..." and dropped: the run would go on
as if no signal had come. (A run that went on after its Ctrl-C was seen once, in about 75
Ctrl-Cs on a loaded machine, without its stderr; 200 more did not show it again. A dropped
KeyboardInterrupt is one way there, and this closes it.) So the handler also notes the
signal, and the main thread's waiting loops
call `raise_if_stopping()`: a signal whose KeyboardInterrupt was dropped stops the run at
the next of them, at most a poll interval later.

While asyncio runs the load, SIGINT belongs to asyncio: `asyncio.run` cancels its main task
on the first one from a handler that raises nothing, so nothing can drop it. It installs
that handler only where SIGINT has Python's default one, which `asyncio_sigint()` puts
back for that time.

Only `installed()` (the `rig` command, for its length) and `held()` (around a call that
must not be cut in two) change any handler; a program that calls the runner itself keeps
its own, and `raise_if_stopping()` then never raises.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_noted: list[int] = []  # the signals the handler saw, in this process


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _noted.append(signum)
    raise KeyboardInterrupt


@contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` in the block; the handlers of before are put back
    at the end, whatever the block installed (one set outside Python, None, is left)."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in before:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, previous in before.items():
            if previous is not None:
                signal.signal(s, previous)


@contextmanager
def installed() -> Iterator[None]:
    """For the block, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread and are
    noted; afterwards the handlers of before are back and the notes gone, so that a process
    that goes on (a test calling the `rig` command) is not stopped by an old signal."""
    _noted.clear()
    try:
        with _handled_by(_on_signal):
            yield
    finally:
        _noted.clear()


@contextmanager
def held() -> Iterator[list[int]]:
    """SIGINT and SIGTERM noted, not acted on, in the block (the main thread's only); the
    signals that came. A second one is not held: it raises KeyboardInterrupt."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        came.append(signum)
        if len(came) > 1:
            raise KeyboardInterrupt

    with _handled_by(hold):
        yield came


def stopping() -> bool:
    return bool(_noted)


def raise_if_stopping() -> None:
    """KeyboardInterrupt if a signal came: its own may have been dropped. Call it only where
    the run goes forward (a waiting loop), never in cleanup, which runs after one."""
    if _noted:
        raise KeyboardInterrupt


@contextmanager
def asyncio_sigint() -> Iterator[None]:
    """Python's default SIGINT handler for the block, so that `asyncio.run` takes SIGINT
    over (and cancels its main task on it); ours again afterwards."""
    if signal.getsignal(signal.SIGINT) is not _on_signal:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _on_signal)
