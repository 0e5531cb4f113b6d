"""Resident memory and open file descriptors of a process, from /proc via psutil."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from rig.probes import ProbeError


@dataclass
class ProcessProbe:
    pid: int
    name: str

    def read(self) -> dict[str, float]:
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    raise ProbeError(f"{self.name} exited")
                return {
                    f"{self.name}.rss_bytes": float(proc.memory_info().rss),
                    f"{self.name}.fds": float(proc.num_fds()),
                    f"{self.name}.threads": float(proc.num_threads()),
                }
        except psutil.Error as exc:
            raise ProbeError(f"{self.name}: {exc}") from exc
