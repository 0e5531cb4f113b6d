"""How a run's load is cut into the shares of its generator processes (plain values).

A share is everything one generator process needs, as a picklable value: its part of the
call rate and of the concurrency cap, its part of each burst, its own SIP ports, RTP port
range, Call-ID prefix and seed. Shares never collide, so the processes need not talk to
each other; their LoadReports add up (rig/load/loadreport.py). The same value is what a
Ray actor on another host would get (issue 15).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rig.load.driver import BurstPlan, CallPlan, Targets

PROCESS_SIP_PORTS_FROM = 5100  # process k >= 1: UAC 5100 + 2k, UAS 5101 + 2k (0 keeps 5060/5080)
SEED_STRIDE = 1_000_003  # process k draws from seed + k * SEED_STRIDE (0 keeps the seed)
MAX_PROCESSES = 16


@dataclass(frozen=True)
class GeneratorShare:
    """One generator process's part of the load: a LoadDriver's arguments, picklable."""

    index: int
    of: int
    calls: CallPlan
    bursts: BurstPlan | None
    targets: Targets
    seed: int
    call_id_prefix: str
    allow: tuple[str, ...] = ()  # destinations beyond loopback (scenario targets.allow)
    # a SUT beyond loopback (targets.host): a generator on another host binds on its own
    # address there instead of the SUT's
    own_address: bool = False


def auto_processes(cpus: int, sut_cores: int) -> int:
    """`load.processes: auto`: the cores left after the SUT's, at least one, at most 16."""
    return max(1, min(MAX_PROCESSES, cpus - sut_cores))


def usable_cpus() -> int:
    """Cores this process may run on (its affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split(total: int, parts: int) -> list[int]:
    """`total` dealt as evenly as integers go: the first `total % parts` get one more."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def port_slices(ports: tuple[int, int], parts: int) -> list[tuple[int, int]]:
    """A port range cut into `parts` contiguous ranges, each starting on an even port
    (RTP even, RTCP the odd port above)."""
    lo, hi = ports
    start = lo + lo % 2
    size = (hi - start + 1) // parts // 2 * 2
    if size < 2:
        raise ValueError(f"RTP ports {lo}-{hi} cannot be cut into {parts} ranges")
    return [(start + k * size, start + (k + 1) * size - 1) for k in range(parts)]


def sip_ports(targets: Targets, index: int) -> tuple[int, int]:
    """(UAC, UAS) port of process `index`; process 0 keeps the run's own."""
    if index == 0:
        return targets.uac_port, targets.uas_port
    return PROCESS_SIP_PORTS_FROM + 2 * index, PROCESS_SIP_PORTS_FROM + 2 * index + 1


def extra_sip_ports(processes: int) -> list[int]:
    """The SIP ports processes 1.. bind, which the run's address must have free."""
    return [port for k in range(1, processes)
            for port in (PROCESS_SIP_PORTS_FROM + 2 * k, PROCESS_SIP_PORTS_FROM + 2 * k + 1)]


def burst_share(bursts: BurstPlan | None, slots: int, processes: int) -> BurstPlan | None:
    """A process's part of each burst: `slots` calls (in one group), at the same instants;
    the burst's sender processes shared out too. None when it has no calls of the burst."""
    if bursts is None or slots == 0:
        return None
    return replace(bursts, workers=1, streams_per_worker=slots,
                   processes=max(1, bursts.processes // processes))


def shares(calls: CallPlan, bursts: BurstPlan | None, targets: Targets, seed: int,
           processes: int, allow: Sequence[str] = (), own_address: bool = False
           ) -> list[GeneratorShare]:
    """The shares of `processes` generator processes; they never collide on a port or a
    Call-ID, and together they place `calls.cps` calls a second, at most
    `calls.max_concurrent` at once, and every burst's calls."""
    if not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be 1..{MAX_PROCESSES}, got {processes}")
    if calls.max_concurrent < processes:
        raise ValueError(f"max_concurrent {calls.max_concurrent} cannot be shared by "
                         f"{processes} processes (allowed: at least one call each)")
    caps = split(calls.max_concurrent, processes)
    slots = split(bursts.workers * bursts.streams_per_worker if bursts else 0, processes)
    rtp = port_slices(targets.rtp_ports, processes)
    out = []
    for k in range(processes):
        uac, uas = sip_ports(targets, k)
        out.append(GeneratorShare(
            index=k, of=processes,
            calls=replace(calls, cps=calls.cps / processes, max_concurrent=caps[k]),
            bursts=burst_share(bursts, slots[k], processes),
            targets=replace(targets, uac_port=uac, uas_port=uas, rtp_ports=rtp[k]),
            seed=seed + k * SEED_STRIDE, call_id_prefix=f"p{k}-", allow=tuple(allow),
            own_address=own_address))
    return out
