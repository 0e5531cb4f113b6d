"""One run's generators as Ray actors, on the nodes of a cluster (`rig run --cluster`).

RayDriver has ProcessDriver's face (`run`, `snapshot`, `ended_call_ids`) and is also a
context manager: entering joins the cluster (or starts an embedded Ray on 127.0.0.1 for
`--cluster local`), reserves one bundle of the custom resource `rig_generator` per share
in a SPREAD placement group (one generator per node while there are nodes enough), starts
one GeneratorActor in each bundle and measures each node's clock offset to this process
(rig/load/clocksync.py). All that happens before the run's window opens, so Ray's start-up
does not count as load time. `run` then has every actor set its share's LoadDriver up and
say ready, gives all of them one CLOCK_REALTIME instant (moved onto each node's clock by
its offset), polls their counters, and merges their LoadReports.

An actor that does not answer a poll in time, or whose node is gone, ends the load with
GeneratorError naming the node (its id and address); the counters seen so far stay.
Leaving the context, whatever happened (Ctrl-C, SIGTERM, an error), kills every actor,
removes the placement group and leaves Ray. The actors and the placement group are named
after the run (`rig-gen-<run id>-<share>`, `rig-gen-<run id>`) in the Ray namespace `rig`,
so that `rig gc --cluster` finds what a killed coordinator left (remove_leftovers). Ray is
imported only here, and only when a RayDriver is entered or `rig gc --cluster` runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from rig.distribute_ray import first_line, import_ray_or_fail, start_ray
from rig.errors import InfraError
from rig.load.bursts import BurstResult, Deadline
from rig.load.clocksync import Exchange, Offset, best_offset, to_node_clock
from rig.load.loadreport import LoadReport, merge_burst, merge_reports, merge_snapshots
from rig.load.processes import GeneratorError
from rig.load.shares import GeneratorShare
from rig.topology.runtime import local_addresses

RESOURCE = "rig_generator"  # one unit on a node: one generator slot there
SUT_RESOURCE = "rig_sut"  # the node the SUT runs on, and so the coordinator
PLACEMENT_TIMEOUT_S = 30.0
SETUP_TIMEOUT_S = 30.0
START_MARGIN_S = 0.5  # the start instant is this far after the last actor said ready
POLL_S = 0.1
ANSWER_TIMEOUT_S = 5.0  # an actor that does not answer a poll within this is lost
REPORT_GRACE_S = 20.0
CLOCK_EXCHANGES = 5
NAMESPACE = "rig"  # the Ray namespace of every run's actors and placement group
NAME_PREFIX = "rig-gen-"  # what `rig gc --cluster` removes there


def group_name(run_id: str) -> str:
    return f"{NAME_PREFIX}{run_id}"


def actor_name(run_id: str, index: int) -> str:
    return f"{NAME_PREFIX}{run_id}-{index}"


# ---- the actor (runs on a generator node) --------------------------------------------------


class GeneratorActor:
    """One share's LoadDriver in a Ray actor: set up, ready, start at an instant, report."""

    def __init__(self) -> None:
        self.driver: Any = None
        self.task: asyncio.Task[LoadReport] | None = None
        self.origin: asyncio.Future[float] | None = None
        self.is_ready: asyncio.Event | None = None
        self.events: list[tuple[str, dict]] = []
        self.bursts: list[BurstResult] = []
        self.sent: set[str] = set()

    async def where(self) -> dict[str, str]:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": str(os.getpid())}

    async def clock(self) -> tuple[float, float]:
        received = time.time()
        return received, time.time()

    async def setup(self, share: GeneratorShare, duration: float) -> None:
        """Build the share's driver and run it up to its `ready` (sockets bound)."""
        from rig.load.driver import LoadDriver
        from rig.topology.destinations import Destinations, parse_networks

        loop = asyncio.get_running_loop()
        self.origin = loop.create_future()
        self.is_ready = asyncio.Event()

        def on_event(kind: str, data: dict) -> None:
            if kind in ("load_start", "load_stop"):
                return  # the coordinator tells the run's start and stop, once
            if kind == "burst" and self.driver is not None and self.driver.fired_bursts:
                self.bursts.append(self.driver.fired_bursts[-1])
                return
            self.events.append((kind, data))

        async def ready() -> float:
            assert self.is_ready is not None and self.origin is not None
            self.is_ready.set()
            return await self.origin

        targets = share.targets
        if share.own_address:
            import ray

            targets = replace(targets, host=ray.util.get_node_ip_address())
        self.driver = LoadDriver(
            share.calls, share.bursts, targets, on_event, seed=share.seed,
            destinations=Destinations(allowed=parse_networks(list(share.allow))),
            call_id_prefix=share.call_id_prefix)
        self.task = asyncio.ensure_future(self.driver.run(duration, ready=ready))
        waiter = asyncio.ensure_future(self.is_ready.wait())
        await asyncio.wait({self.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task.done():
            self.task.result()  # its setup failed: raise that here

    async def start(self, origin_wall: float) -> None:
        """The start instant, on this node's wall clock, as this node's monotonic time."""
        assert self.origin is not None
        if not self.origin.done():
            self.origin.set_result(time.monotonic() + (origin_wall - time.time()))

    async def poll(self) -> tuple[dict[str, float], list[str], list[BurstResult],
                                  list[tuple[str, dict]]]:
        """Counters now, and the Call-IDs, bursts and events since the last poll."""
        ended = self.driver.ended_call_ids() if self.driver is not None else set()
        new, self.sent = list(ended - self.sent), ended
        bursts, self.bursts = self.bursts, []
        events, self.events = self.events, []
        snapshot = self.driver.snapshot() if self.driver is not None else {}
        return snapshot, new, bursts, events

    async def finish(self) -> LoadReport:
        assert self.task is not None
        return await self.task


# ---- what a killed coordinator left (rig gc --cluster) -------------------------------------


def remove_leftovers(address: str, on_removed: Callable[[str], None]) -> tuple[int, int]:
    """Join the cluster at `address`, kill every actor and remove every placement group of
    the rig's namespace whose name is a run's, leave Ray; (actors, groups) removed.

    Ray ends a run's actors and group with their owner, the coordinator, so this finds
    something only where Ray did not; it also ends the generators of a run still going."""
    start_ray(address, namespace=NAMESPACE)
    ray = import_ray_or_fail()
    from ray.util.placement_group import (
        get_placement_group,
        placement_group_table,
        remove_placement_group,
    )

    actors = groups = 0
    try:
        for name in sorted(ray.util.list_named_actors(all_namespaces=False)):
            if not name.startswith(NAME_PREFIX):
                continue
            try:
                ray.kill(ray.get_actor(name), no_restart=True)
            except ValueError:  # gone since the listing
                continue
            actors += 1
            on_removed(f"killed actor {name} (namespace {NAMESPACE})")
        for entry in placement_group_table().values():
            name = entry.get("name") or ""
            if not name.startswith(NAME_PREFIX) or entry.get("state") == "REMOVED":
                continue
            try:
                group = get_placement_group(name)  # only this namespace's
            except ValueError:
                continue
            remove_placement_group(group)
            groups += 1
            on_removed(f"removed placement group {name} (namespace {NAMESPACE})")
    finally:
        ray.shutdown()
    return actors, groups


# ---- the coordinator ---------------------------------------------------------------------


@dataclass
class _Generator:
    share: GeneratorShare
    actor: Any
    node_id: str = ""
    ip: str = ""
    offset: Offset | None = None
    snapshot: dict[str, float] = field(default_factory=dict)
    report: LoadReport | None = None

    @property
    def name(self) -> str:
        return f"generator actor {self.share.index} on node {self.node_id} ({self.ip})"


class RayDriver:
    """Runs the shares in one Ray actor each; `run` returns their merged LoadReport."""

    def __init__(self, shares: Sequence[GeneratorShare], on_event: Callable[[str, dict], None],
                 *, address: str, run_id: str, workers: int | None = None) -> None:
        if not shares:
            raise ValueError("no generator shares")
        self.shares = list(shares)
        self.run_id = run_id
        self.on_event = on_event
        self.address = address
        self.workers = workers
        self.generators: list[_Generator] = []
        self.group: Any = None
        self.temp: str | None = None
        self._ray: Any = None
        self._closed = False
        self._ended: set[str] = set()
        self._bursts: dict[int, list[tuple[str, BurstResult]]] = {}
        self._mono_to_wall = time.time() - time.monotonic()  # this process's clock pair
        self._with_bursts = sum(1 for s in self.shares if s.bursts is not None)

    # ---- what the runner reads -------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        return merge_snapshots(g.snapshot for g in self.generators)

    def node_snapshots(self) -> dict[str, dict[str, float]]:
        """Per node label (`node1`, ...): its generators' counters summed (series.csv's
        `load.calls_active@node1` columns)."""
        return snapshots_by_node([(g.node_id, g.snapshot) for g in self.generators])

    def ended_call_ids(self) -> set[str]:
        return set(self._ended)

    def nodes(self) -> list[dict[str, Any]]:
        """Per node: its label, id, address, generators and clock offset (summary.json
        `cluster`)."""
        labels = node_labels(g.node_id for g in self.generators)
        out: dict[str, dict[str, Any]] = {}
        for g in self.generators:
            node = out.setdefault(g.node_id, {
                "label": labels[g.node_id], "node_id": g.node_id, "ip": g.ip, "generators": [],
                "offset_s": g.offset.offset_s if g.offset else None,
                "delay_s": g.offset.delay_s if g.offset else None})
            node["generators"].append(g.share.index)
        return list(out.values())

    # ---- the cluster -------------------------------------------------------------------

    def __enter__(self) -> RayDriver:
        try:
            began = time.monotonic()
            self.temp = start_ray(self.address, resources={RESOURCE: len(self.shares)},
                                  namespace=NAMESPACE)
            self._ray = import_ray_or_fail()
            joined = time.monotonic()
            self._check_sut_node()
            self._place()
            placed = time.monotonic()
            self._measure_clocks()
        except BaseException:
            self.close()
            raise
        self.on_event("cluster", {"address": self.address, "nodes": self.nodes(),
                                  "ray_start_s": round(joined - began, 3),
                                  "actors_start_s": round(placed - joined, 3)})
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _check_sut_node(self) -> None:
        """The coordinator starts the SUT and reads its probes where it runs: on the node
        that offers `rig_sut`, when one does."""
        ray = self._ray
        sut = [n["NodeManagerAddress"] for n in ray.nodes()
               if n.get("Alive") and n["Resources"].get(SUT_RESOURCE)]
        if sut and not set(sut) & local_addresses():
            where = ", ".join(sut)
            raise InfraError(f"--cluster {self.address}: the SUT runs where `rig run` runs, "
                             f"and this host is not the node that offers {SUT_RESOURCE} "
                             f"({where}): run the rig there")

    def _place(self) -> None:
        ray = self._ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        wanted = len(self.shares)
        offered = int(ray.cluster_resources().get(RESOURCE, 0))
        if offered < wanted:
            raise InfraError(f"--cluster {self.address}: the cluster offers {offered} "
                             f"{RESOURCE} slot(s), the run needs {wanted} (start each "
                             f"generator node with --resources '{{\"{RESOURCE}\": 1}}')")
        self.group = placement_group([{RESOURCE: 1}] * wanted, strategy="SPREAD",
                                     name=group_name(self.run_id))
        if not self.group.wait(PLACEMENT_TIMEOUT_S):
            raise InfraError(f"--cluster {self.address}: {wanted} {RESOURCE} slot(s) were "
                             f"not free within {PLACEMENT_TIMEOUT_S:.0f} s")
        remote = ray.remote(GeneratorActor)
        for k, share in enumerate(self.shares):
            actor = remote.options(
                name=actor_name(self.run_id, share.index), num_cpus=0,
                resources={RESOURCE: 1}, max_restarts=0, max_task_retries=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.group, placement_group_bundle_index=k)).remote()
            self.generators.append(_Generator(share, actor))
        places = ray.get([g.actor.where.remote() for g in self.generators],
                         timeout=SETUP_TIMEOUT_S)
        for g, place in zip(self.generators, places, strict=True):
            g.node_id, g.ip = place["node_id"], place["ip"]

    def _measure_clocks(self) -> None:
        ray = self._ray
        for g in self.generators:
            exchanges = []
            for _ in range(CLOCK_EXCHANGES):
                t0 = time.time()
                t1, t2 = ray.get(g.actor.clock.remote(), timeout=ANSWER_TIMEOUT_S)
                exchanges.append(Exchange(t0, t1, t2, time.time()))
            g.offset = best_offset(exchanges)

    def close(self) -> None:
        """Kill every actor, remove the placement group, leave Ray (an embedded one stops)."""
        if self._closed:
            return
        self._closed = True
        # start_ray holds a Ctrl-C until Ray is joined, but one just as it returns may
        # still leave Ray joined with self._ray unset.
        ray = self._ray or sys.modules.get("ray")
        if ray is None:
            return
        self._ray = None
        from rig.distribute import remove_tree

        try:
            for g in self.generators:
                try:
                    ray.kill(g.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - an actor already gone is what we want
                    pass
            if self.group is not None:
                from ray.util.placement_group import remove_placement_group

                try:
                    remove_placement_group(self.group)
                except Exception:  # noqa: BLE001 - a cluster gone took it with it
                    pass
        finally:
            ray.shutdown()
            if self.temp is not None:
                remove_tree(self.temp)

    # ---- the run ---------------------------------------------------------------------

    async def run(self, duration: float) -> LoadReport:
        if duration <= 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        if self._ray is None:
            raise RuntimeError("RayDriver.run outside its `with` block")
        await self._all("setup", SETUP_TIMEOUT_S, lambda g: (g.share, duration))
        origin = time.time() + START_MARGIN_S
        await self._all("start", ANSWER_TIMEOUT_S,
                        lambda g: (to_node_clock(origin, g.offset.offset_s if g.offset else 0),))
        self.on_event("load_start", {"cps": sum(s.calls.cps for s in self.shares),
                                     "duration": duration, "seed": self.shares[0].seed,
                                     "processes": len(self.shares), "nodes": len(self.nodes())})
        finals = [g.actor.finish.remote() for g in self.generators]
        deadline = time.time() + START_MARGIN_S + duration + REPORT_GRACE_S
        while not all(await self._poll(finals)):
            if time.time() > deadline:
                late = next(g for g, r in zip(self.generators, finals, strict=True)
                            if g.report is None)
                raise GeneratorError(f"{late.name} sent no report in time")
            await asyncio.sleep(POLL_S)
        self._flush_bursts()
        report = merge_reports([g.report for g in self.generators if g.report])
        self.on_event("load_stop", {
            "attempted": report.calls_attempted, "completed": report.calls_completed,
            "failed": report.calls_failed, "failures": dict(report.failures),
            "processes": [{"process": g.share.index, "node_id": g.node_id, "ip": g.ip,
                           "attempted": g.report.calls_attempted,
                           "completed": g.report.calls_completed,
                           "failed": g.report.calls_failed}
                          for g in self.generators if g.report is not None]})
        return report

    async def _all(self, method: str, timeout: float,
                   args: Callable[[_Generator], tuple[Any, ...]]) -> None:
        calls = [(g, getattr(g.actor, method).remote(*args(g))) for g in self.generators]
        for g, ref in calls:
            await self._answer(g, ref, timeout, method)

    async def _answer(self, g: _Generator, ref: Any, timeout: float, what: str) -> Any:
        """An actor's answer, or GeneratorError naming its node (lost, or its call failed)."""
        ray = self._ray
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see NgClient.request
                return await asyncio.wrap_future(ref.future())
        except TimeoutError as exc:
            raise GeneratorError(f"{g.name} did not answer `{what}` within {timeout:.0f} s "
                                 "(node lost?)") from exc
        except ray.exceptions.RayActorError as exc:
            raise GeneratorError(f"{g.name} was lost: {first_line(exc)}") from exc
        except ray.exceptions.RayTaskError as exc:
            raise GeneratorError(f"{g.name}: {first_line(exc.cause or exc)}") from exc

    async def _poll(self, finals: list[Any]) -> list[bool]:
        """One round of polls; True for each generator whose report is in."""
        ray = self._ray
        done = []
        for g, final in zip(self.generators, finals, strict=True):
            if g.report is None:
                snapshot, ended, bursts, events = await self._answer(
                    g, g.actor.poll.remote(), ANSWER_TIMEOUT_S, "poll")
                g.snapshot = snapshot
                self._ended.update(ended)
                for burst in bursts:
                    self._burst(g.node_id, onto_coordinator(
                        burst, g.offset.offset_s if g.offset else 0.0, self._mono_to_wall))
                for kind, data in events:
                    self.on_event(kind, {**data, "process": g.share.index, "node_id": g.node_id})
                ready, _ = ray.wait([final], timeout=0)
                if ready:
                    g.report = await self._answer(g, final, ANSWER_TIMEOUT_S, "finish")
            done.append(g.report is not None)
        return done

    def _burst(self, node_id: str, result: BurstResult) -> None:
        shares = self._bursts.setdefault(result.index, [])
        shares.append((node_id, result))
        if len(shares) >= self._with_bursts:
            self._emit_burst(self._bursts.pop(result.index))

    def _flush_bursts(self) -> None:
        for index in sorted(self._bursts):
            self._emit_burst(self._bursts.pop(index))

    def _emit_burst(self, shares: list[tuple[str, BurstResult]]) -> None:
        """One `burst` event, its spread across nodes (on the coordinator's clock) and
        per node (`nodes`: each node's own spread)."""
        merged = merge_burst([r for _, r in shares])
        nodes: dict[str, list[BurstResult]] = {}
        for node_id, result in shares:
            nodes.setdefault(node_id, []).append(result)
        self.on_event("burst", {**merged.event(), "workers": self.workers or merged.streams,
                                "nodes": {n: merge_burst(rs).event()["spread_us"]
                                          for n, rs in nodes.items()}})


def node_labels(node_ids: Iterable[str]) -> dict[str, str]:
    """A short label per node id, `node1`, `node2`, ... in order of first appearance: the
    generators' order, so a run's labels do not depend on when each node answered."""
    labels: dict[str, str] = {}
    for node_id in node_ids:
        labels.setdefault(node_id, f"node{len(labels) + 1}")
    return labels


def snapshots_by_node(snapshots: Sequence[tuple[str, Mapping[str, float]]],
                      ) -> dict[str, dict[str, float]]:
    """(node id, one generator's counters) pairs as each node's counters summed, keyed by
    the node's label (node_labels)."""
    labels = node_labels(node_id for node_id, _ in snapshots)
    return {label: merge_snapshots(s for n, s in snapshots if n == node_id)
            for node_id, label in labels.items()}


def onto_coordinator(result: BurstResult, offset_s: float, mono_to_wall: float) -> BurstResult:
    """A node's burst with its CLOCK_MONOTONIC times moved onto the coordinator's: through
    the node's wall clock (the deadline's realtime twin), less the node's offset, then
    back by the coordinator's own wall-minus-monotonic `mono_to_wall`. Monotonic clocks of
    two hosts share no origin; their wall clocks do, up to the measured offset."""
    d = result.deadline
    shift = (d.realtime - d.monotonic) - offset_s - mono_to_wall
    return replace(result, deadline=Deadline(d.monotonic + shift, d.realtime - offset_s),
                   send_times=tuple(t + shift for t in result.send_times))
