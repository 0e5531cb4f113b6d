"""`rig run --cluster` on a 3-node ray.cluster_utils.Cluster on 127.0.0.1: a head without
generator slots and two nodes with one `rig_generator` each. A 2-generator run against the
model relay places one generator actor on each node and merges both into one summary, with
each node's burst spreads and a series.csv column per node and load counter; a generator
node killed mid-run makes the verdict error, naming that node; a cluster without
generator slots is refused in one line."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from rig.distribute_ray import LOOPBACK_ONLY_ENV
from rig.errors import InfraError
from rig.results import read_series
from rig.runner import RunRequest, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

SCENARIO = """\
name: two-generator-nodes
duration: 3
settle: 1
seed: 4
services:
  kmod: {source: containers/kmod}
  relay: {source: containers/relay, workers: 2, shard_size: 65536}
  patches: []
load:
  processes: 2
  cps: 30
  max_concurrent: 100
  hold: 0.5
  outcomes: {answered: 1.0}
  rtp: {codec: PCMU, ptime: 20}
bursts:
  first_at: 1.0
  every: 1.0
  count: 2
  workers: 2
  streams_per_worker: 2
  hold: 0.5
probes:
  interval: 0.25
checks:
  relay_alive: {}
  calls_completed: {min_ratio: 0.9}
"""


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(LOOPBACK_ONLY_ENV, "0")  # before Ray is first imported here
        from ray.cluster_utils import Cluster

        # a lost node is seen by the GCS within about a second, not the default 30 s
        made = Cluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 1, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 300,
                               "health_check_failure_threshold": 3}})
        try:
            generators = [made.add_node(num_cpus=1, resources={"rig_generator": 1})
                          for _ in range(2)]
            made.wait_for_nodes()
            yield made, generators
        finally:
            made.shutdown()


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "two-generator-nodes.yaml"
    path.write_text(SCENARIO)
    return path


def read_events(run: Path) -> list[dict]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_two_generator_nodes_run_one_load_with_one_summary(cluster, tmp_path, scenario):
    made, generators = cluster
    outcome = run_scenario(RunRequest(scenario_path=scenario, out=tmp_path / "run",
                                      cluster=made.address, progress=False))
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    summary = outcome.summary
    assert summary.cluster is not None
    nodes = {n.node_id: n for n in summary.cluster.nodes}
    assert set(nodes) == {g.node_id for g in generators}, "one generator on each slot node"
    assert sorted(i for n in nodes.values() for i in n.generators) == [0, 1]
    for node in nodes.values():  # one machine's clock: the offset is within the round trip
        assert node.delay_s is not None and abs(node.offset_s) <= node.delay_s + 0.005
    events = read_events(tmp_path / "run")
    stop = next(e["data"] for e in events if e["kind"] == "load_stop")
    per = stop["processes"]
    assert {p["node_id"] for p in per} == set(nodes)
    assert all(p["completed"] > 10 for p in per), per
    assert summary.load.calls_attempted == sum(p["attempted"] for p in per)
    assert summary.load.calls_completed == sum(p["completed"] for p in per)
    bursts = [e["data"] for e in events if e["kind"] == "burst"]
    assert [b["index"] for b in bursts] == [0, 1] and summary.bursts.count == 2
    assert max(b["streams"] for b in bursts) > 4  # calls of both nodes in one burst
    assert all(set(b["nodes"]) == set(nodes) for b in bursts), bursts  # spread per node
    # across nodes, on the coordinator's clock: one machine, one start instant
    assert all(b["spread_us"] < 50_000 for b in bursts), bursts
    assert summary.bursts.spread_max_us == max(b["spread_us"] for b in bursts)
    # each node's own spreads: its entries in the burst events' `nodes`
    assert [(n.label, n.generators) for n in summary.cluster.nodes] == [
        ("node1", [0]), ("node2", [1])]  # labelled in the generators' order
    for node in summary.cluster.nodes:
        own = [b["nodes"][node.node_id] for b in bursts]
        assert node.bursts.count == 2 and node.bursts.spread_max_us == max(own), (node, own)
    # series.csv: each load counter per node beside its sum
    labels = ["node1", "node2"]
    series = read_series(tmp_path / "run")
    load = [c for c in series.names() if c.startswith("load.") and "@" not in c]
    assert "load.calls_completed" in load and "load.calls_active" in load
    assert {f"{c}@{label}" for c in load for label in labels} <= set(series.names())
    for sample in series.samples:  # one reading: a row's nodes add up to its sum
        for c in load:
            parts = [sample.values.get(f"{c}@{label}") for label in labels]
            if c in sample.values and None not in parts:
                assert sum(parts) == sample.values[c], (sample, c)
    last = series.samples[-1].values
    assert all(last[f"load.calls_completed@{label}"] > 10 for label in labels), last
    assert "load.calls_completed@node1" in summary.counters


def test_sigterm_mid_run_kills_every_actor_and_frees_the_slots(
        cluster, tmp_path, scenario, private_runtime):
    made, _ = cluster
    run = tmp_path / "run"
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(scenario), "--cluster", made.address,
         "--no-progress", "--out", str(run), "--set", "duration=20"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(private_runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(e["kind"] == "load_start" for e in read_events(run)):
            assert rig.poll() is None and time.monotonic() < deadline, rig.stdout
            time.sleep(0.05)
        time.sleep(0.5)
        rig.send_signal(signal.SIGTERM)
        out, _ = rig.communicate(timeout=30)
    finally:
        if rig.poll() is None:
            rig.kill()
    assert rig.returncode == 130, out
    assert "SIGTERM received" not in out  # Ray's own handler did not take over
    assert wait_gone(made)
    # the placement group went too: both slots are free for the next run (its placement
    # would wait PLACEMENT_TIMEOUT_S and fail otherwise)
    import ray

    ray.init(address=made.address, log_to_driver=False)
    try:
        assert ray.available_resources().get("rig_generator") == 2
    finally:
        ray.shutdown()


def test_a_generator_node_lost_mid_run_is_an_error_naming_it(cluster, tmp_path, scenario):
    made, generators = cluster
    victim = generators[1]
    run = tmp_path / "run"
    killed = threading.Event()

    def kill_when_loaded() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(e["kind"] == "load_start" for e in read_events(run)):
                time.sleep(1.0)
                made.remove_node(victim, allow_graceful=False)
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_loaded, daemon=True)
    killer.start()
    started = time.monotonic()
    outcome = run_scenario(RunRequest(scenario_path=scenario, out=run, cluster=made.address,
                                      progress=False))
    killer.join(5)
    assert killed.is_set()
    assert outcome.verdict == "error"
    assert victim.node_id in (outcome.summary.error or ""), outcome.summary.error
    assert outcome.summary.load.calls_attempted and outcome.summary.load.calls_attempted > 0
    assert time.monotonic() - started < 60
    assert wait_gone(made), "the surviving generator actor is killed at the end of the run"


def wait_gone(made, timeout: float = 10.0) -> bool:
    """No generator actor process left on this cluster's nodes (ray.kill at the end of the
    run). Only this cluster's: other tests on the machine (pytest-xdist) run actors too."""
    raylets = {info.process.pid for node in made.list_all_nodes()
               for info in node.all_processes.get("raylet", [])}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in psutil.process_iter(["cmdline", "ppid"])
                if "GeneratorActor" in " ".join(p.info["cmdline"] or [])
                and p.info["ppid"] in raylets]:
            return True
        time.sleep(0.2)
    return False


def test_a_cluster_with_too_few_generator_slots_is_refused_in_one_line(
        cluster, tmp_path, scenario):
    made, _ = cluster
    with pytest.raises(InfraError, match=r"rig_generator slot\(s\), the run needs 3") as info:
        run_scenario(RunRequest(scenario_path=scenario, out=tmp_path / "run",
                                cluster=made.address, progress=False,
                                overrides=("load.processes=3",)))
    assert "\n" not in str(info.value)


def test_an_address_where_no_cluster_answers_is_refused_in_one_line(tmp_path, scenario):
    from rig.topology.loopback import block_host

    host = block_host("250.9")  # this process's own block: nothing listens on its port 9
    started = time.monotonic()
    with pytest.raises(InfraError, match="no Ray cluster answers there") as info:
        run_scenario(RunRequest(scenario_path=scenario, out=tmp_path / "run",
                                cluster=f"{host}:9", progress=False))
    assert "\n" not in str(info.value) and time.monotonic() - started < 30
