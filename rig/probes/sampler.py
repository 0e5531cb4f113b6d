"""Reads every probe at a fixed interval on a thread and hands each sample on.

Ticks are scheduled on absolute deadlines, so a slow read does not make the series drift;
a probe that fails at a tick simply has no values in that sample (and is reported once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rig.clock import Clock
from rig.probes import Probe, ProbeError
from rig.series import Sample


@dataclass
class Sampler:
    probes: Sequence[Probe]
    interval: float
    clock: Clock
    started_at: float
    on_sample: Callable[[Sample], None]
    on_probe_error: Callable[[str, str], None] = lambda name, message: None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _failing: set[str] = field(default_factory=set)

    def sample_once(self) -> Sample:
        values: dict[str, float] = {}
        t = self.clock.monotonic() - self.started_at
        for probe in self.probes:
            try:
                values.update(probe.read())
                self._failing.discard(probe.name)
            except ProbeError as exc:
                if probe.name not in self._failing:
                    self._failing.add(probe.name)
                    self.on_probe_error(probe.name, str(exc))
        sample = Sample(t=round(t, 4), values=values)
        self.on_sample(sample)
        return sample

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        deadline = self.clock.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            deadline += self.interval
            delay = deadline - self.clock.monotonic()
            if delay < 0:  # fell behind: skip missed ticks instead of bunching samples
                deadline = self.clock.monotonic()
                delay = 0
            if self._stop.wait(delay):
                break
