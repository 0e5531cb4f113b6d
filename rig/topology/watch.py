"""Who watches the services while a run goes: a thread that notes the first moment each
one is seen stopped, with its pid and how it ended.

Any backend's services (RunningService: a pid and `exit_code()`) can be watched. The watch
is stopped before the rig stops the services itself, so only deaths the rig did not cause
are noted. The time comes from the `now` the runner passes in (run seconds).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rig.topology import RunningService

WATCH_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Death:
    """A service that stopped during the run, as the watch first saw it."""

    service: str
    pid: int
    exit_code: int  # negative: killed by that signal (Popen's convention; docker maps to it)
    t: float  # run seconds, within one watch interval after it happened

    @property
    def signal(self) -> str | None:
        """The signal's name (SIGKILL), or None when the service exited by itself."""
        if self.exit_code >= 0:
            return None
        try:
            return signal.Signals(-self.exit_code).name
        except ValueError:
            return f"signal {-self.exit_code}"

    def cause(self) -> str:
        """One line for a check's detail and the report: who, which pid, how, when."""
        how = f"died with {self.signal}" if self.signal else f"exited with code {self.exit_code}"
        return f"{self.service} (pid {self.pid}) {how} at t={self.t:.2f} s"


@dataclass
class Watch:
    """Polls every service's exit code on a thread until stopped."""

    services: Mapping[str, RunningService]
    now: Callable[[], float]
    interval: float = WATCH_INTERVAL_S
    deaths: list[Death] = field(default_factory=list)
    _pids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        # read while they run: a stopped container no longer reports its pid
        self._pids = {name: running.pid for name, running in self.services.items()}

    def poll(self) -> list[Death]:
        """Look once; returns the deaths seen so far, in the order they were seen."""
        with self._lock:
            seen = {death.service for death in self.deaths}
            for name, running in self.services.items():
                if name in seen:
                    continue
                code = running.exit_code()
                if code is not None:
                    self.deaths.append(Death(name, self._pids[name], code, self.now()))
            return list(self.deaths)

    def first_exit_code(self) -> int | None:
        """The exit code of the first service that stopped, else None (what the load's
        loop asks to know whether to stop early)."""
        with self._lock:
            return self.deaths[0].exit_code if self.deaths else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watch", daemon=True)
        self._thread.start()

    def stop(self) -> list[Death]:
        """Stop watching (before the rig stops the services); a last look, then the deaths."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        return self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
