"""Hostile traffic mixed into a run's load: the rig's malformed SIP and sipvicious's scanners.

`HostileTraffic.run(duration)` sends, against the proxy (Kamailio) or the rig's UAS, the
malformed messages of rig.wire.malformed at a rate, in turn by kind, and runs the sipvicious
commands of its Debian package (`svmap` scans, `svwar` extension enumeration, `svcrack`
password guesses; sipvicious has no supported Python API) one run at a time per tool, each
bounded in time and killed past it. Everything goes to the run's own loopback address.
It counts what was sent and how the SUT answered (the final status per message, or none);
the INVITEs' Call-IDs are handed to the orphan-session probe, since a hostile INVITE must
leave no media session behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rig.errors import InfraError
from rig.topology.destinations import LOOPBACK_ONLY
from rig.wire.malformed import Origin, ack_for, build, kind_at, messages_due, status_of

TICK = 0.01  # the sender wakes at most this often
ANSWER_GRACE = 1.0  # seconds after the last message for the SUT's answers to arrive
KILL_WAIT = 2.0  # seconds a killed tool gets to go
MAX_DATAGRAM = 65_535
NO_ANSWER = "none"
TOOLS = ("svmap", "svwar", "svcrack")
SIP_STATUS = re.compile(rb"SIP/2\.0 (\d{3}) ")


@dataclass(frozen=True)
class ToolPlan:
    """One sipvicious command, run every `every` seconds (one run at a time)."""

    tool: str
    every: float
    args: tuple[str, ...]  # the tool's own options before the target
    requests: int  # requests one run sends (svwar: the extensions; svcrack: the passwords)


@dataclass(frozen=True)
class HostilePlan:
    target: tuple[str, int]
    target_name: str  # "proxy" or "uas"
    start: float = 0.5  # seconds after load start
    rate: float = 0.0  # malformed messages per second; 0: none
    kinds: tuple[str, ...] = ()
    tools: tuple[ToolPlan, ...] = ()
    run_timeout: float = 5.0


@dataclass
class ToolCounts:
    runs: int = 0
    requests: int = 0
    killed: int = 0  # runs stopped at run_timeout or at the end of the load
    exit_codes: Counter[int] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # status -> responses seen

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "requests": self.requests, "killed": self.killed,
                "exit_codes": {str(k): v for k, v in sorted(self.exit_codes.items())},
                "answers": dict(sorted(self.answers.items()))}


def check_target(plan: HostilePlan) -> None:
    """Hostile traffic goes to loopback only, whatever else the scenario allows."""
    LOOPBACK_ONLY.check(*plan.target, "hostile traffic goes to loopback only")


def range_size(spec: str) -> int:
    """How many values `100-199,300` names (sipvicious's range syntax)."""
    total = 0
    for part in spec.split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def tool_argv(tool: ToolPlan, target: tuple[str, int], local_port: int,
              max_seconds: float) -> list[str]:
    """The command line of one run, bound to the target's own loopback address."""
    host, port = target
    common = ["-p", str(port), "-b", host, "-P", str(local_port)]
    if tool.tool == "svmap":
        return ["svmap", *common, "--debug", *tool.args, host]
    limit = ["--maximumtime", str(max(1, int(max_seconds)))]
    if tool.tool == "svwar":
        return ["svwar", *common, "--force", "--debug", *limit, *tool.args, host]
    if tool.tool == "svcrack":
        return ["svcrack", *common, *limit, *tool.args, host]
    raise ValueError(f"unknown tool {tool.tool!r} (allowed: {', '.join(TOOLS)})")


def answers_in(output: bytes) -> Counter[str]:
    """Status codes of the SIP responses a tool printed (svmap -d / svwar --debug)."""
    return Counter(m.group(1).decode() for m in SIP_STATUS.finditer(output))


def missing_tools(plan: HostilePlan, which: Callable[[str], str | None]) -> list[str]:
    return [t.tool for t in plan.tools if which(t.tool) is None]


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class HostileTraffic:
    """Sends one run's hostile traffic; `summary()` says what went and what came back."""

    def __init__(self, plan: HostilePlan, *,
                 on_event: Callable[[str, dict[str, Any]], None] = lambda kind, data: None,
                 on_process: Callable[[str, int], None] = lambda name, pid: None,
                 env: Mapping[str, str] | None = None) -> None:
        check_target(plan)
        self.plan, self.on_event, self.on_process = plan, on_event, on_process
        # unbuffered: what a tool printed before it was killed still counts
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.sent: Counter[str] = Counter()
        self._kind_of: dict[str, str] = {}  # Call-ID -> kind
        self._final: dict[str, int] = {}  # Call-ID -> its first final status
        self._message: dict[str, bytes] = {}  # Call-ID -> the INVITE, for its ACK
        self._invite_ids: set[str] = set()
        self.tools = {t.tool: ToolCounts() for t in plan.tools}
        self._sock: socket.socket | None = None

    def invite_call_ids(self) -> set[str]:
        """Call-IDs of the hostile INVITEs sent so far: no media session may keep one."""
        return set(self._invite_ids)

    async def run(self, duration: float) -> None:
        """From `start` to `duration` seconds: the messages and the tools; then the answers."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        until = began + duration
        self.on_event("hostile_start", {"target": self.plan.target_name,
                                        "kinds": list(self.plan.kinds),
                                        "tools": [t.tool for t in self.plan.tools]})
        try:
            await asyncio.sleep(max(0.0, min(self.plan.start, duration)))
            jobs = [self._tool_loop(t, until) for t in self.plan.tools]
            if self.plan.rate > 0 and self.plan.kinds:
                jobs.append(self._send_loop(until))
            await asyncio.gather(*jobs)
        finally:
            self._close()
            self.on_event("hostile_stop", self.summary())

    # -- the rig's malformed messages ---------------------------------------------------

    async def _send_loop(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        host = self.plan.target[0]
        sock = self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((host, 0))
        origin = Origin(sock.getsockname(), self.plan.target)
        loop.add_reader(sock.fileno(), self._read)
        started, seq = loop.time(), 0
        while (now := loop.time()) < until:
            for _ in range(messages_due(now - started, self.plan.rate, seq)):
                self._send(build(kind_at(self.plan.kinds, seq), origin, seq))
                seq += 1
            await asyncio.sleep(TICK)
        await asyncio.sleep(ANSWER_GRACE)

    def _send(self, message: Any) -> None:
        assert self._sock is not None
        self._kind_of[message.call_id] = message.kind
        if message.method == "INVITE":
            self._invite_ids.add(message.call_id)
            self._message[message.call_id] = message.data
        self.sent[message.kind] += 1
        with contextlib.suppress(OSError):  # a full buffer or an ICMP error: counted unanswered
            self._sock.sendto(message.data, self.plan.target)

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error of an earlier datagram
            self._on_datagram(data)

    def _on_datagram(self, data: bytes) -> None:
        parsed = status_of(data)
        if parsed is None:
            return  # a request (the UAS's BYE, a proxy's CANCEL): hostile callers ignore them
        status, call_id = parsed
        if call_id not in self._kind_of:
            return
        if status >= 200:  # a final answer; provisional ones alone count as none
            self._final.setdefault(call_id, status)
        if status >= 300 and call_id in self._message and self._sock is not None:
            ack = ack_for(self._message[call_id], data)
            if ack is not None:  # so the proxy's transaction ends now, not at timer H
                with contextlib.suppress(OSError):  # where the INVITE went (RFC 3261 17.1.1.3)
                    self._sock.sendto(ack, self.plan.target)

    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    # -- sipvicious ---------------------------------------------------------------------

    async def _tool_loop(self, tool: ToolPlan, until: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while (now := loop.time()) < until:
            if now < next_at:
                await asyncio.sleep(min(next_at - now, until - now))
                continue
            next_at = now + tool.every
            await self._run_tool(tool, min(self.plan.run_timeout, until - now))

    async def _run_tool(self, tool: ToolPlan, seconds: float) -> None:
        counts = self.tools[tool.tool]
        argv = tool_argv(tool, self.plan.target, free_udp_port(self.plan.target[0]), seconds)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=self.env, start_new_session=True)
        except OSError as exc:
            raise InfraError(f"cannot run {tool.tool}: {exc}") from exc
        self.on_process(tool.tool, proc.pid)
        counts.runs += 1
        counts.requests += tool.requests
        chunks: list[bytes] = []
        reader = asyncio.ensure_future(_read_all(proc, chunks))
        try:
            async with asyncio.timeout(max(0.1, seconds)):  # not wait_for: NgClient.request
                await proc.wait()
        except TimeoutError:
            counts.killed += 1
            await _kill(proc)
        except asyncio.CancelledError:
            await _kill(proc)
            raise
        finally:
            with contextlib.suppress(TimeoutError):  # the pipe ends with the tool's group
                async with asyncio.timeout(KILL_WAIT):
                    await reader
        if proc.returncode is not None:
            counts.exit_codes[proc.returncode] += 1
        counts.answers.update(answers_in(b"".join(chunks)))  # a killed run's too

    # -- what happened ------------------------------------------------------------------

    def answers(self) -> dict[str, dict[str, int]]:
        """kind -> {final status or "none": messages}."""
        out: dict[str, Counter[str]] = {kind: Counter() for kind in self.sent}
        for call_id, kind in self._kind_of.items():
            status = self._final.get(call_id)
            out[kind][str(status) if status is not None else NO_ANSWER] += 1
        return {kind: dict(sorted(c.items())) for kind, c in out.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.plan.target_name,
            "sent": dict(self.sent),
            "messages": sum(self.sent.values()),
            "answers": self.answers(),
            "tools": {name: c.as_dict() for name, c in self.tools.items()},
        }


async def _read_all(proc: asyncio.subprocess.Process, chunks: list[bytes]) -> None:
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(65536):
        chunks.append(chunk)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """The tool and anything it started (its own session), then its exit."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, ProcessLookupError):
        async with asyncio.timeout(KILL_WAIT):
            await proc.wait()

