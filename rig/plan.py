"""Scenario -> plan: what one run starts and drives, as plain values (no I/O).

`stack_plan` says which services start, in which order, with which settings;
`calls_plan`/`burst_plan` are the load driver's plans; `targets_for` says where the rig's
calls go. The runner turns these into processes; tests check them on plain values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rig.errors import ScenarioError, UsageError
from rig.services import names_with_role, service, start_order
from rig.topology import Endpoints

# topology -> the proxy in front of the media relay (None: the rig sends NG itself)
TOPOLOGIES: dict[str, str | None] = {"model": None, "kamailio": "kamailio"}
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}
SAMPLE_T_STEP = 1e-4  # the sampler rounds sample times to 4 decimals


@dataclass(frozen=True)
class StackPlan:
    """Which services a run starts: the media relay (the model relay with kmod, or
    rtpengine) and, with the `kamailio` topology, Kamailio in front of it."""

    topology: str = "model"
    media: str = "relay"
    settings: Mapping[str, Any] = field(default_factory=dict)  # service -> its settings

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise UsageError(f"unknown topology {self.topology!r} "
                             f"(allowed: {', '.join(TOPOLOGIES)})")
        relays = names_with_role("media")
        if self.media not in relays:
            raise UsageError(f"unknown media relay {self.media!r} "
                             f"(allowed: {', '.join(relays)})")

    @property
    def proxy(self) -> str | None:
        return TOPOLOGIES[self.topology]

    @property
    def services(self) -> tuple[str, ...]:
        """Service names in start order: the relay's dependencies first, the proxy last."""
        return start_order([self.media, *([self.proxy] if self.proxy else [])])

    @property
    def sip_port(self) -> int | None:
        """Where the proxy takes the rig's calls; None without a proxy."""
        return service(self.proxy).sip_port if self.proxy else None

    def settings_of(self, name: str) -> Any:
        if name in self.settings:
            return self.settings[name]
        return service(name).settings_model.model_validate({})


def stack_plan(scenario: Any) -> StackPlan:
    svc = scenario.services
    plan = StackPlan(topology=scenario.topology, media=svc.media)
    return StackPlan(plan.topology, plan.media,
                     {name: svc.settings_of(name) for name in plan.services})


# RTP ports of one run's address. The relay's range and the rig's own are sized for the calls
# alive at once; today's fixed ranges are the least a run gets.
RELAY_PORTS_FROM, RIG_PORTS_FROM, LOWEST_MEDIA_PORT = 30000, 40000, 10000
MIN_RELAY_PORTS, MIN_RIG_PORTS = 2000, 10000
PORTS_PER_CALL = 4  # two streams (legs), each an even RTP port and the odd RTCP port above it
PORT_HEADROOM = 1.25  # ports skipped because another socket holds them, late deletes


@dataclass(frozen=True)
class PortLayout:
    """The relay's RTP ports, the rig's own, and the concurrent calls they were sized for."""

    relay: tuple[int, int]
    rig: tuple[int, int]
    calls: int


def concurrent_calls(scenario: Any, media_settings: Any) -> int:
    """Calls that can hold media ports at once: load.max_concurrent, the calls of the
    bursts that overlap, and sessions that outlive their calls (rtpengine's delete_delay;
    with the rig sending NG, a vanished caller's session until the relay's timeout)."""
    load = scenario.load
    calls = load.max_concurrent
    bursts = scenario.bursts
    if bursts is not None:
        overlapping = math.ceil(bursts.hold / bursts.every) + 1
        if bursts.count is not None:
            overlapping = min(overlapping, bursts.count)
        calls += bursts.workers * bursts.streams_per_worker * overlapping
    linger = float(getattr(media_settings, "delete_delay", 0))
    if scenario.topology == "model" and load.outcomes.vanish > 0:
        linger += load.outcomes.vanish * (getattr(media_settings, "timeout", 0)
                                          or scenario.duration)
    return calls + math.ceil(load.cps * linger)


def port_layout(scenario: Any, plan: StackPlan) -> PortLayout:
    """Port ranges that hold the scenario's calls, so a run never starves its SUT of ports
    by the rig's own configuration; `services.<media>.port_range` sets the relay's."""
    settings = plan.settings_of(plan.media)
    calls = concurrent_calls(scenario, settings)
    need = math.ceil(calls * PORTS_PER_CALL * PORT_HEADROOM / 2) * 2
    explicit = getattr(settings, "port_range", None)
    relay = (explicit[0], explicit[1]) if explicit else (
        RELAY_PORTS_FROM, RELAY_PORTS_FROM + max(MIN_RELAY_PORTS, need) - 1)
    size = max(MIN_RIG_PORTS, need)
    for lo in (RIG_PORTS_FROM, relay[1] + 1 + (relay[1] + 1) % 2, LOWEST_MEDIA_PORT):
        rig = (lo, lo + size - 1)
        if rig[1] <= 65535 and (rig[1] < relay[0] or rig[0] > relay[1]):
            return PortLayout(relay, rig, calls)
    room = (65536 - RELAY_PORTS_FROM) // 2
    fits = int(room / (PORTS_PER_CALL * PORT_HEADROOM))
    raise ScenarioError(
        f"load.max_concurrent: {calls} calls at once (bursts and lingering sessions "
        f"included) need {need} RTP ports for the relay and as many for the rig, more than "
        f"one run's address holds (allowed: about {fits} calls at once, or a smaller "
        f"services.{plan.media}.port_range)")


def targets_for(endpoints: Endpoints, plan: StackPlan | None = None) -> Any:
    """Where the rig's calls go: straight to its UAS with the rig sending NG (model), or
    through the proxy, which sends NG itself (kamailio)."""
    from rig.load.driver import Targets

    sip_port = plan.sip_port if plan is not None else None
    return Targets(
        host=endpoints.host,
        uac_port=endpoints.uac_port,
        uas_port=endpoints.uas_port,
        rtp_ports=endpoints.rig_rtp_ports,
        proxy=(endpoints.host, sip_port) if sip_port else None,
        ng=None if sip_port else (endpoints.host, endpoints.ng_port),
    )


def calls_plan(scenario: Any, recording: Any = None) -> Any:
    """The driver's CallPlan; `recording` (rig.wire.rtpplay) is what load.rtp.pcap read."""
    from rig.load.driver import CallPlan, RtpPlan

    load = scenario.load
    rtp = None
    if load.rtp is not None:
        rtp = RtpPlan(payload_type=PAYLOAD_TYPES[load.rtp.codec], ptime_ms=load.rtp.ptime,
                      recording=recording)
    return CallPlan(
        cps=load.cps,
        max_concurrent=load.max_concurrent,
        hold=load.hold,
        outcomes=dict(load.outcomes),
        no_answer_timeout=load.no_answer_timeout,
        rtp=rtp,
    )


def load_processes(scenario: Any, plan: StackPlan, cpus: int) -> int:
    """How many generator processes the run starts (`load.processes`; `auto`: the `cpus`
    left after one for the media relay and one for the proxy, at least 1).

    More than one needs the rig to send NG itself (topology model): each process calls
    its own UAS port, and Kamailio sends every call to its one CALLEE port."""
    from rig.load.shares import auto_processes

    wanted = scenario.load.processes
    if wanted == "auto":
        return 1 if plan.proxy else auto_processes(cpus, 1)
    if wanted > 1 and plan.proxy:
        raise UsageError(f"load.processes: {wanted} needs topology: model (Kamailio sends "
                         "every call to one callee port) (allowed: 1 or auto with "
                         f"topology: {plan.topology})")
    if wanted > scenario.load.max_concurrent:
        raise ScenarioError(f"load.processes: {wanted} processes cannot share "
                            f"load.max_concurrent: {scenario.load.max_concurrent} (allowed: "
                            "at most max_concurrent processes)")
    return int(wanted)


def generator_shares(scenario: Any, targets: Any, processes: int, recording: Any = None
                     ) -> list[Any]:
    """Each generator process's share (rig.load.shares.GeneratorShare) of the run's load."""
    from rig.load.shares import shares

    return shares(calls_plan(scenario, recording), burst_plan(scenario), targets,
                  scenario.seed, processes, tuple(scenario.targets.allow),
                  own_address=scenario.targets.beyond_loopback)


def burst_plan(scenario: Any) -> Any:
    from rig.load.driver import BurstPlan

    bursts = scenario.bursts
    if bursts is None:
        return None
    return BurstPlan(
        first_at=bursts.first_at,
        every=bursts.every,
        count=bursts.count,
        workers=bursts.workers,
        streams_per_worker=bursts.streams_per_worker,
        hold=bursts.hold,
        lanes=bursts.lanes,
        processes=bursts.processes,
        jitter=bursts.jitter,
        sink=bursts.sink,
    )


def before_later_samples(now: float) -> float:
    """A load start strictly before the (rounded) time of any sample taken after `now`."""
    return math.floor(now / SAMPLE_T_STEP) * SAMPLE_T_STEP - SAMPLE_T_STEP


def hostile_plan(scenario: Any, endpoints: Endpoints, plan: StackPlan) -> Any:
    """The run's hostile traffic (rig.load.hostile), or None without a `hostile:` section:
    at the proxy when there is one and the scenario does not say otherwise, else the UAS."""
    from rig.load.hostile import HostilePlan, ToolPlan, range_size

    hostile = scenario.hostile
    if hostile is None:
        return None
    name = hostile.target or ("proxy" if plan.sip_port else "uas")
    port = plan.sip_port if name == "proxy" else endpoints.uas_port
    if port is None:
        raise UsageError("hostile.target: proxy needs a proxy (topology: kamailio)")
    tools = []
    if hostile.svmap is not None:
        tools.append(ToolPlan("svmap", hostile.svmap.every, (), 1))
    if hostile.svwar is not None:
        war = hostile.svwar
        tools.append(ToolPlan("svwar", war.every, ("-e", war.extensions, "-m", war.method),
                              range_size(war.extensions)))
    if hostile.svcrack is not None:
        crack = hostile.svcrack
        tools.append(ToolPlan("svcrack", crack.every, ("-u", crack.username,
                                                       "-r", crack.passwords),
                              range_size(crack.passwords)))
    malformed = hostile.malformed
    return HostilePlan(
        target=(endpoints.host, port), target_name=name, start=hostile.start,
        rate=malformed.rate if malformed is not None else 0.0,
        kinds=tuple(malformed.kinds) if malformed is not None else (),
        tools=tuple(tools), run_timeout=hostile.run_timeout)


def check_recording(recording: Any, codec: str, path: str) -> None:
    """The capture's RTP must be the codec the calls offer, or the SDP would lie."""
    if recording.payload_type != PAYLOAD_TYPES[codec]:
        names = {pt: name for name, pt in PAYLOAD_TYPES.items()}
        found = names.get(recording.payload_type, f"payload type {recording.payload_type}")
        raise UsageError(f"load.rtp.pcap: {path}: its RTP is {found}, load.rtp.codec is "
                         f"{codec} (allowed: a capture of the scenario's codec)")
