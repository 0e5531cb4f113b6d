"""Readiness checks: small objects behind one Protocol, retried with tenacity."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from rig.interrupts import raise_if_stopping
from rig.topology.destinations import Destinations


class NotReady(Exception):
    """Raised by a strategy while the service is not ready yet."""


class WaitStrategy(Protocol):
    def check(self) -> None:
        """Return when ready; raise NotReady otherwise."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class UnixSocketAccepts:
    path: Path

    def check(self) -> None:
        if not self.path.exists():
            raise NotReady(f"{self.path.name} does not exist yet")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise NotReady(str(exc)) from exc

    def describe(self) -> str:
        return f"unix socket {self.path.name} accepts connections"


@dataclass(frozen=True)
class NgPing:
    host: str
    port: int
    destinations: Destinations = field(default_factory=Destinations)  # loopback only

    def check(self) -> None:
        from rig.probes.ng import ng_request  # imported late: only runs that start a relay need it

        try:
            reply = ng_request(self.host, self.port, {"command": "ping"}, timeout=0.3,
                                destinations=self.destinations)
        except Exception as exc:  # any failure means "not yet"
            raise NotReady(str(exc)) from exc
        if reply.get("result") != "pong":
            raise NotReady(f"ping answered {reply!r}")

    def describe(self) -> str:
        return f"NG ping on {self.host}:{self.port}"


def wait_until_ready(
    strategy: WaitStrategy, timeout: float, still_running: Callable[[], bool]
) -> None:
    """Retry the strategy until it passes, the timeout ends, or the process died."""

    def attempt() -> None:
        raise_if_stopping()  # a Ctrl-C whose KeyboardInterrupt was dropped (rig/interrupts.py)
        if not still_running():
            raise ServiceDied()
        strategy.check()

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.01, max=0.25),
        retry=retry_if_exception_type(NotReady),
        reraise=True,
    )
    retrying(attempt)


class ServiceDied(Exception):
    """The process exited while the rig waited for it to become ready."""
