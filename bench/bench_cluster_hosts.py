"""Aggregate calls/s and RTP packets/s from 1 and 2 generator hosts (`rig run --cluster`).

The hosts are network namespaces on this machine joined by veth pairs (tests/e2e/nshosts.py:
a SUT host with the model relay and the rig, generator hosts with one `rig_generator` slot
each, a Ray node in every one). The same scenario runs with `load.processes` 1 and 2, so
one and two generator hosts; beside them the same load without `--cluster` (the generator
processes on the SUT host itself). The namespaces share this machine's cores, so a second
generator host adds no CPU: the table says what the cluster layer costs and that the
numbers add up, not how it scales on real hosts. Needs root. Saved to
results/bench/cluster_hosts.json.

    python bench/bench_cluster_hosts.py [--seconds 8] [--cps 60] [--hold 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import nshosts  # noqa: E402

from rig.atomic import write_json_atomic  # noqa: E402

OUT = ROOT / "results" / "bench" / "cluster_hosts.json"

SCENARIO = """\
name: cluster-hosts-throughput
duration: {seconds}
settle: 1
seed: 3
services:
  kmod: {{source: containers/kmod}}
  relay: {{source: containers/relay, workers: 2, shard_size: 1048576}}
  patches: []
load:
  cps: {cps}
  max_concurrent: 2000
  hold: {hold}
  outcomes: {{answered: 1.0}}
  rtp: {{codec: PCMU, ptime: 20}}
probes:
  interval: 0.5
checks:
  relay_alive: {{}}
"""


@dataclass(frozen=True)
class Row:
    setup: str
    generators: int
    seconds: float
    completed: int
    failed: int
    rtp_sent: int
    rtp_received: int
    wall_s: float

    @property
    def cps(self) -> float:
        return self.completed / self.seconds

    @property
    def pps(self) -> float:
        return (self.rtp_sent + self.rtp_received) / self.seconds


def run(hosts: nshosts.Hosts, scenario: Path, out: Path, generators: int, cluster: bool,
        seconds: float) -> Row:
    argv = [sys.executable, "-m", "rig.cli", "run", str(scenario), "--out", str(out),
            "--no-progress", "--set", f"targets.host={hosts.sut_ip}",
            "--set", f"targets.allow=[{hosts.subnet}.0/24]",
            "--set", f"load.processes={generators}"]
    if cluster:
        argv += ["--cluster", hosts.address]
    began = time.monotonic()
    done = subprocess.run(hosts.exec_argv(hosts.sut, *argv), env=hosts.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"rig run failed ({done.returncode}): {done.stderr[-600:]}")
    summary = json.loads((out / "summary.json").read_text())
    load = summary["load"]
    setup = (f"--cluster, {generators} generator host{'s' * (generators > 1)}" if cluster
             else f"no --cluster, {generators} process{'es' * (generators > 1)} on the SUT host")
    return Row(setup, generators, seconds, load["calls_completed"], load["calls_failed"],
               load["rtp_sent"] or 0, load["rtp_received"] or 0, round(wall, 1))


def table(rows: list[Row]) -> str:
    lines = ["| setup | calls/s | RTP pps (sent + received) | failed | wall s |",
             "|---|--:|--:|--:|--:|"]
    lines += [f"| {r.setup} | {r.cps:.1f} | {r.pps:,.0f} | {r.failed} | {r.wall_s} |"
              for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--cps", type=float, default=60)
    parser.add_argument("--hold", type=float, default=2)
    args = parser.parse_args()
    if (why := nshosts.missing()) is not None:
        print(f"skipped: {why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="rig-bench-hosts-"))
    scenario = work / "throughput.yaml"
    scenario.write_text(SCENARIO.format(seconds=args.seconds, cps=args.cps, hold=args.hold))
    load_before = os.getloadavg()
    rows = []
    with nshosts.namespace_hosts(generators=2) as hosts:
        for generators, cluster in ((1, False), (2, False), (1, True), (2, True)):
            rows.append(run(hosts, scenario, work / f"{generators}-{cluster}", generators,
                            cluster, args.seconds))
    load_after = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, {platform.python_implementation()} "
          f"{platform.python_version()}, load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {args.cps:g} calls/s offered, hold {args.hold:g} s, "
          f"{args.seconds:g} s of load, G.711 20 ms both ways, model relay (2 workers)")
    print(table(rows))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(OUT, {"rows": [{**asdict(r), "cps": r.cps, "pps": r.pps} for r in rows],
                            "load_before": load_before, "load_after": load_after,
                            "args": vars(args)})
    print(f"saved: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
