"""The pin race in the shipped relay's bufferpool: phantom shard rate, stock vs each fix.

Each trial is a fresh pool on a fresh kmod table, filled to a cliff (its only shard exactly
full); K worker threads are then released together and each allocates once. No test hooks:
whether threads meet at the cliff is left to the scheduler, as in the relay. A phantom is a
pinned shard the pool does not need: `shards_total - (active + full + free)`.

    python bench/sut_race.py [--trials 500] [--threads 4 8] [--out results/bench]

Prints a table and saves `sut_race.json` and `sut_race.txt` in the output folder.
Numbers depend on the machine's load (the race is a scheduling race).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "stock": (),
    "recheck-after-pin": ("relay-recheck-after-pin.patch",),
    "reserve-slot-first": ("relay-reserve-slot-first.patch",),
}
SHARD_SIZE = 16384
STREAM_STATE = 64


@dataclass(frozen=True)
class Trial:
    phantoms: int
    shards_total: int
    kmod_pins: int


@dataclass(frozen=True)
class Summary:
    variant: str
    threads: int
    trials: int
    trials_with_phantoms: int
    phantom_rate: float
    rate_low: float
    rate_high: float
    mean_phantoms: float
    pins_match: bool


def run_trial(
    bufferpool: ModuleType, kmodclient: ModuleType, kmod_dir: Path, table: str, threads: int
) -> Trial:
    """One fill cliff met by `threads` allocators released together."""
    client = kmodclient.KmodClient(kmod_dir, table)
    try:
        pool = bufferpool.BufferPool(SHARD_SIZE, client, log=ignore, on_pin_failure=reraise)
        pool.alloc(SHARD_SIZE, "fill")
        release_together(threads, client.connect, lambda: pool.alloc(STREAM_STATE, "stream_stats"))
        stats = pool.stats()
        pins = read_pins(kmod_dir / table / "status")
    finally:
        client.close()
    needed = stats["shards_active"] + stats["shards_full"] + stats["shards_free"]
    return Trial(stats["shards_total"] - needed, stats["shards_total"], pins)


def release_together(
    threads: int, prepare: Callable[[], object], work: Callable[[], object]
) -> None:
    """In each of `threads` threads: `prepare`, wait at one barrier, then `work` once."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            prepare()
            start.wait(timeout=10)
            work()
        except BaseException as err:  # reported in the caller's thread
            errors.append(err)

    workers = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)
    if any(thread.is_alive() for thread in workers):
        raise RuntimeError("a worker thread did not finish within 30 s")
    if errors:
        raise errors[0]


def ignore(level: str, text: str) -> None:
    pass


def reraise(err: Exception) -> None:
    raise err


def read_pins(status_path: Path) -> int:
    for line in status_path.read_text().splitlines():
        label, _, value = line.partition(":")
        if label == "Memory pins":
            return int(value)
    raise ValueError(f"{status_path}: no 'Memory pins:' line")


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sane at 0 and n)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def summarize(variant: str, threads: int, trials: Sequence[Trial]) -> Summary:
    hits = sum(1 for trial in trials if trial.phantoms > 0)
    low, high = wilson_interval(hits, len(trials))
    return Summary(
        variant=variant,
        threads=threads,
        trials=len(trials),
        trials_with_phantoms=hits,
        phantom_rate=hits / len(trials),
        rate_low=low,
        rate_high=high,
        mean_phantoms=sum(trial.phantoms for trial in trials) / len(trials),
        pins_match=all(trial.kmod_pins == trial.shards_total for trial in trials),
    )


def format_table(summaries: Sequence[Summary]) -> str:
    header = f"{'variant':<20} {'K':>2} {'trials':>6} {'phantom rate':>12} {'95% interval':>17} "
    header += f"{'phantoms/cliff':>14} {'kmod=pool':>9}"
    rows = [header, "-" * len(header)]
    for s in summaries:
        interval = f"[{s.rate_low:6.1%}, {s.rate_high:6.1%}]"
        rows.append(
            f"{s.variant:<20} {s.threads:>2} {s.trials:>6} {s.phantom_rate:>12.1%} "
            f"{interval:>17} {s.mean_phantoms:>14.2f} {'yes' if s.pins_match else 'NO':>9}"
        )
    return "\n".join(rows)


def make_tree(root: Path, patch_names: Sequence[str]) -> Path:
    """A copy of containers/ and scenarios/patches/ with the patches applied by git."""
    ignore_cache = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "containers", root / "containers", ignore=ignore_cache)
    shutil.copytree(ROOT / "scenarios" / "patches", root / "scenarios" / "patches")
    if patch_names:
        paths = [str(root / "scenarios" / "patches" / name) for name in patch_names]
        subprocess.run(["git", "apply", *paths], cwd=root, check=True)
    return root


def load_module(path: Path, unique_name: str) -> ModuleType:
    """Import a relay module from `path` under a unique name (its siblings from sys.path)."""
    spec = importlib.util.spec_from_file_location(unique_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def running_kmod(kmod_py: Path, state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    state_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, str(kmod_py), "--dir", str(state_dir)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not (state_dir / "control.sock").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kmod did not start")
            time.sleep(0.02)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_bench(trials: int, thread_counts: Sequence[int], work: Path) -> list[Summary]:
    stock_relay = ROOT / "containers" / "relay"
    sys.path.insert(0, str(stock_relay))  # atomic and kmodclient are the same in every variant
    import kmodclient

    summaries = []
    with running_kmod(ROOT / "containers" / "kmod" / "kmod.py", work / "kmod") as _:
        for variant, patches in VARIANTS.items():
            tree = make_tree(work / variant, patches)
            bufferpool = load_module(
                tree / "containers" / "relay" / "bufferpool.py", f"bufferpool_{variant}"
            )
            for threads in thread_counts:
                results = [
                    run_trial(
                        bufferpool, kmodclient, work / "kmod", f"{variant}-{threads}-{i}", threads
                    )
                    for i in range(trials)
                ]
                summaries.append(summarize(variant, threads, results))
                print(format_table(summaries[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return summaries


def write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500, help="trials per variant and K")
    parser.add_argument("--threads", type=int, nargs="+", default=[4, 8], help="K values")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    if args.trials < 1 or any(k < 2 for k in args.threads):
        parser.error("need --trials >= 1 and every --threads value >= 2")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sut_race.") as work:
        summaries = run_bench(args.trials, args.threads, Path(work))
    elapsed = time.monotonic() - started
    table = format_table(summaries)
    note = f"{args.trials} trials per row, {elapsed:.0f} s; scheduling race: machine load matters"
    print(f"{table}\n{note}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "schema_version": 1,
        "benchmark": "sut_race",
        "shard_size": SHARD_SIZE,
        "elapsed_s": round(elapsed, 1),
        "rows": [asdict(s) for s in summaries],
    }
    write_atomically(args.out / "sut_race.json", json.dumps(report, indent=2) + "\n")
    write_atomically(args.out / "sut_race.txt", f"{table}\n{note}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
