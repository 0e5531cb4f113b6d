"""The kernel module's table status: `/proc/rtpengine/<table>/status`, or the kmod model's copy.

The same parser serves the real module and the model, so it is tested on both layouts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rig.probes import ProbeError

# Labels of the real module's status file and the counter each becomes.
COUNTER_NAMES = {
    "Refcount": "refcount",
    "Opencount": "opencount",
    "Targets": "targets",
    "Skb refs": "skb_refs",
    "Skb copies": "skb_copies",
    "Players": "players",
    "PStreams": "pstreams",
    "Memory pins": "pins",
    "Memory": "memory",
    "Ring bufs": "ring_bufs",
}
LINE = re.compile(r"^(?P<label>[A-Za-z][A-Za-z ]*?):\s+(?P<value>\d+)\s*$")


def parse_kmod_status(text: str) -> dict[str, int]:
    """`{counter: value}` for every `Label: number` line; other lines (lists) are skipped.

    Raises ValueError when `Memory pins` is missing: a status file without it is not one.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        label = match["label"].strip()
        name = COUNTER_NAMES.get(label, label.lower().replace(" ", "_"))
        values[name] = int(match["value"])
    if "pins" not in values:
        raise ValueError("not a table status file: no 'Memory pins:' line")
    return values


@dataclass
class KmodStatusProbe:
    """Reads `<dir>/<table>/status` (the model's folder or `/proc/rtpengine`)."""

    status_path: Path
    name: str = "kmod"
    constants: Mapping[str, float] = field(default_factory=dict)  # added to every reading

    @classmethod
    def for_table(cls, root: Path, table: int) -> KmodStatusProbe:
        return cls(root / str(table) / "status")

    def read(self) -> dict[str, float]:
        try:
            text = self.status_path.read_text()
        except OSError as exc:
            raise ProbeError(f"{self.status_path}: {exc.strerror}") from exc
        try:
            values = parse_kmod_status(text)
        except ValueError as exc:
            raise ProbeError(f"{self.status_path}: {exc}") from exc
        return {**{f"kmod.{k}": float(v) for k, v in values.items()}, **self.constants}
