"""End to end: bursts of new streams fill tiny shards until the 17th pin aborts the relay;
with the kmod-max-shm-areas-32 patch the same load gets twice the shards before the abort."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kmod_helpers import KmodProcess
from relay_helpers import RelayProcess, rtp_endpoints, rtp_packet, running_relay, set_up_call

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHARD_SIZE = 4096  # 4 to 5 streams per shard: a fill cliff every few new streams
CALLS_PER_BURST = 6
MAX_BURSTS = 30
CRIT = re.compile(r"^\[\d+\.\d{6}\] CRIT: \[worker-\d+\] Failed to pin shared kernel memory: ",
                  re.M)


@dataclass(frozen=True)
class Outcome:
    calls: int  # calls set up before the relay died
    shards: int  # make_shard lines (a thread may abort before another logs its shard)
    returncode: int | None
    log: str


def burst_until_abort(relay: RelayProcess, deadline: float) -> int:
    """Set up calls in bursts, starting all their streams at once; the calls made."""
    calls = 0
    with rtp_endpoints(relay.host, 2 * CALLS_PER_BURST * MAX_BURSTS) as endpoints:
        for burst in range(MAX_BURSTS):
            if relay.process.poll() is not None or time.monotonic() > deadline:
                break
            pairs = []
            for i in range(CALLS_PER_BURST):
                caller, callee = endpoints[2 * calls], endpoints[2 * calls + 1]
                try:
                    pairs.append((caller, callee, set_up_call(relay.ng, f"b{burst}c{i}", caller,
                                                              callee)))
                except AssertionError:  # the relay died between two requests
                    return calls
                calls += 1
            for caller, callee, ports in pairs:  # all first packets back to back
                caller.send(rtp_packet(1, 1, b"\0" * 160), ports.for_caller)
                callee.send(rtp_packet(1, 2, b"\0" * 160), ports.for_callee)
            wait_until_streams_started(relay, 2 * calls)
    return calls


def wait_until_streams_started(relay: RelayProcess, streams: int, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while relay.process.poll() is None and time.monotonic() < end:
        try:
            if relay.ng.request({"command": "statistics"}, timeout=0.5)["streams"] >= streams:
                return
        except AssertionError:
            return  # no reply: it is dying
        time.sleep(0.01)


def run_load(kmod: KmodProcess, relay_py: Path, log_path: Path, seconds: float) -> Outcome:
    with running_relay(kmod.dir, log_path, relay_py=relay_py, workers=4,
                       shard_size=SHARD_SIZE, table="1") as relay:
        calls = burst_until_abort(relay, time.monotonic() + seconds)
        returncode = relay.wait_exit(5)
        log = relay.log()
    return Outcome(calls, log.count("make_shard num="), returncode, log)


def assert_aborted_on_pin(outcome: Outcome, kmod: KmodProcess, ceiling: int) -> None:
    assert outcome.returncode == -signal.SIGABRT, outcome.log[-2000:]
    assert CRIT.search(outcome.log), outcome.log[-2000:]
    assert outcome.shards <= ceiling
    pins = [int(n) for n in re.findall(r"table=1 pin addr=\S+ size=\d+ pins=(\d+)", kmod.log())]
    assert max(pins) == ceiling
    assert "error E2BIG" in kmod.log()
    kmod.wait_for_status("1", "Memory pins", 0)  # the dead relay's pins are released


def test_stock_aborts_at_16_pins_and_the_32_patch_lasts_longer(
    kmod_process: KmodProcess,
    start_kmod: Callable[[Path], KmodProcess],
    patched_tree: Callable[..., Path],
    tmp_path: Path,
) -> None:
    stock = run_load(kmod_process, Path(__file__).resolve().parents[2] / "containers" / "relay"
                     / "relay.py", tmp_path / "stock.log", seconds=12)
    assert_aborted_on_pin(stock, kmod_process, ceiling=16)

    tree = patched_tree("kmod-max-shm-areas-32.patch")
    kmod32 = start_kmod(tree)
    patched = run_load(kmod32, tree / "containers" / "relay" / "relay.py",
                       tmp_path / "patched.log", seconds=15)
    assert_aborted_on_pin(patched, kmod32, ceiling=32)
    assert patched.calls > stock.calls, (stock.calls, patched.calls)
