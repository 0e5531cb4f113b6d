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

from rig.errors import UsageError
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


def calls_plan(scenario: Any) -> Any:
    from rig.load.driver import CallPlan, RtpPlan

    load = scenario.load
    rtp = None
    if load.rtp is not None:
        rtp = RtpPlan(payload_type=PAYLOAD_TYPES[load.rtp.codec], ptime_ms=load.rtp.ptime)
    return CallPlan(
        cps=load.cps,
        max_concurrent=load.max_concurrent,
        hold=load.hold,
        outcomes=dict(load.outcomes),
        no_answer_timeout=load.no_answer_timeout,
        rtp=rtp,
    )


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
