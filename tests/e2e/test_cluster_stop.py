"""Stopping a `rig run --cluster` on the 3-node cluster of test_cluster_run.py (this module
starts its own): Ctrl-C while the rig joins Ray, once its actors are up but before the load,
and mid-load leaves no actor, no placement group, both generator slots free and no process
of the run; a SIGKILLed coordinator's actors end with it, and `rig gc --cluster` removes
whatever a run left on the cluster, and nothing else."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_cluster_run import (  # noqa: F401 - cluster and scenario: fixtures
    SCENARIO,
    cluster,
    read_events,
    scenario,
)
from waiting import wait_for

from rig.load.ray_driver import NAME_PREFIX, NAMESPACE, actor_name, group_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

SLOTS = 2  # the fixture's two generator nodes, one rig_generator each
EXIT_BOUND_S = 30  # a Ctrl-C'd rig has stopped its services and left Ray within this


@pytest.fixture(scope="module")
def ray_view(cluster):  # noqa: F811 - the fixture imported above
    """This process joined to the cluster, to look at its actors and placement groups."""
    import ray

    made, _ = cluster
    ray.init(address=made.address, namespace=NAMESPACE, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def reaped(private_runtime):
    """Whatever a failed test left here (a rig it had to SIGKILL) is removed after it."""
    yield
    from rig.topology.runtime import collect_garbage

    collect_garbage()


# ---- what of the rig is on the cluster ---------------------------------------------------


def rig_actors(ray: Any) -> list[dict]:
    """The cluster's actors of a run that are not dead, with their Pid (ray.util.state
    needs the dashboard, which the plain `ray` package does not install)."""
    from ray._private import state

    return [a for a in state.actors().values()
            if (a.get("Name") or "").startswith(NAME_PREFIX) and a["State"] != "DEAD"]


def ends(ray: Any, run_id: str) -> dict[str, str]:
    """How each actor of the run ended: RAY_KILL (the rig's own ray.kill), OWNER_DIED (Ray,
    once the coordinator was gone), ...; its state while it is not dead."""
    from ray._private import state

    found = {}
    for a in state.actors().values():
        if (a.get("Name") or "").startswith(f"{NAME_PREFIX}{run_id}-"):
            reason = re.search(r"reason: (\w+)", str(a.get("DeathCause") or ""))
            found[a["Name"]] = reason.group(1) if reason else a["State"]
    return found


def named_rig_actors(ray: Any) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(NAME_PREFIX)]


def rig_groups(ray: Any) -> list[str]:
    from ray.util.placement_group import placement_group_table

    return [g["name"] for g in placement_group_table().values()
            if (g.get("name") or "").startswith(NAME_PREFIX) and g["state"] != "REMOVED"]


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def labelled(runtime: Path) -> dict[int, str]:
    """Processes labelled with a run of this test's runtime folder (rig/topology/runtime.py),
    and the run id of each."""
    found = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("RIG_RUN_ID") and env.get("RIG_RUNTIME_LABEL") == str(runtime):
            found[proc.pid] = env["RIG_RUN_ID"]
    return found


def left_on_cluster(ray: Any) -> list[str]:
    """What of the rig is still on the cluster; empty when nothing is."""
    left = []
    if named := named_rig_actors(ray):
        left.append(f"named actors {named}")
    if actors := rig_actors(ray):
        left.append(f"actors {[(a['Name'], a['State']) for a in actors]}")
    if groups := rig_groups(ray):
        left.append(f"placement groups {groups}")
    if (free := ray.available_resources().get("rig_generator", 0)) != SLOTS:
        left.append(f"{free} of {SLOTS} rig_generator slots free")
    return left


def left_anywhere(ray: Any, pids: list[int], runtime: Path) -> list[str]:
    left = left_on_cluster(ray)
    if alive := [p for p in pids if running(p)]:
        left.append(f"processes {alive}")
    if mine := labelled(runtime):
        left.append(f"labelled processes {sorted(mine)}")
    return left


def nothing_left(ray: Any, pids: list[int], runtime: Path, timeout: float) -> list[str]:
    """Empty once nothing of the rig is left within `timeout` s; else what still is."""
    if wait_for(lambda: not left_anywhere(ray, pids, runtime), timeout):
        return []
    return left_anywhere(ray, pids, runtime)


# ---- the rig -------------------------------------------------------------------------------


def start_rig(address: str, scenario_path: Path, run: Path, runtime: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(scenario_path), "--cluster", address,
         "--no-progress", "--out", str(run), "--set", "duration=20"],
        env={**os.environ, "RIG_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def gc(address: str, runtime: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", "gc", "--cluster", address],
                          env={**os.environ, "RIG_RUNTIME_DIR": str(runtime)},
                          capture_output=True, text=True, timeout=120)


def has_event(run: Path, kind: str) -> bool:
    return any(e["kind"] == kind for e in read_events(run))


def talks_to(pid: int, port: int) -> bool:
    """The process holds a TCP connection to `port` (ray.init's to the GCS)."""
    try:
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                   for c in psutil.Process(pid).net_connections(kind="tcp"))
    except psutil.Error:
        return False


def run_processes(rig: subprocess.Popen) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(rig.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_or_fail(what: str, predicate, rig: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if rig.poll() is not None or time.monotonic() > deadline:
            out = stop(rig)
            pytest.fail(f"never saw {what} (rig exit {rig.returncode}): {out[-2000:]}")
        time.sleep(0.02)


def stop(rig: subprocess.Popen) -> str:
    """A rig that a failed test leaves: Ctrl-C, then SIGKILL; its output not read yet."""
    if rig.stdout is None or rig.stdout.closed:
        return ""
    if rig.poll() is None:
        rig.send_signal(signal.SIGINT)
        try:
            return rig.communicate(timeout=EXIT_BOUND_S)[0]
        except subprocess.TimeoutExpired:
            rig.kill()
    return rig.communicate()[0]


# ---- Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["joining", "actors-up", "mid-load"])
def test_ctrl_c_leaves_nothing_on_the_cluster_nor_here(
        cluster, ray_view, tmp_path, scenario, private_runtime, point):  # noqa: F811
    made, _ = cluster
    ray = ray_view
    gcs_port = int(made.address.rpartition(":")[2])
    run = tmp_path / "run"
    rig = start_rig(made.address, scenario, run, private_runtime)
    try:
        wait_or_fail("the run's services", lambda: labelled(private_runtime), rig)
        (run_id,) = set(labelled(private_runtime).values())  # the relay's and kmod's label
        if point == "joining":
            wait_or_fail("the rig's connection to the GCS",
                         lambda: talks_to(rig.pid, gcs_port), rig)
        elif point == "actors-up":
            wait_or_fail("both generator actors alive", lambda: len(
                [a for a in rig_actors(ray) if a["State"] == "ALIVE"]) == SLOTS, rig)
            assert sorted(named_rig_actors(ray)) == [actor_name(run_id, k) for k in (0, 1)]
            assert rig_groups(ray) == [group_name(run_id)]
        else:
            wait_or_fail("the load's start", lambda: has_event(run, "load_start"), rig)
            time.sleep(1.0)
        pids = run_processes(rig) + [int(a["Pid"]) for a in rig_actors(ray)]
        rig.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, _ = rig.communicate(timeout=EXIT_BOUND_S)
        took = time.monotonic() - sent
    finally:
        stop(rig)
    assert rig.returncode == 130, out
    assert "interrupted" in out
    if point == "joining":  # the interrupt came before the actors were placed
        assert not has_event(run, "cluster"), "too late: the actors were up"
    if point == "actors-up":
        assert not has_event(run, "load_start"), "too late: the load had started"
    assert not (left := nothing_left(ray, pids, private_runtime, 10)), left
    # the rig killed its actors itself, before it left Ray (Ray ends them with their owner
    # too, but only once the coordinator's process is gone)
    if point == "joining":
        assert set(ends(ray, run_id).values()) <= {"RAY_KILL"}, ends(ray, run_id)
    else:
        assert ends(ray, run_id) == {actor_name(run_id, k): "RAY_KILL" for k in (0, 1)}
    print(f"{point}: the rig exited {took:.1f} s after SIGINT")


HELD = """\
import os, signal, sys, threading, traceback
from rig.distribute_ray import start_ray
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # while Ray starts
try:
    start_ray(sys.argv[1], namespace="rig")
except KeyboardInterrupt as exc:
    import ray
    print(traceback.extract_tb(exc.__traceback__)[-1].name, ray.is_initialized())
"""


def test_a_ctrl_c_while_ray_starts_is_held_until_it_has_and_ray_is_left(cluster):  # noqa: F811
    """Let into ray.init, the rig crashed at exit now and then (SIGSEGV, SIGABRT)."""
    made, _ = cluster
    done = subprocess.run([sys.executable, "-c", HELD, made.address], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["start_ray", "False"], done.stdout + done.stderr


# ---- SIGKILL and rig gc --cluster -----------------------------------------------------------


def test_gc_on_a_clean_cluster_removes_nothing(cluster, ray_view, private_runtime):  # noqa: F811
    made, _ = cluster
    done = gc(made.address, private_runtime)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "removed 0 dead run(s), killed 0 process(es), deleted 0 folder(s)",
        f"cluster {made.address}: killed 0 actor(s), removed 0 placement group(s)"]


def test_a_sigkilled_coordinators_actors_end_and_gc_leaves_nothing(
        cluster, ray_view, tmp_path, scenario, private_runtime):  # noqa: F811
    made, _ = cluster
    ray = ray_view
    run = tmp_path / "run"
    rig = start_rig(made.address, scenario, run, private_runtime)
    try:
        wait_or_fail("the load's start", lambda: has_event(run, "load_start"), rig)
        time.sleep(1.0)
        actors = rig_actors(ray)
        assert len(actors) == SLOTS
        (run_id,) = set(labelled(private_runtime).values())
        pids = run_processes(rig) + [int(a["Pid"]) for a in actors]
        rig.kill()
        rig.communicate()
        killed = time.monotonic()
    finally:
        stop(rig)
    ended = wait_for(lambda: not left_on_cluster(ray), 30)
    print(f"after SIGKILL: Ray {'ended' if ended else 'did NOT end'} the actors and the "
          f"placement group in {time.monotonic() - killed:.1f} s: {ends(ray, run_id)}")
    done = gc(made.address, private_runtime)  # the run's services here, whatever Ray left
    assert done.returncode == 0, done.stderr
    assert "removed 1 dead run(s)" in done.stdout, done.stdout
    assert not (left := nothing_left(ray, pids, private_runtime, 10)), left


def test_gc_removes_a_runs_leftovers_and_nothing_else(
        cluster, ray_view, private_runtime):  # noqa: F811
    """Detached actors and group stand for what Ray did not end with a killed owner."""
    made, _ = cluster
    ray = ray_view
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from rig.load.ray_driver import GeneratorActor

    remote = ray.remote(GeneratorActor)
    group = placement_group([{"rig_generator": 1}] * SLOTS, strategy="SPREAD",
                            name=group_name("left"), lifetime="detached")
    assert group.wait(30)
    left = [remote.options(
        name=actor_name("left", k), lifetime="detached", num_cpus=0,
        resources={"rig_generator": 1},
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=k)).remote() for k in range(SLOTS)]
    # outside any group: removing the group would not end it
    left.append(remote.options(name=actor_name("stray", 0), lifetime="detached",
                               num_cpus=0).remote())
    others = [remote.options(name="not-a-run", lifetime="detached", num_cpus=0).remote(),
              remote.options(name=actor_name("left", 0), namespace="elsewhere",
                             lifetime="detached", num_cpus=0).remote()]
    try:
        ray.get([a.where.remote() for a in left + others], timeout=60)
        assert ray.available_resources().get("rig_generator", 0) == 0
        done = gc(made.address, private_runtime)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert sorted(lines[1:-1]) == [
            f"killed actor {actor_name('left', 0)} (namespace {NAMESPACE})",
            f"killed actor {actor_name('left', 1)} (namespace {NAMESPACE})",
            f"killed actor {actor_name('stray', 0)} (namespace {NAMESPACE})",
            f"removed placement group {group_name('left')} (namespace {NAMESPACE})"], lines
        assert lines[-1] == (f"cluster {made.address}: killed 3 actor(s), "
                             "removed 1 placement group(s)")
        assert wait_for(lambda: not named_rig_actors(ray) and not rig_groups(ray), 10)
        ray.get([a.where.remote() for a in others], timeout=10)  # not the rig's: alive
        for actor in others:  # the actor table does not say which namespace
            ray.kill(actor)
        assert not (what := nothing_left(ray, [], private_runtime, 10)), what
    finally:
        for actor in left + others:
            ray.kill(actor)
        remove_placement_group(group)


# ---- without a cluster ---------------------------------------------------------------------


def test_gc_at_an_address_where_no_cluster_answers_is_one_line_exit_3(private_runtime):
    from rig.topology.loopback import block_host

    host = block_host("250.9")  # this process's own block: nothing listens on its port 9
    started = time.monotonic()
    done = gc(f"{host}:9", private_runtime)
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""  # refused before anything was removed
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no Ray cluster answers there" in done.stderr
    assert time.monotonic() - started < 30


def test_gc_of_the_local_cluster_is_a_usage_error(private_runtime):
    done = gc("local", private_runtime)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "`local`" in done.stderr


def test_gc_without_a_cluster_imports_no_ray(private_runtime):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from rig.cli import main; code = main(['gc']); "
         "print('ray' in sys.modules); sys.exit(code)"],
        env={**env, "RIG_RUNTIME_DIR": str(private_runtime)},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False", done.stdout
