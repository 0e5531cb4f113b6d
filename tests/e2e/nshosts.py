"""Separate hosts on one machine: network namespaces joined by veth pairs to a bridge, each
running a Ray node of one cluster (`ray start`), for runs across hosts.

The first namespace is the SUT host (the bridge, `rig_sut`, Ray's head), the others are
generator hosts (one `rig_generator` slot each). Addresses are in 198.18.0.0/15 (RFC 2544
benchmarking space) and exist only on those veths: nothing routes them beyond the
namespaces. Everything started in a namespace is killed by its process list
(`ip netns pids`) before the namespaces go; never `ray stop`, which stops every Ray of the
machine.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rig.distribute_ray import LOOPBACK_ONLY_ENV

RAY_PORT = 6379
# A head on an address beyond loopback turns Ray's token authentication on; its nodes and
# drivers must then send the token too. The hosts use a token of their own (a file in their
# temporary folder), never the user's ~/.ray/auth_token, which a fresh machine lacks.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def missing() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs `ip` (Debian: iproute2)"
    return None


@dataclass
class Hosts:
    tag: str
    subnet: str  # e.g. 198.18.7
    generators: int
    temp: Path
    names: list[str] = field(default_factory=list)

    @property
    def sut(self) -> str:
        return self.names[0]

    @property
    def sut_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def address(self) -> str:
        return f"{self.sut_ip}:{RAY_PORT}"

    def ip(self, index: int) -> str:
        return f"{self.subnet}.{index + 1}"

    def exec_argv(self, name: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", name, *argv]

    def env(self) -> dict[str, str]:
        """The environment of every `ray start` and rig here: without the loopback-only
        switch an embedded Ray of an earlier test in this process left in os.environ,
        which makes `ray start` refuse to join a cluster."""
        env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ONLY_ENV}
        return {**env, **RAY_ENV, "RAY_AUTH_TOKEN_PATH": str(self.temp / "auth_token")}

    def pids(self, name: str) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              check=False)
        return [int(p) for p in done.stdout.split()]


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def _ray(hosts: Hosts, name: str, *argv: str) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    done = subprocess.run(hosts.exec_argv(name, ray, "start", *argv, "--disable-usage-stats"),
                          env=hosts.env(), capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ray start in {name}: {done.stderr.strip()[-800:]}")


def _make_namespaces(hosts: Hosts) -> None:
    for k in range(hosts.generators + 1):
        name = f"rig-h{hosts.tag}-{k}"
        _ip("netns", "add", name)
        hosts.names.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
    sut = hosts.sut
    _ip("-n", sut, "link", "add", "br0", "type", "bridge")
    _ip("-n", sut, "addr", "add", f"{hosts.sut_ip}/24", "dev", "br0")
    _ip("-n", sut, "link", "set", "br0", "up")
    for k, name in enumerate(hosts.names[1:], start=1):
        port = f"rv{hosts.tag}{k}"  # the bridge's end, in the SUT namespace
        _ip("link", "add", port, "type", "veth", "peer", "name", "e0", "netns", name)
        _ip("link", "set", port, "netns", sut)
        _ip("-n", sut, "link", "set", port, "master", "br0")
        _ip("-n", sut, "link", "set", port, "up")
        _ip("-n", name, "addr", "add", f"{hosts.ip(k)}/24", "dev", "e0")
        _ip("-n", name, "link", "set", "e0", "up")


def _start_ray(hosts: Hosts) -> None:
    _ray(hosts, hosts.sut, "--head", f"--node-ip-address={hosts.sut_ip}", f"--port={RAY_PORT}",
         "--num-cpus=1", '--resources={"rig_sut": 1}', "--include-dashboard=false",
         f"--temp-dir={hosts.temp / 'ray'}")
    for k, name in enumerate(hosts.names[1:], start=1):
        _ray(hosts, name, f"--address={hosts.address}", f"--node-ip-address={hosts.ip(k)}",
             "--num-cpus=1", '--resources={"rig_generator": 1}')


def _kill_everything_in(hosts: Hosts) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for name in hosts.names for pid in hosts.pids(name)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [pid for name in hosts.names for pid in hosts.pids(name)]
            time.sleep(0.2)


@contextmanager
def namespace_hosts(generators: int = 2) -> Iterator[Hosts]:
    """A SUT host and `generators` generator hosts, each a Ray node; all gone afterwards."""
    tag = f"{random.randrange(16**4):04x}"
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    hosts = Hosts(tag, f"198.18.{random.randrange(256)}", generators, temp)
    (temp / "auth_token").write_text(secrets.token_hex(32))
    try:
        _make_namespaces(hosts)
        _start_ray(hosts)
        yield hosts
    finally:
        _kill_everything_in(hosts)
        for name in hosts.names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        shutil.rmtree(temp, ignore_errors=True)
