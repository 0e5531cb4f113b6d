"""Counter sources and the sampler that turns them into a time series.

Probes know nothing of verdicts: each one returns `{counter name: value}` when read.
"""

from __future__ import annotations

from typing import Protocol


class Probe(Protocol):
    name: str

    def read(self) -> dict[str, float]:
        """Current values; raise ProbeError when the source cannot be read right now."""
        ...


class ProbeError(Exception):
    """A source could not be read at this instant (file missing, no reply)."""
