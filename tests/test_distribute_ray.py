"""Runs as Ray tasks, on a real Ray: an embedded one (`--cluster local`) listens on loopback
only and leaves nothing behind; a 2-node ray.cluster_utils.Cluster joined by its address
runs two runs at once on its two nodes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from rig.distribute_ray import LOOPBACK_ONLY_ENV, RayPool
from rig.runner import RunRequest

pytestmark = [pytest.mark.slow]
SLOTS_ENV = "RIG_TEST_SLOTS"
RAY_DAEMONS = ("gcs_server", "raylet")


def requests(tmp_path: Path, n: int) -> list[RunRequest]:
    return [RunRequest(scenario_path=Path("s.yaml"), overrides=(f"seed={i}",),
                       results_root=Path("results")) for i in range(n)]


def where(request: RunRequest) -> tuple[str, int, str, str]:
    """Which node and process ran it, with the paths it was given; waits (up to a minute)
    until two runs are going, so that two of them ran at once."""
    import ray

    slots = os.environ.get(SLOTS_ENV)
    if slots:
        Path(slots, request.overrides[0]).touch()
        deadline = time.monotonic() + 60
        while len(list(Path(slots).iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return (ray.get_runtime_context().get_node_id(), os.getpid(), str(request.scenario_path),
            str(request.results_root))


@pytest.fixture(autouse=True)
def by_value() -> None:
    """Ray workers do not have tests/ on their path: this module's functions go by value."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def listening_ips(root: psutil.Process) -> set[str]:
    pids = {p.pid for p in root.children(recursive=True)}
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def ray_daemons(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in root.children(recursive=True):
        try:
            if child.name() in RAY_DAEMONS:
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_an_embedded_ray_listens_on_loopback_only_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    me = psutil.Process()
    pool = RayPool("local", 2)
    with pool:
        done = sorted(pool.each(where, requests(tmp_path, 3)), key=lambda d: d.index)
        ips = listening_ips(me)
        assert ray_daemons(me), "an embedded Ray runs its daemons under this process"
        temp = pool.temp
    assert [d.error for d in done] == [None] * 3
    assert {d.outcome[2] for d in done} == {str(tmp_path / "s.yaml")}  # made absolute
    assert {d.outcome[3] for d in done} == {str(tmp_path / "results")}
    assert ips and ips <= {"127.0.0.1", "::ffff:127.0.0.1"}, ips
    assert temp is not None and not Path(temp).exists()
    deadline = time.monotonic() + 30
    while ray_daemons(me) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_daemons(me)


def test_a_two_node_cluster_runs_two_runs_at_once_on_its_two_nodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(LOOPBACK_ONLY_ENV, "0")  # before Ray is first imported here
    from ray.cluster_utils import Cluster

    slots = tmp_path / "slots"
    slots.mkdir()
    monkeypatch.setenv(SLOTS_ENV, str(slots))
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        startup = time.monotonic() - started
        with RayPool(cluster.address, None) as pool:
            done = list(pool.each(where, requests(tmp_path, 2)))
    finally:
        cluster.shutdown()
    assert [d.error for d in done] == [None, None]
    assert len({d.outcome[0] for d in done}) == 2, "one run on each node"
    print(f"2-node Cluster up in {startup:.1f} s")
