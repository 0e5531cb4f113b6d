"""Real rtpengine's counters: NG `statistics`, or the CLI's `list totals`.

Both sources give the same `rtpengine.*` names, so a check does not care which one a
run used. The NG reply is the richer one; the CLI needs `rtpengine-ctl` (rtpengine-utils).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rig.probes import ProbeError

# NG `statistics` -> counter name, per block.
NG_CURRENT = {
    "sessionsown": "sessions_own",
    "sessionsforeign": "sessions_foreign",
    "sessionstotal": "sessions_total",
    "packetrate": "packet_rate",
    "byterate": "byte_rate",
    "errorrate": "error_rate",
    "media_userspace": "media_userspace",
}
NG_TOTAL = {
    "managedsessions": "managed_sessions",
    "rejectedsessions": "rejected_sessions",
    "regularterminatedsessions": "regular_terminated_sessions",
    "forcedterminatedsessions": "forced_terminated_sessions",
    "timeoutsessions": "timeout_sessions",
    "relayedpackets": "relayed_packets",
    "relayedpacketerrors": "relayed_packet_errors",
    "uptime": "uptime",
}
# `rtpengine-ctl list totals` label -> the same counter names.
CLI_LABELS = {
    "Owned sessions": "sessions_own",
    "Foreign sessions": "sessions_foreign",
    "Total sessions": "sessions_total",
    "Packets per second (total)": "packet_rate",
    "Bytes per second (total)": "byte_rate",
    "Errors per second (total)": "error_rate",
    "Userspace-only media streams": "media_userspace",
    "Total managed sessions": "managed_sessions",
    "Total rejected sessions": "rejected_sessions",
    "Total regular terminated sessions": "regular_terminated_sessions",
    "Total forced terminated sessions": "forced_terminated_sessions",
    "Total timed-out sessions via TIMEOUT": "timeout_sessions",
    "Total relayed packets": "relayed_packets",
    "Total relayed packet errors": "relayed_packet_errors",
    "Uptime of rtpengine": "uptime",
}
CLI_LINE = re.compile(r"^\s*(?P<label>\S.*?)\s*:(?P<value>-?\d+(?:\.\d+)?)(?:\s.*)?$")
CLI_SECTION_END = "Graphite interval statistics"


def _number(value: Any) -> float | None:
    """rtpengine sends some numbers as bencoded strings ("26", "0.508080")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text_keys(block: Any) -> Mapping[str, Any]:
    if not isinstance(block, Mapping):
        return {}
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in block.items()}


def ng_statistics_counters(reply: Mapping[Any, Any]) -> dict[str, float]:
    """`rtpengine.*` counters from a decoded NG `statistics` reply."""
    top = _text_keys(reply)
    stats = _text_keys(top.get("statistics"))
    if not stats:
        raise ValueError("NG reply has no 'statistics' block")
    counters: dict[str, float] = {}
    for block_name, names in (("currentstatistics", NG_CURRENT), ("totalstatistics", NG_TOTAL)):
        block = _text_keys(stats.get(block_name))
        for key, name in names.items():
            value = _number(block.get(key))
            if value is not None:
                counters[f"rtpengine.{name}"] = value
    if "rtpengine.sessions_own" not in counters:
        raise ValueError("NG statistics reply has no currentstatistics.sessionsown")
    return counters


def parse_list_totals(text: str) -> dict[str, float]:
    """`rtpengine.*` counters from `rtpengine-ctl list totals`.

    The Graphite section at the end repeats labels with interval values: it is skipped.
    """
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(CLI_SECTION_END):
            break
        match = CLI_LINE.match(line)
        if match and match["label"] in CLI_LABELS:
            counters[f"rtpengine.{CLI_LABELS[match['label']]}"] = float(match["value"])
    if "rtpengine.sessions_own" not in counters:
        raise ValueError("not rtpengine 'list totals' output: no 'Owned sessions' line")
    return counters


@dataclass
class RtpengineNgProbe:
    """NG `statistics` over UDP: works for a local or a containerised rtpengine alike."""

    host: str
    port: int
    timeout: float = 0.5
    name: str = "rtpengine"

    def read(self) -> dict[str, float]:
        from rig.probes.ng import ng_request  # imported late, like every NG user

        try:
            reply = ng_request(self.host, self.port, {"command": "statistics"}, self.timeout)
        except Exception as exc:
            raise ProbeError(f"rtpengine statistics: {exc}") from exc
        try:
            return ng_statistics_counters(reply)
        except ValueError as exc:
            raise ProbeError(f"rtpengine statistics: {exc}") from exc


@dataclass
class RtpengineCliProbe:
    """`rtpengine-ctl -ip HOST -port PORT list totals` against the daemon's CLI port."""

    host: str
    port: int
    ctl: Sequence[str] = ("rtpengine-ctl",)
    timeout: float = 2.0
    name: str = "rtpengine"

    def read(self) -> dict[str, float]:
        argv = [*self.ctl, "-ip", self.host, "-port", str(self.port), "list", "totals"]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeError(f"rtpengine-ctl: {exc}") from exc
        if result.returncode != 0:
            reason = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
            raise ProbeError(f"rtpengine-ctl: {reason}")
        try:
            return parse_list_totals(result.stdout)
        except ValueError as exc:
            raise ProbeError(f"rtpengine-ctl: {exc}") from exc
