"""Values shared by probes, checks, results and report: samples, series and events.

Pure data: nothing here touches a process, a socket or a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """All counters read at one instant; t is seconds since the run started."""

    t: float
    values: Mapping[str, float]


@dataclass(frozen=True)
class Event:
    """Something that happened at an instant: a burst, a make_shard line, a crash."""

    t: float
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Series:
    """Samples in time order. Counters missing from a sample are simply absent."""

    samples: list[Sample] = field(default_factory=list)

    def append(self, sample: Sample) -> None:
        self.samples.append(sample)

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for sample in self.samples:
            for name in sample.values:
                seen.setdefault(name, None)
        return list(seen)

    def column(self, name: str) -> list[tuple[float, float]]:
        """(t, value) pairs of one counter, skipping samples that lack it."""
        return [(s.t, s.values[name]) for s in self.samples if name in s.values]

    def values(self, name: str) -> list[float]:
        return [v for _, v in self.column(name)]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, float]]) -> Series:
        """Build from dict rows that each carry a 't' key (as read back from series.csv)."""
        samples = []
        for row in rows:
            values = {k: v for k, v in row.items() if k != "t"}
            samples.append(Sample(t=row["t"], values=values))
        return cls(samples)


def node_column(name: str, label: str) -> str:
    """A counter of one node of a `--cluster` run: `load.calls_active@node1`."""
    return f"{name}@{label}"


def node_columns(per_node: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each node's counters as columns of their own, counter by counter and, within one
    counter, node by node (`load.calls_active@node1`, `load.calls_active@node2`, ...)."""
    names: dict[str, None] = {}
    for values in per_node.values():
        names.update(dict.fromkeys(values))
    return {node_column(name, label): values[name]
            for name in names for label, values in per_node.items() if name in values}
