"""The local backend: services as plain processes on this machine's loopback.

Each process gets its own session (so a Ctrl-C in the terminal reaches the rig, which
then stops the services in order), a parent-death signal (so they die with a killed rig),
the run label in its environment, and its output in the run folder's logs/. Stopping a
service also kills what is left of its process group: the parent-death signal reaches only
the process the rig started, so the workers a Kamailio forked outlive a killed main process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import InfraError
from rig.topology import Endpoints, ImageRecipe, ServiceSpec
from rig.topology.runtime import RunRecord, process_labels
from rig.topology.wait import ServiceDied, wait_until_ready

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 3.0


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class LocalService:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def stop(self) -> int:
        """SIGTERM, a grace period, then SIGKILL; then SIGKILL to whatever of its process
        group is left. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_GRACE_S)
        kill_group(self.process.pid)
        return self.process.returncode


def kill_group(pgid: int) -> bool:
    """SIGKILL to a process group the rig made (each service is a session leader, so its
    pid is its group's id); False when no process of it is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


VERSION_TIMEOUT_S = 10.0


def run_for_output(argv: Sequence[str], name: str) -> str:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                                timeout=VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"{name}: {' '.join(argv)}: {exc}") from None
    return result.stdout + result.stderr


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class LocalStack:
    endpoints: Endpoints
    record: RunRecord
    services: dict[str, LocalService] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        """Stop services in reverse start order (the relay before kmod)."""
        for name in reversed(list(self.services)):
            self.exit_codes[name] = self.services[name].stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend:
    name = "local"

    def __init__(self, endpoints: Endpoints, logs_dir: Path, record: RunRecord) -> None:
        self.endpoints = endpoints
        self.logs_dir = logs_dir
        self.record = record
        self.sources: dict[str, Path] = {}

    def prepare(self, sources: Mapping[str, Path],
                recipes: Mapping[str, ImageRecipe] | None = None) -> dict[str, float]:
        self.sources = dict(sources)
        return {}

    def version(self, spec: ServiceSpec, argv: Sequence[str]) -> str:
        """What `spec`'s executable prints for `argv[1:]` (both streams: rtpengine writes
        its version to stderr)."""
        return run_for_output([spec.argv[0], *argv[1:]], spec.name)

    def spec(self, service: Any, settings: Any, site: Any) -> ServiceSpec:
        return service.local_spec(settings, site, self.sources.get(service.name, Path()))  # type: ignore[no-any-return]

    def close(self) -> None:
        pass

    def start(self, specs: Sequence[ServiceSpec]) -> LocalStack:
        stack = LocalStack(endpoints=self.endpoints, record=self.record)
        try:
            for spec in specs:
                stack.services[spec.name] = self._start_one(spec)
        except BaseException:
            stack.close()
            raise
        return stack

    def _start_one(self, spec: ServiceSpec) -> LocalService:
        log_path = self.logs_dir / f"{spec.name}.log"
        env = {**os.environ, **dict(spec.env), **process_labels(self.record.run_id)}
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    list(spec.argv),
                    cwd=spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at spawn
                )
            except OSError as exc:
                raise InfraError(f"{spec.name} would not start: {exc}") from exc
        self.record.add_process(spec.name, process.pid)
        service = LocalService(spec.name, process, log_path)
        try:
            wait_until_ready(spec.ready, spec.startup_timeout, lambda: process.poll() is None)
        except ServiceDied:
            raise InfraError(
                f"{spec.name} exited with code {process.returncode} before it was ready "
                f"({spec.ready.describe()})",
                logs=log_tail(log_path),
            ) from None
        except Exception as exc:
            service.stop()
            raise InfraError(
                f"{spec.name} not ready after {spec.startup_timeout:.0f} s "
                f"({spec.ready.describe()}): {exc}",
                logs=log_tail(log_path),
            ) from None
        return service

