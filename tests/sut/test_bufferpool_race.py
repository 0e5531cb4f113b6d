"""The pin race at a fill cliff, stock vs each fix, against a real kmod process.

Deterministic: a barrier in the `after_no_room` hook holds n threads until all of them have
found no room, so all n reach the shard-making step together. Statistical: no hooks, K
threads released together, many fresh pools; the trial logic is the benchmark's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.timing  # statistical races: the thread interleaving is the result

SHARD = 16384
FIXES = {
    "recheck": ("relay-recheck-after-pin.patch",),
    "reserve": ("relay-reserve-slot-first.patch",),
}
VARIANTS = {"stock": (), **FIXES}


class CliffGate:
    """`after_no_room` hook: once armed, holds threads until n have arrived, then disarms."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, action=self.disarm, timeout=10)
        self.armed = False

    def disarm(self) -> None:
        self.armed = False

    def __call__(self) -> None:
        if self.armed:
            self.barrier.wait()


def reraise(err: Exception) -> None:
    raise err


def phantoms(stats: dict[str, int]) -> int:
    needed = stats["shards_active"] + stats["shards_full"] + stats["shards_free"]
    return stats["shards_total"] - needed


def relay_modules(tree: Path, import_from: Callable[[Path, str], ModuleType]) -> Any:
    folder = tree / "containers" / "relay"
    return import_from(folder, "bufferpool"), import_from(folder, "kmodclient")


@pytest.fixture
def race_bench(import_from: Callable[[Path, str], ModuleType]) -> ModuleType:
    return import_from(Path(__file__).resolve().parents[2] / "bench", "sut_race")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("threads", [2, 4, 8])
def test_threads_meeting_at_a_fill_cliff(
    variant: str, threads: int, patched_tree: Any, import_from: Any, kmod_process: Any
) -> None:
    bufferpool, kmodclient = relay_modules(patched_tree(*VARIANTS[variant]), import_from)
    client = kmodclient.KmodClient(kmod_process.dir, "race")
    gate = CliffGate(threads)
    logs: list[str] = []
    pool = bufferpool.BufferPool(
        SHARD,
        client,
        lambda level, text: logs.append(text),
        hooks=bufferpool.Hooks(after_no_room=gate),
        on_pin_failure=reraise,
    )
    allocations: list[Any] = []
    try:
        pool.alloc(SHARD, "fill")  # the only shard is now exactly full: a fill cliff
        pins_before = kmod_process.status("race")["Memory pins"]
        gate.armed = True
        run_in_threads(threads, lambda: allocations.append(pool.alloc(64, "stream_stats")))
        stats = pool.stats()
        pins_after = kmod_process.status("race")["Memory pins"]
    finally:
        client.close()

    made = threads if variant == "stock" else 1
    assert pins_after - pins_before == made
    assert stats["shards_total"] == 1 + made and stats["pins"] == 1 + made
    assert phantoms(stats) == made - 1
    assert len([line for line in logs if line.startswith("make_shard ")]) == 1 + made
    assert len({a.address for a in allocations}) == threads


def run_in_threads(threads: int, work: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            work()
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    # Daemon threads: a hung worker fails the test without keeping pytest alive.
    workers = [
        threading.Thread(target=worker, name=f"worker-{i}", daemon=True) for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in workers), "a worker hung"
    if errors:
        raise errors[0]


def run_trials(
    bench: ModuleType, modules: Any, kmod: Any, name: str, threads: int, trials: int
) -> Any:
    bufferpool, kmodclient = modules
    results = [
        bench.run_trial(bufferpool, kmodclient, kmod.dir, f"{name}-{threads}-{i}", threads)
        for i in range(trials)
    ]
    return bench.summarize(name, threads, results)


@pytest.mark.parametrize("threads", [4, 8])
def test_stock_makes_phantoms_in_many_trials(
    threads: int, race_bench: Any, patched_tree: Any, import_from: Any, kmod_process: Any
) -> None:
    modules = relay_modules(patched_tree(), import_from)
    summary = run_trials(race_bench, modules, kmod_process, "stock", threads, trials=40)
    # Meant to fail only if the race stopped happening: measured rates are near 100%.
    assert summary.phantom_rate >= 0.25, summary
    assert summary.pins_match, "kmod's pin count must equal the pool's shards"


@pytest.mark.parametrize("threads", [4, 8])
@pytest.mark.parametrize("fix", FIXES)
def test_fix_makes_no_phantoms_in_150_trials(
    fix: str, threads: int, race_bench: Any, patched_tree: Any, import_from: Any, kmod_process: Any
) -> None:
    # 0 phantoms in 2 x 150 trials per fix bounds its rate below 1% at 95% (rule of three).
    modules = relay_modules(patched_tree(*FIXES[fix]), import_from)
    summary = run_trials(race_bench, modules, kmod_process, fix, threads, trials=150)
    assert summary.trials_with_phantoms == 0, summary
    assert summary.pins_match, "a loser's pin must be given back to kmod"


class FailingPinner:
    def pin(self, addr: int, size: int) -> None:
        raise OSError("Argument list too long (E2BIG)")

    def unpin(self, addr: int) -> None:
        raise AssertionError("nothing was pinned")


def test_reserve_fix_gives_the_claim_back_when_the_pin_fails(
    patched_tree: Any, import_from: Any
) -> None:
    bufferpool, _ = relay_modules(patched_tree(*FIXES["reserve"]), import_from)
    gate = CliffGate(4)
    gate.armed = True
    pool = bufferpool.BufferPool(
        SHARD,
        FailingPinner(),
        lambda level, text: None,
        hooks=bufferpool.Hooks(after_no_room=gate),
        on_pin_failure=reraise,
    )
    failures: list[BaseException] = []

    def alloc_expecting_failure() -> None:
        try:
            pool.alloc(64, "stream_stats")
        except OSError as err:
            failures.append(err)

    run_in_threads(4, alloc_expecting_failure)
    assert len(failures) == 4, "every thread must see the failure, none may wait forever"
    assert pool.stats()["shards_total"] == 0
