"""ProcessDriver: generator processes run their shares from one start and add up exactly."""

import asyncio
import os
import signal
import socket
import time
from typing import Any

import psutil
import pytest

from rig.load.driver import CallPlan, Targets
from rig.load.processes import GeneratorError, ProcessDriver
from rig.load.shares import shares
from rig.topology.loopback import block_host

HOST = block_host("3.40")
MIX = {"answered": 0.55, "busy": 0.15, "cancel": 0.15, "no_answer": 0.15}
CALLS = CallPlan(cps=60.0, max_concurrent=100, hold=0.1, outcomes=MIX, no_answer_timeout=0.15,
                 rtp=None)
TARGETS = Targets(host=HOST, uac_port=5060, uas_port=5080, rtp_ports=(42000, 42999))


class Events:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, data: dict) -> None:
        self.events.append((kind, data))

    def of(self, kind: str) -> list[dict]:
        return [data for k, data in self.events if k == kind]


def run(job: Any) -> Any:
    return asyncio.run(asyncio.wait_for(job, 60))


def test_two_processes_place_the_calls_of_one_and_merge_their_reports():
    events = Events()
    pids: list[int] = []
    driver = ProcessDriver(shares(CALLS, None, TARGETS, seed=3, processes=2), events,
                           on_process=lambda name, pid: pids.append(pid))
    peak: dict[str, float] = {}

    async def main():
        task = asyncio.ensure_future(driver.run(1.0))
        while not task.done():
            snap = driver.snapshot()
            if snap.get("load.calls_completed", 0) > peak.get("load.calls_completed", 0):
                peak.update(snap)
            await asyncio.sleep(0.05)
        return task.result()

    report = run(main())
    per_process = events.of("load_stop")[0]["processes"]
    assert [p["process"] for p in per_process] == [0, 1]
    assert all(p["attempted"] > 20 for p in per_process)  # ~30 each at 30/s
    assert report.calls_attempted == sum(p["attempted"] for p in per_process)
    assert 50 <= report.calls_attempted <= 70 and report.calls_failed == 0
    assert sum(report.outcomes.values()) == report.calls_completed
    assert report.latency["invite_200"].count == report.outcomes["answered"]
    assert 0 < peak["load.calls_completed"] <= report.calls_completed  # summed live
    assert driver.snapshot()["load.calls_completed"] == report.calls_completed
    ended = driver.ended_call_ids()
    assert len(ended) == report.calls_attempted
    assert {i[:3] for i in ended} == {"p0-", "p1-"}
    assert [k for k, _ in events.events] == ["load_start", "load_stop"]
    assert len(pids) == 2 and not any(psutil.pid_exists(p) and _alive(p) for p in pids)


def test_a_generator_that_dies_is_named_with_its_exit_code_and_nothing_is_left():
    pids: list[int] = []
    driver = ProcessDriver(shares(CALLS, None, TARGETS, seed=3, processes=2), Events(),
                           on_process=lambda name, pid: pids.append(pid))

    async def main():
        task = asyncio.ensure_future(driver.run(5.0))
        while driver.snapshot().get("load.calls_completed", 0) < 5:
            await asyncio.sleep(0.05)
        os.kill(pids[1], signal.SIGKILL)
        return await task

    started = time.monotonic()
    with pytest.raises(GeneratorError, match=r"generator process 1 of 2 \(pid \d+\) exited "
                                             r"with code -9 before its report"):
        run(main())
    assert time.monotonic() - started < 5.0  # it does not wait out the duration
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize("when", ["starting", "running"])
def test_cancelling_the_run_stops_every_child(when):
    pids: list[int] = []
    driver = ProcessDriver(shares(CALLS, None, TARGETS, seed=3, processes=2), Events(),
                           on_process=lambda name, pid: pids.append(pid))

    def far_enough() -> bool:
        if when == "starting":
            return len(pids) == 2
        return driver.snapshot().get("load.calls_completed", 0) >= 5

    async def main():
        task = asyncio.ensure_future(driver.run(30.0))
        while not far_enough():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_generator_that_cannot_set_up_says_why():
    parts = shares(CALLS, None, TARGETS, seed=3, processes=2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, parts[1].targets.uas_port))  # process 1's UAS port is in use
        pids: list[int] = []
        driver = ProcessDriver(parts, Events(), on_process=lambda name, pid: pids.append(pid))
        with pytest.raises(GeneratorError, match=r"generator process 1 of 2: OSError: .*"
                                                 r"[Aa]ddress already in use"):
            run(driver.run(1.0))
    assert not any(_alive(p) for p in pids)
