"""Lines of service logs that are events: the relay's make_shard lines, its CRIT line and
the kernel's refusal of a forwarding target, and rtpengine's make_shard instrumentation
line where a user's build has it.

`parse_relay_line` and `parse_rtpengine_line` are pure; `LogFollower` tails a growing log
file on a thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rig.series import Event

PREFIX = re.compile(r"^\[(?P<ts>\d+(?:\.\d+)?)\]\s+(?P<level>[A-Z]+):\s+\[(?P<thread>[^\]]*)\]\s+")
# rtpengine's wording when the module refuses a target; the relay logs it the same way
KERNEL_REFUSED = "Failed to push relay stream to kernel: "
MAKE_SHARD = re.compile(
    r"make_shard num=(?P<num>\d+) full=(?P<full>\d+) space=(?P<space>\d+) thread=(?P<thread>\S+)"
)


def parse_relay_line(line: str, run_started_wall: float) -> Event | None:
    """An event for a make_shard, CRIT or refused-target line, timed in run seconds; None for
    other lines."""
    prefix = PREFIX.match(line)
    if not prefix:
        return None
    t = float(prefix["ts"]) - run_started_wall
    text = line[prefix.end():].rstrip()
    if prefix["level"] == "CRIT":
        return Event(t=t, kind="crit", data={"line": line.rstrip(), "text": text})
    shard = MAKE_SHARD.search(text)
    if shard:
        data = {k: int(shard[k]) for k in ("num", "full", "space")}
        return Event(t=t, kind="make_shard", data={**data, "thread": shard["thread"]})
    if text.startswith(KERNEL_REFUSED):
        return Event(t=t, kind="kernel_refused", data={
            "reason": text[len(KERNEL_REFUSED):], "thread": prefix["thread"]})
    return None


# `--log-stderr` lines: `[1764668275.123456] WARN: [core] bufferpool_make_shard: ...`; a
# call's context may sit between the level and the message.
RTPENGINE_PREFIX = re.compile(r"^\[(?P<ts>\d+(?:\.\d+)?)\]\s+(?P<level>[A-Z]+):\s")
RTPENGINE_MAKE_SHARD = re.compile(
    r"bufferpool_make_shard: num=(?P<num>\d+) full=(?P<full>\d+) space=(?P<space>\d+) "
    r"tid=(?P<tid>\d+)"
)


def parse_rtpengine_line(line: str, run_started_wall: float) -> Event | None:
    """A make_shard event for rtpengine's instrumentation line (the field report's
    `bufferpool_make_shard: num=%u full=%u space=%u tid=%lu`, at LOG_WARN), a crit event for
    a CRIT line, timed in run seconds; None for other lines."""
    prefix = RTPENGINE_PREFIX.match(line)
    if not prefix:
        return None
    t = float(prefix["ts"]) - run_started_wall
    if prefix["level"] in ("CRIT", "ALERT", "EMERG"):
        return Event(t=t, kind="crit", data={"line": line.rstrip(),
                                             "text": line[prefix.end():].rstrip()})
    shard = RTPENGINE_MAKE_SHARD.search(line, prefix.end())
    if shard is None:
        return None
    data = {k: int(shard[k]) for k in ("num", "full", "space")}
    return Event(t=t, kind="make_shard",
                 data={**data, "thread": f"tid {shard['tid']}", "service": "rtpengine"})


@dataclass
class LogFollower:
    """Reads new lines of a log file every `interval` seconds and hands parsed events on."""

    path: Path
    parse: Callable[[str], Event | None]
    on_event: Callable[[Event], None]
    interval: float = 0.05
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _offset: int = 0
    _partial: str = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"follow-{self.path.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.poll()  # whatever was written last

    def poll(self) -> None:
        try:
            with open(self.path, errors="replace") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            event = self.parse(line)
            if event is not None:
                self.on_event(event)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
