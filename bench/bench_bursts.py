"""Burst alignment where the packets land: the burst engines side by side against the floor.

Every burst starts N new streams of one MediaEngine (the driver's own engine, busy with
`--background` calls of RTP between pairs of its endpoints, as in a run) and sends their
first packets to one rig sink socket that stamps each datagram with the kernel's receive
time (SO_TIMESTAMPNS). Per burst: spread (last send - first send), lateness (first send -
deadline) and arrival spread (last arrival - first arrival, what a SUT would see).

Engines, rotated burst by burst so that the machine's noise falls on all of them alike:
- floor: one sendmmsg() of the N packets from one socket (ctypes): the kernel's own cost,
  which no sender on one core can beat;
- loop: the new send loop in the engine's process, after the same spin (the GIL is shared
  with the engine's threads);
- old: the former thread-per-worker engine (bench/legacy_burst_timer.py), N workers;
- new: the burst sender processes (rig/load/burstsender.py), 1 and 2 processes.

    python bench/bench_bursts.py [--streams 1,8,32,64] [--bursts 50] [--repeats 3]

Prints medians over the repeats and saves results/bench/bench_bursts.json with every
repeat and the load average before and after each. The machine is shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from legacy_burst_timer import LegacyBurstTimer  # noqa: E402

from rig.atomic import write_json_atomic  # noqa: E402
from rig.clock import SystemClock  # noqa: E402
from rig.load.burstio import Mmsg, TimestampSink  # noqa: E402
from rig.load.bursts import BurstResult, Deadline, plan_burst, summarize  # noqa: E402
from rig.load.burstsender import BurstSender, Packet, send_all  # noqa: E402
from rig.load.media import MediaEngine  # noqa: E402
from rig.wire.rtp import parse_rtp  # noqa: E402

OUT = ROOT / "results" / "bench" / "bench_bursts.json"
HOST = "127.0.78.40"  # the bench's own loopback address: no clash with services on .0.1
LEAD_S = 0.02  # a burst is handed over this long before its deadline, as the driver does
SINK_WAIT_S = 0.5
STATS = ("spread", "lateness", "arrival_spread")


@dataclass(frozen=True)
class Config:
    engine: str
    streams: int
    processes: int = 1

    @property
    def key(self) -> str:
        return f"{self.engine}/{self.streams}/{self.processes}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,32,64", help="streams per burst")
    parser.add_argument("--engines", default="floor,loop,old,new")
    parser.add_argument("--processes", default="1,2", help="sender processes (new engine)")
    parser.add_argument("--bursts", type=int, default=50, help="bursts per config and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--background", type=int, default=100,
                        help="calls of RTP the engine carries meanwhile (2 streams each)")
    parser.add_argument("--ports", default="40000-47999", help="RTP port range LO-HI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        args.streams = [int(n) for n in args.streams.split(",")]
        args.processes = [int(p) for p in args.processes.split(",")]
        lo, hi = (int(p) for p in args.ports.split("-"))
    except ValueError:
        parser.error("--streams and --processes take numbers like 8,32 and --ports LO-HI")
    args.ports = (lo, hi)
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = set(args.engines) - {"floor", "loop", "old", "new"}
    if unknown:
        parser.error(f"unknown engine {sorted(unknown)} (allowed: floor, loop, old, new)")
    if min(args.streams) < 1 or args.bursts < 1 or args.repeats < 1 or min(args.processes) < 1:
        parser.error("--streams, --processes, --bursts and --repeats must be at least 1")
    return args


def configs(args: argparse.Namespace) -> list[Config]:
    out = []
    for n in args.streams:
        for engine in args.engines:
            for p in (args.processes if engine == "new" else [1]):
                out.append(Config(engine, n, p))
    return out


class Bench:
    """One engine with background traffic, one sink, the senders; fires one burst a call."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.media = MediaEngine(HOST, args.ports)
        self.media.start()
        self.sink = TimestampSink(HOST)
        self.senders = {p: BurstSender(p) for p in args.processes} if "new" in args.engines \
            else {}
        self.legacy = {n: LegacyBurstTimer(n) for n in args.streams} if "old" in args.engines \
            else {}
        self.background = self._background(args.background)
        self.clock = SystemClock()

    def _background(self, calls: int) -> list[int]:
        ports = []
        for _ in range(calls):
            a, b = self.media.open_endpoint(), self.media.open_endpoint()
            self.media.prepare_stream(a, (HOST, b))
            self.media.prepare_stream(b, (HOST, a))
            ports += [a, b]
        self.media.start_streams(ports)
        return ports

    def close(self) -> None:
        for sender in self.senders.values():
            sender.close()
        for timer in self.legacy.values():
            timer.close()
        self.sink.close()
        self.media.stop()

    def burst(self, config: Config, index: int) -> BurstResult:
        ports = [self.media.open_endpoint() for _ in range(config.streams)]
        try:
            for port in ports:
                self.media.prepare_stream(port, self.sink.address)
            deadline = Deadline.at(time.monotonic() + LEAD_S, self.clock)
            send_times = FIRE[config.engine](self, config, index, deadline, ports)
            arrivals = self._first_arrivals(config.streams)
        finally:
            for port in ports:
                self.media.close_endpoint(port)
        time.sleep(0.005)
        self.sink.drain()
        return BurstResult(index, deadline, tuple(send_times), tuple(arrivals),
                           lost=config.streams - len(arrivals), processes=config.processes)

    def _first_arrivals(self, count: int) -> list[float]:
        marked: list[float] = []
        until = time.monotonic() + SINK_WAIT_S
        while len(marked) < count and time.monotonic() < until:
            for arrival in self.sink.collect(count - len(marked), until - time.monotonic()):
                if parse_rtp(arrival.data).marker:
                    marked.append(arrival.t)
        return marked

    def fire_floor(self, config: Config, index: int, deadline: Deadline,
                   ports: list[int]) -> list[float]:
        built = self.media.first_packets(ports)
        batch = Mmsg(built[0][1], [data for _, _, data, _ in built], [t for *_, t in built])
        times, _ = send_all([lambda *_: batch.send()], [b""], [("", 0)], [0.0],
                            deadline.monotonic, time.monotonic, time.sleep)
        return times * config.streams

    def fire_loop(self, config: Config, index: int, deadline: Deadline,
                  ports: list[int]) -> list[float]:
        built = self.media.first_packets(ports)
        times, _ = send_all([sock.sendto for _, sock, _, _ in built],
                            [data for _, _, data, _ in built], [t for *_, t in built],
                            [0.0] * len(built), deadline.monotonic, time.monotonic, time.sleep)
        return times

    def fire_old(self, config: Config, index: int, deadline: Deadline,
                 ports: list[int]) -> list[float]:
        actions: list[Callable[[], None]] = [
            lambda p=p: self.media.start_streams([p]) for p in ports]
        return self.legacy[config.streams].fire(deadline.monotonic, actions)

    def fire_new(self, config: Config, index: int, deadline: Deadline,
                 ports: list[int]) -> list[float]:
        built = self.media.first_packets(ports)
        plan = plan_burst(index, deadline, [t for *_, t in built], processes=config.processes)
        result = self.senders[config.processes].fire(
            plan, [Packet(sock, data) for _, sock, data, _ in built])
        self.media.run_streams(ports, time.monotonic())
        return list(result.send_times)


FIRE: dict[str, Callable[[Bench, Config, int, Deadline, list[int]], list[float]]] = {
    "floor": Bench.fire_floor, "loop": Bench.fire_loop, "old": Bench.fire_old,
    "new": Bench.fire_new}


def one_repeat(bench: Bench, todo: list[Config], bursts: int, seed: int) -> dict:
    rng = random.Random(seed)
    results: dict[str, list[BurstResult]] = {c.key: [] for c in todo}
    load_before = os.getloadavg()
    for config in todo:  # warm-up, not counted
        bench.burst(config, -1)
    for index in range(bursts):
        for config in rng.sample(todo, len(todo)):
            results[config.key].append(bench.burst(config, index))
    rows = {key: summarize(rs).row() for key, rs in results.items()}
    return {"loadavg_before": load_before, "loadavg_after": os.getloadavg(), "rows": rows}


def median_rows(todo: list[Config], repeats: list[dict]) -> list[dict]:
    """Per config: the median over repeats of each statistic, and the ratio of its arrival
    spread p99 to the floor's in the same repeat."""
    out = []
    for config in todo:
        per = [r["rows"][config.key] for r in repeats]
        row: dict = {"engine": config.engine, "streams": config.streams,
                     "processes": config.processes}
        for name in per[0]:
            if name in row:
                continue  # "streams" there is the total over bursts
            values = [p[name] for p in per if not math.isnan(p[name])]
            row[name] = statistics.median(values) if values else math.nan
        floor_key = Config("floor", config.streams).key
        ratios = [r["rows"][config.key]["arrival_spread_p99_us"]
                  / r["rows"][floor_key]["arrival_spread_p99_us"]
                  for r in repeats if floor_key in r["rows"]
                  and r["rows"][floor_key]["arrival_spread_p99_us"] > 0]
        row["vs_floor_p99"] = statistics.median(ratios) if ratios else math.nan
        out.append(row)
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'engine':>6} {'N':>3} {'P':>2} {'spread p50':>10} {'p99':>7} {'late p50':>8} "
            f"{'p99':>6} {'arrive p50':>10} {'p99':>7} {'max':>7} {'÷floor':>6} {'lost':>4}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['engine']:>6} {r['streams']:>3} {r['processes']:>2} "
            f"{r['spread_p50_us']:>10.0f} {r['spread_p99_us']:>7.0f} "
            f"{r['lateness_p50_us']:>8.1f} {r['lateness_p99_us']:>6.1f} "
            f"{r['arrival_spread_p50_us']:>10.0f} {r['arrival_spread_p99_us']:>7.0f} "
            f"{r['arrival_spread_max_us']:>7.0f} {r['vs_floor_p99']:>6.2f} {r['lost']:>4.0f}")
    lines.append("µs per burst; medians over repeats of per-config p50/p99/max over bursts. "
                 "spread = last - first send, late = first send - deadline, arrive = last - "
                 "first kernel receive time at the sink; ÷floor = arrival p99 / floor's")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    todo = configs(args)
    bench = Bench(args)
    try:
        repeats = [one_repeat(bench, todo, args.bursts, seed) for seed in range(args.repeats)]
        realtime = all(s.realtime for s in bench.senders.values())
    finally:
        bench.close()
    rows = median_rows(todo, repeats)
    report = {
        "schema_version": 2,
        "benchmark": "bursts",
        "time": time.time(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "senders_realtime": realtime},
        "settings": {"bursts": args.bursts, "repeats": args.repeats,
                     "background_calls": args.background},
        "target": {"streams_32_vs_floor_p99": 1.5, "streams_8_arrival_p99_us": 100,
                   "lateness_p99_us": 20},
        "rows": rows,
        "repeats": repeats,
    }
    print(table(rows))
    loads = ", ".join(f"{r['loadavg_before'][0]:.1f}→{r['loadavg_after'][0]:.1f}"
                      for r in repeats)
    print(f"load average (1 min) per repeat: {loads} on {os.cpu_count()} cpus; "
          f"senders SCHED_FIFO: {'yes' if realtime else 'no'} (shared machine: noisy)")
    write_json_atomic(args.out, report)
    print(f"saved: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
