"""SIP calls per second from 1 and 2 generator processes (`load.processes`), no media.

Each generator process runs a LoadDriver with its own UAS (as `rig run` does with
`topology: model`), at its share of the offered rate; the number is completed calls per
second of the window, summed over the processes, and the CPU they spent per call. Beside
them, the same load from a LoadDriver in this process without the process layer, which
is what `processes: 1` runs. The headline is 2 processes over 1. The issue's target
(>= 1.6x) is for a machine with at least 4 cores: on 2 cores, two generators, each with
its own callee, share the cores with each other (and with whatever else the machine
runs), so the ratio says how much the second core gives, not how the layer scales.
Saved to results/bench/processes.json.

    python bench/bench_processes.py [--seconds 8] [--rate 6000] [--limit 400] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rig.atomic import write_json_atomic  # noqa: E402
from rig.load.driver import CallPlan, LoadDriver, Targets  # noqa: E402
from rig.load.processes import ProcessDriver  # noqa: E402
from rig.load.shares import shares, usable_cpus  # noqa: E402
from rig.topology.loopback import block_host  # noqa: E402

OUT = ROOT / "results" / "bench" / "processes.json"


@dataclass(frozen=True)
class Measurement:
    setup: str  # "in-process", "1 process", "2 processes"
    processes: int
    offered_cps: int
    seconds: float
    completed: int
    failed: int
    cpu_s: float  # every generator process (and this one) from set-up to the end of the run

    @property
    def cps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.completed * 1e6 if self.completed else 0.0


def plan(rate: int, limit: int) -> CallPlan:
    return CallPlan(cps=rate, max_concurrent=limit, hold=0.0, outcomes={"answered": 1.0},
                    no_answer_timeout=1.0, rtp=None)


def targets() -> Targets:
    return Targets(block_host("3.12"), 5060, 5080, rtp_ports=(40000, 49999))


async def window(driver: Any, seconds: float) -> tuple[int, int]:
    """Completed and failed calls at the end of the window (later ones not counted)."""
    run = asyncio.ensure_future(driver.run(seconds))
    while not driver.snapshot() and not run.done():  # the children are still starting
        await asyncio.sleep(0.01)
    await asyncio.sleep(seconds)
    snapshot = driver.snapshot()
    await run
    return int(snapshot["load.calls_completed"]), int(snapshot["load.calls_failed"])


def in_process(rate: int, seconds: float, limit: int) -> Measurement:
    driver = LoadDriver(plan(rate, limit), None, targets(), lambda kind, data: None)
    before = time.process_time()
    completed, failed = asyncio.run(window(driver, seconds))
    return Measurement("in-process", 1, rate, seconds, completed, failed,
                       time.process_time() - before)


def generators(processes: int, rate: int, seconds: float, limit: int) -> Measurement:
    pids: list[int] = []
    set_up: dict[int, float] = {}

    def on_event(kind: str, data: dict) -> None:
        if kind == "load_start":  # every child has imported and bound: not counted
            set_up.update((pid, _cpu(pid)) for pid in pids)

    driver = ProcessDriver(shares(plan(rate, limit), None, targets(), 0, processes),
                           on_event, on_process=lambda name, pid: pids.append(pid))
    before, children_before = time.process_time(), _reaped_cpu()
    completed, failed = asyncio.run(window(driver, seconds))
    # the children are reaped when run() returns: their whole CPU is in RUSAGE_CHILDREN
    spent = (_reaped_cpu() - children_before - sum(set_up.values())
             + time.process_time() - before)
    label = f"{processes} process" + ("es" if processes > 1 else "")
    return Measurement(label, processes, rate, seconds, completed, failed, spent)


def _reaped_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def summarise(rows: list[Measurement]) -> dict[str, Any]:
    best = {setup: max((r.cps for r in rows if r.setup == setup), default=0.0)
            for setup in ("in-process", "1 process", "2 processes")}
    one = best["1 process"]
    return {"best_cps": best,
            "ratio_2_over_1": best["2 processes"] / one if one else None,
            "ratio_1_over_in_process": one / best["in-process"] if best["in-process"] else None}


def table(rows: list[Measurement], summary: dict[str, Any]) -> str:
    lines = [f"{'setup':>12} {'offered':>8} {'completed':>10} {'failed':>7} {'calls/s':>9} "
             f"{'CPU µs/call':>12}"]
    for r in rows:
        lines.append(f"{r.setup:>12} {r.offered_cps:>8} {r.completed:>10} {r.failed:>7} "
                     f"{r.cps:>9.0f} {r.cpu_us_per_call:>12.0f}")
    best, ratio = summary["best_cps"], summary["ratio_2_over_1"]
    lines.append(f"best: in-process {best['in-process']:.0f}/s, 1 process "
                 f"{best['1 process']:.0f}/s, 2 processes {best['2 processes']:.0f}/s; "
                 f"2 over 1 = {ratio:.2f}" if ratio else "best: no 1-process number")
    lines.append(f"machine: {usable_cpus()} usable cores, load average "
                 f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return "\n".join(lines)


def save(rows: list[Measurement], summary: dict[str, Any], args: argparse.Namespace) -> None:
    document = {
        "schema_version": 1,
        "benchmark": "generator_processes",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
                    "python": platform.python_version(), "load_avg": os.getloadavg()},
        "settings": {"seconds": args.seconds, "rate": args.rate, "limit": args.limit,
                     "hold": 0, "media": False, "uas": "one per generator process"},
        "rows": [{**asdict(r), "cps": round(r.cps, 1),
                  "cpu_us_per_call": round(r.cpu_us_per_call, 1)} for r in rows],
        **summary,
    }
    write_json_atomic(OUT, document)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=6000, help="offered calls/s in all")
    parser.add_argument("--limit", type=int, default=400, help="max concurrent calls in all")
    parser.add_argument("--repeat", type=int, default=2, help="rounds, interleaved")
    args = parser.parse_args()
    rows: list[Measurement] = []
    for _ in range(args.repeat):  # interleaved, so a burst of noise hits every setup
        rows.append(in_process(args.rate, args.seconds, args.limit))
        for n in (1, 2):
            rows.append(generators(n, args.rate, args.seconds, args.limit))
        print(table(rows[-3:], summarise(rows)).split("\nbest")[0], flush=True)
    summary = summarise(rows)
    print(table(rows, summary))
    save(rows, summary, args)
    print(f"saved: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
