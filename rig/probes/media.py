"""Probes of any media relay over NG, and of the rig's own load counters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.load.loadreport import merge_snapshots
from rig.probes import ProbeError
from rig.series import node_columns
from rig.topology.destinations import Destinations

if TYPE_CHECKING:
    from rig.probes.ng import NgRequester

NG_LIST_LIMIT = 100_000  # rtpengine lists 32 call-ids unless asked for more


def call_ids(reply: dict[str, Any]) -> set[str]:
    """Call-ids of an NG `list` reply (rtpengine sends bytes, the model relay text)."""
    calls = reply.get("calls") or []
    return {c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in calls}


@dataclass
class MediaSessionsProbe:
    """`media.sessions` (the relay's NG `list`, for either relay) and `media.orphan_sessions`:
    sessions of calls the rig saw end. Right after a call ends its delete may still be on the
    way, so only the readings after the load (settle) say whether a session leaked."""

    host: str
    port: int
    ended: Callable[[], set[str]]
    timeout: float = 0.5
    name: str = "media"
    orphan_ids: set[str] | None = None
    _ng: NgRequester | None = field(default=None, init=False, repr=False)
    destinations: Destinations = field(default_factory=Destinations)  # loopback only

    def read(self) -> dict[str, float]:
        from rig.probes.ng import NgRequester

        self._ng = self._ng or NgRequester(self.host, self.port, self.timeout,
                                            self.destinations)
        try:
            reply = self._ng.request({"command": "list", "limit": NG_LIST_LIMIT})
        except Exception as exc:
            raise ProbeError(f"NG list: {exc}") from exc
        ids = call_ids(reply)
        self.orphan_ids = ids & self.ended()
        return {"media.sessions": float(len(ids)),
                "media.orphan_sessions": float(len(self.orphan_ids))}


@dataclass
class LoadProbe:
    """The load driver's counters (calls, RTP) as samples beside the SUT's. With `per_node`
    (a `--cluster` run: counters per node label) each counter is also a column per node,
    and the sums come from the same reading, so a row's nodes add up to its sum."""

    snapshot: Callable[[], Mapping[str, float]]
    name: str = "load"
    per_node: Callable[[], Mapping[str, Mapping[str, float]]] | None = None

    def read(self) -> dict[str, float]:
        if self.per_node is None:
            return dict(self.snapshot())
        nodes = self.per_node()
        return {**merge_snapshots(nodes.values()), **node_columns(nodes)}
