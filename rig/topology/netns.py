"""A network namespace of the run's own: loopback, an nftables ruleset, conntrack timeouts.

The rig enters it for the duration of the run (its main thread, so every process it starts
and every socket and thread it makes afterwards live inside), then leaves and deletes it.
Its name carries the run id, and the run record lists it before it exists, so `rig gc`
deletes the namespace of a run that was killed. Needs root, `ip`, `nft` and `sysctl`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rig.errors import InfraError

PREFIX = "rig-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MAX_NAME = 48
TOOLS = {"ip": "iproute2", "nft": "nftables", "sysctl": "procps"}  # tool -> Debian package


@dataclass(frozen=True)
class NetnsPlan:
    """What the namespace gets: an nftables ruleset (text) and conntrack's UDP timeouts."""

    ruleset: str
    udp_timeout: int | None = None  # seconds, both unreplied and stream timeouts


def namespace_name(run_id: str) -> str:
    """`rig-<run id>`, with characters `ip netns` takes, short enough for a file name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)
    return (PREFIX + safe)[:MAX_NAME]


def ruleset_text(ruleset: str, defines: dict[str, str]) -> str:
    """The ruleset with `define NAME = value` lines before it (e.g. the relay's RTP ports)."""
    head = "".join(f"define {name} = {value}\n" for name, value in defines.items())
    return head + ruleset


def port_defines(relay_rtp: tuple[int, int], ng_port: int,
                 rig_rtp: tuple[int, int]) -> dict[str, str]:
    """The `define`s a run's ruleset can use: the relay's RTP port range, its NG port and
    the rig's own RTP range."""
    return {"RELAY_RTP": f"{relay_rtp[0]}-{relay_rtp[1]}", "NG_PORT": str(ng_port),
            "RIG_RTP": f"{rig_rtp[0]}-{rig_rtp[1]}"}


def missing_capability() -> str | None:
    """Why this machine cannot host the namespace (one line), or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian: {package})"
    if not Path("/proc/sys/net/netfilter").is_dir():
        return "needs netfilter conntrack (modprobe nf_conntrack)"
    return None


def _run(argv: Sequence[str], stdin: str | None = None) -> None:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        raise InfraError(f"{' '.join(argv)[:100]}: {why}")


def create(name: str, plan: NetnsPlan) -> None:
    """Add the namespace, bring loopback up, load the ruleset, set the timeouts."""
    _run(["ip", "netns", "add", name])
    _run(["ip", "-n", name, "link", "set", "lo", "up"])
    _run(["ip", "netns", "exec", name, "nft", "-f", "-"], stdin=plan.ruleset)
    if plan.udp_timeout is not None:
        # per-namespace sysctls, present once the ruleset made conntrack track here
        _run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
              f"net.netfilter.nf_conntrack_udp_timeout={plan.udp_timeout}",
              f"net.netfilter.nf_conntrack_udp_timeout_stream={plan.udp_timeout}"])


def delete(name: str) -> bool:
    """Delete the namespace if it exists; True when it did."""
    if not (NETNS_DIR / name).exists():
        return False
    _run(["ip", "netns", "delete", name])
    return True


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise InfraError(f"setns: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside the namespace; back in its own one afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


@contextmanager
def run_namespace(name: str, plan: NetnsPlan) -> Iterator[str]:
    """Create the namespace, enter it, and always leave and delete it at the end."""
    why = missing_capability()
    if why is not None:
        raise InfraError(f"network namespace for the run: {why}")
    try:
        create(name, plan)
        with entered(name):
            yield name
    finally:
        delete(name)
