"""LoadDriver: the rig's call generator, what the runner calls.

It starts the UAS and the UAC, places calls at `cps` (capped at `max_concurrent`) with an
outcome mix drawn from the seed, runs RTP through MediaEngine when asked, fires
synchronised media bursts, and ends every call it started within a bounded time.
Media is managed only through MediaControl: the driver knows nothing of NG.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rig.errors import UnsafeTargetError
from rig.load.calls import CallResult, CallSpec, OfferRefused, Uac, Uas
from rig.load.histogram import Histogram
from rig.load.loadreport import LoadReport
from rig.topology.destinations import LOOPBACK_ONLY, Destinations
from rig.wire.offers import offer_problem
from rig.wire.rtpstats import RtpStats
from rig.wire.sdp import build_sdp, media_address
from rig.wire.sip import OUTCOMES
from rig.wire.transaction import SipTimers

if TYPE_CHECKING:  # media, NG and burst code loads only when a run needs it
    from rig.load.burstio import TimestampSink
    from rig.load.bursts import BurstResult
    from rig.load.burstsender import BurstSender
    from rig.load.mediacontrol import MediaControl
    from rig.wire.rtpplay import Recording

PLACEHOLDER_RTP_PORT = 9  # "discard": the SDP of a call without media still needs a port
UAS_HANGUP_SHARE = 0.1  # answered calls the UAS hangs up, so both BYE paths get traffic
DRIVER_TIMERS = SipTimers(t1=0.5, t2=4.0, timeout=8.0)  # loopback: 8 s bounds a transaction
PACE_TICK = 0.002  # the pacer wakes at most this often; calls due meanwhile start together
MAX_CATCH_UP = 0.05  # after waiting at the concurrency cap, do not burst out missed calls
UAS_SETTLE = 1.0  # seconds the UAS may take to see the last ACKs after the UAC is done
ENDED_REMEMBERED = 100_000  # call-ids of ended calls kept for the orphan-session probe
FIRE_MARGIN = 0.02  # seconds the burst senders get between the hand-over and the deadline
SINK_WAIT_S = 0.5  # how long a burst's packets may take to reach the debug sink
INVITE_200 = "invite_200"  # latency: the INVITE sent to its 200 OK received (answered calls)
BYE_200 = "bye_200"  # latency: the rig's BYE sent to its 2xx received


@dataclass(frozen=True)
class RtpPlan:
    payload_type: int = 0
    ptime_ms: int = 20
    recording: Recording | None = None  # load.rtp.pcap: every stream plays this capture


@dataclass(frozen=True)
class CallPlan:
    cps: float
    max_concurrent: int
    hold: float
    outcomes: Mapping[str, float]  # answered, busy, cancel, no_answer (sum 1)
    no_answer_timeout: float
    rtp: RtpPlan | None


@dataclass(frozen=True)
class BurstPlan:
    """When bursts fire and how wide they are: `workers` x `streams_per_worker` calls, each
    starting both legs' streams with one first packet (streams, not threads)."""

    first_at: float
    every: float
    count: int | None
    workers: int
    streams_per_worker: int
    hold: float
    lanes: int = 1  # interleave the first packets over this many groups of target ports
    processes: int = 1  # sender processes firing their shares at the same instant
    jitter: float = 0.0  # seconds: each packet leaves up to this long after the deadline
    sink: bool = False  # debug: first packets go to a timestamping rig sink, not the SUT


@dataclass(frozen=True)
class Targets:
    host: str
    uac_port: int
    uas_port: int
    rtp_ports: tuple[int, int]
    proxy: tuple[str, int] | None = None
    ng: tuple[str, int] | None = None


def check_targets(targets: Targets, destinations: Destinations = LOOPBACK_ONLY) -> None:
    """Refuse targets the destination guard refuses, before anything is sent."""
    destinations.check(targets.host, targets.uas_port, "the rig's own address (targets.host)")
    if targets.proxy is not None:
        destinations.check(*targets.proxy, "the SIP proxy (targets.proxy)")
    if targets.ng is not None:
        destinations.check(*targets.ng, "the NG address (targets.ng)")
    lo, hi = targets.rtp_ports
    if not 0 < lo <= hi < 65536:
        raise ValueError(f"bad RTP port range {lo}-{hi}")


def check_call_plan(plan: CallPlan) -> None:
    unknown = sorted(set(plan.outcomes) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcomes {unknown} (allowed: {', '.join(OUTCOMES)})")
    if any(w < 0 for w in plan.outcomes.values()):
        raise ValueError("outcome weights must not be negative")
    if abs(sum(plan.outcomes.values()) - 1.0) > 1e-6:
        raise ValueError(f"outcome weights must sum to 1, got {sum(plan.outcomes.values())}")
    if plan.cps < 0 or plan.max_concurrent < 1:
        raise ValueError("cps must be >= 0 and max_concurrent >= 1")


def pick_outcome(weights: Mapping[str, float], draw: float) -> str:
    """The outcome a uniform draw in [0, 1) falls on, in OUTCOMES order."""
    total = 0.0
    chosen = "answered"
    for name in OUTCOMES:
        weight = weights.get(name, 0.0)
        if weight <= 0:
            continue
        chosen = name
        total += weight
        if draw < total:
            return name
    return chosen  # rounding left the draw past the last weight


def calls_due(elapsed: float, cps: float, placed: int) -> int:
    """How many calls the schedule (one every 1/cps from t=0) wants started by now."""
    if cps <= 0:
        return 0
    return max(0, math.floor(elapsed * cps) + 1 - placed)


@dataclass
class _Counts:
    attempted: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    latency: dict[str, Histogram] = field(default_factory=dict)  # LATENCIES, by name


@dataclass
class _Burst:
    """The calls set up for one burst; each waits on `fired` before its hold."""

    ports: list[int]  # local RTP ports whose streams the burst starts
    fired: asyncio.Future[None]
    all_ready: asyncio.Event
    slots: int
    ready: int = 0

    def one_ready(self) -> None:
        """A call is set up (or gave up): once all are, the burst need not wait longer."""
        self.ready += 1
        if self.ready >= self.slots:
            self.all_ready.set()


class LoadDriver:
    """Places the calls of a CallPlan (and bursts of a BurstPlan) against Targets.

    Keyword-only extras, for tests and tools: `media` replaces the MediaControl the driver
    would pick (NgMediaControl when `targets.ng` is set, else NoMediaControl);
    `destinations` is the guard every send goes through (loopback only unless the user
    allowed more); the first refused address stops the run and `run()` raises it;
    `timers` sets the SIP timers;
    `own_uas=False` leaves `targets.uas_port` to someone else's UAS (SIPp, another process);
    `call_id_prefix` starts every Call-ID (one generator process's own, rig/load/processes.py).
    """

    def __init__(
        self,
        calls: CallPlan,
        bursts: BurstPlan | None,
        targets: Targets,
        on_event: Callable[[str, dict], None],
        seed: int = 0,
        *,
        media: MediaControl | None = None,
        destinations: Destinations = LOOPBACK_ONLY,
        timers: SipTimers = DRIVER_TIMERS,
        uas_hangup_share: float = UAS_HANGUP_SHARE,
        own_uas: bool = True,
        call_id_prefix: str = "",
    ) -> None:
        check_targets(targets, destinations)
        check_call_plan(calls)
        self.calls, self.bursts, self.targets = calls, bursts, targets
        self.destinations = destinations
        self._refused: UnsafeTargetError | None = None
        self._halt: asyncio.Event | None = None
        self.on_event, self.timers = on_event, timers
        self.uas_hangup_share = uas_hangup_share
        self.own_uas = own_uas
        self.call_id_prefix = call_id_prefix
        self._rng = random.Random(seed)
        self._seed = seed
        self._media = media
        self._engine: Any = None
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._uas_ports: dict[str, tuple[int, tuple[str, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # calls run by the UAC's callbacks alone (no media control to await): their ports
        self._inline: dict[str, list[int]] = {}
        self._inline_media = False
        self._slot_waiter: asyncio.Future[None] | None = None
        self._uac: Uac | None = None
        self.fired_bursts: list[BurstResult] = []  # in order; the latest is the last

    # ---- what the runner reads -------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            c = self._counts
            values = {
                "load.calls_active": float(c.active),
                "load.calls_completed": float(c.completed),
                "load.calls_failed": float(c.failed),
            }
        rtp = self._rtp_stats()
        values["load.rtp_sent"] = float(rtp.sent)
        values["load.rtp_received"] = float(rtp.received)
        return values

    def ended_call_ids(self) -> set[str]:
        """Call-ids of the calls this driver saw end (the latest ENDED_REMEMBERED)."""
        with self._lock:
            return set(self._ended)

    def _rtp_stats(self) -> RtpStats:
        engine = self._engine
        return engine.stats() if engine is not None else RtpStats()

    # ---- the run ---------------------------------------------------------------------

    async def run(self, duration: float,
                  ready: Callable[[], Awaitable[float]] | None = None) -> LoadReport:
        """Make calls for `duration` seconds, then end the calls still up (bounded wait).

        `ready`, when given, is awaited once every socket and helper is set up; it returns
        the instant (loop.time(), CLOCK_MONOTONIC) the call schedule and the bursts count
        from, else they count from then. Generator processes get one from their parent, so
        their bursts fire at the same instants."""
        if duration <= 0:
            raise ValueError(f"duration must be > 0, got {duration}")
        loop = asyncio.get_running_loop()
        self._halt = asyncio.Event()
        async with AsyncExitStack() as stack:
            media = self._media if self._media is not None else await self._open_media(stack)
            self._inline_media = _needs_no_awaits(media)
            self._engine = self._open_engine(stack)
            sender, sink = self._open_burst_sender(stack)
            uas = Uas((self.targets.host, self.targets.uas_port), self.timers,
                      on_offer=self._uas_offer, on_end=self._uas_end,
                      destinations=self.destinations, on_refused=self._refuse)
            if self.own_uas:
                await uas.start()
                stack.callback(uas.close)
            uac = self._uac = Uac((self.targets.host, self.targets.uac_port),
                                  (self.targets.host, self.targets.uas_port),
                                  proxy=self.targets.proxy, timers=self.timers,
                                  destinations=self.destinations)
            await uac.start()
            stack.callback(uac.close)
            started = loop.time() if ready is None else await ready()
            self.on_event("load_start", {"cps": self.calls.cps, "duration": duration,
                                         "seed": self._seed})
            until = started + duration
            results = self.fired_bursts = []
            jobs = [self._pace(media, started, until)]
            if self.bursts is not None and sender is not None:
                jobs.append(self._run_bursts(media, sender, sink, started, until, results))
            try:
                await _until_done_or_halted(asyncio.gather(*jobs), self._halt)
                load_seconds = loop.time() - started
                await self._wind_down(uac, uas)
            finally:  # cancelled (the relay died, Ctrl-C): no call task outlives the run
                await _cancel_all(self._tasks)
                self._drop_inline(uac)
            if self.own_uas:
                await _settle(lambda: uas.active == 0, UAS_SETTLE)
            report = self._report(load_seconds, tuple(results))
            self.on_event("load_stop", {
                "attempted": report.calls_attempted, "completed": report.calls_completed,
                "failed": report.calls_failed, "failures": dict(self._counts.failures),
                "uas": {"invites": uas.counts.invites, "completed": uas.counts.completed,
                        "failed": uas.counts.failed},
            })
        if self._refused is not None:
            raise self._refused
        return report

    def _refuse(self, refused: UnsafeTargetError) -> None:
        """A send the guard refused: the first one is recorded and stops the load."""
        if self._refused is None:
            self._refused = refused
            self.on_event("unsafe_destination", {"message": str(refused)})
        if self._halt is not None:
            self._halt.set()

    async def _open_media(self, stack: AsyncExitStack) -> Any:
        from rig.load.mediacontrol import NgMediaControl, NoMediaControl

        if self.targets.ng is None:
            return NoMediaControl()
        from rig.load.ng import NgClient

        client = await NgClient.open(*self.targets.ng, destinations=self.destinations)
        stack.callback(client.close)
        return NgMediaControl(client)

    def _rtp_plan(self) -> RtpPlan | None:
        if self.calls.rtp is not None:
            return self.calls.rtp
        return RtpPlan() if self.bursts is not None else None  # bursts are about media

    def _open_engine(self, stack: AsyncExitStack) -> Any:
        plan = self._rtp_plan()
        if plan is None:
            return None
        from rig.load.media import MediaEngine

        engine = MediaEngine(self.targets.host, self.targets.rtp_ports, ptime_ms=plan.ptime_ms,
                             payload_type=plan.payload_type, seed=self._seed,
                             destinations=self.destinations, recording=plan.recording)
        engine.start()
        stack.callback(engine.stop)
        return engine

    def _open_burst_sender(
        self, stack: AsyncExitStack
    ) -> tuple[BurstSender | None, TimestampSink | None]:
        if self.bursts is None:
            return None, None
        from rig.load.burstio import TimestampSink
        from rig.load.burstsender import BurstSender

        sender = BurstSender(self.bursts.processes, destinations=self.destinations)
        stack.callback(sender.close)
        if not self.bursts.sink:
            return sender, None
        sink = TimestampSink(self.targets.host)
        stack.callback(sink.close)
        return sender, sink

    async def _wind_down(self, uac: Uac, uas: Uas) -> None:
        """Hang up everything still up; give calls one transaction timeout to end."""
        uac.end_calls()
        if self.own_uas:
            uas.end_calls()  # callees of vanished callers: their BYE is what deletes media
        await _settle(lambda: not self._tasks and not self._inline, self.timers.timeout + 1.0)
        await _cancel_all(self._tasks)
        self._drop_inline(uac)

    def _report(self, seconds: float, bursts: tuple[Any, ...]) -> LoadReport:
        rtp = self._rtp_stats()
        with self._lock:
            c = self._counts
            return LoadReport(
                calls_attempted=c.attempted,
                calls_completed=c.completed,
                calls_failed=c.failed,
                outcomes=dict(c.outcomes),
                cps_achieved=c.attempted / seconds if seconds > 0 else 0.0,
                rtp_sent=rtp.sent,
                rtp_received=rtp.received,
                rtp_lost=rtp.lost,
                jitter_ms_max=rtp.jitter_ms_max,
                bursts=bursts,
                seconds=seconds,
                latency={name: _copy(h) for name, h in c.latency.items()},
                failures=dict(c.failures),
                rtp=rtp,
            )

    # ---- regular calls -----------------------------------------------------------------

    async def _pace(self, media: Any, started: float, until: float) -> None:
        """Start calls on the cps schedule until `until`, waiting while at the cap."""
        loop = asyncio.get_running_loop()
        placed, origin = 0, started
        cap = self.calls.max_concurrent
        while (now := loop.time()) < until:
            due = calls_due(now - origin, self.calls.cps, placed)
            while due > 0:
                if self._counts.active >= cap:
                    await self._slot_freed(until - loop.time())
                    if loop.time() >= until:
                        return
                    continue
                self._start_call(media, self._next_spec(), None)
                placed += 1
                due -= 1
            now = loop.time()
            behind = now - origin - placed / self.calls.cps if self.calls.cps > 0 else 0.0
            if behind > MAX_CATCH_UP:  # time spent at the cap is not made up in a rush
                origin += behind - MAX_CATCH_UP
            await asyncio.sleep(self._next_wake(now - origin, placed, until - now))

    async def _slot_freed(self, timeout: float) -> None:
        """Wait until a call ends (or `timeout`); cheaper than an Event with wait_for."""
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        self._slot_waiter = waiter = loop.create_future()
        handle = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._slot_waiter = None

    def _next_wake(self, elapsed: float, placed: int, left: float) -> float:
        if self.calls.cps <= 0:
            return max(0.0, left)
        next_due = placed / self.calls.cps - elapsed
        return min(max(PACE_TICK, next_due), max(0.0, left))

    def _start_call(self, media: Any, spec: CallSpec, burst: _Burst | None) -> None:
        """Count the call as active now (the cap sees it at once), then place it: on the
        UAC's callbacks alone when nothing has to be awaited (no NG, no burst), else as a
        task that awaits the media control."""
        self._begin()
        if burst is None and self._inline_media:
            self._place(spec)
            return
        task = asyncio.ensure_future(self._call(media, spec, burst))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_spec(self) -> CallSpec:
        plan = self.calls
        outcome = pick_outcome(plan.outcomes, self._rng.random())
        hangup = "uac"
        if outcome == "answered" and self._rng.random() < self.uas_hangup_share:
            hangup = "uas"
        return CallSpec(outcome=outcome, hold=plan.hold, hangup=hangup,
                        no_answer_timeout=plan.no_answer_timeout)

    # ---- one call --------------------------------------------------------------------

    def _place(self, spec: CallSpec) -> None:
        """A call without media control: SDP, the UAC's call and the end, all callbacks."""
        uac = self._uac
        assert uac is not None
        call_id, from_tag = self.call_id_prefix + uac.new_call_id(), uac.new_tag()
        ports: list[int] = []
        try:
            offer = self._offer_sdp(call_id, ports)
        except Exception as exc:  # no RTP port left, say: this call fails, not the run
            self._close_ports(call_id, ports)
            self._end(call_id, None, _reason(exc))
            return

        def answered(to_tag: str, answer: str) -> None:
            self._start_streams(call_id, ports, answer)

        def done(result: CallResult, error: BaseException | None) -> None:
            if self._inline.pop(call_id, None) is None:
                return  # dropped at the end of the run, counted there
            self._close_ports(call_id, ports)
            if error is None:
                self._call_latency(result)
                self._end(call_id, result, "")
                return
            if isinstance(error, UnsafeTargetError):
                self._refuse(error)
            self._end(call_id, None, "refused destination"
                      if isinstance(error, UnsafeTargetError) else _reason(error))

        self._inline[call_id] = ports
        uac.place(spec, offer, answered if ports else None, done, call_id, from_tag)

    def _drop_inline(self, uac: Uac) -> None:
        """Calls still up once the wind-down is over end here, as cancelled tasks do."""
        for call_id, ports in list(self._inline.items()):
            uac.drop(call_id)
            del self._inline[call_id]
            self._close_ports(call_id, ports)
            self._end(call_id, None, "still up when the load stopped")

    def _call_latency(self, result: CallResult) -> None:
        if 200 <= result.status < 300 and result.outcome in ("answered", "vanish"):
            self._latency(INVITE_200, result.invite_rtt)
        if not math.isnan(result.bye_rtt):
            self._latency(BYE_200, result.bye_rtt)

    async def _call(self, media: Any, spec: CallSpec, burst: _Burst | None) -> None:
        uac = self._uac
        assert uac is not None
        call_id, from_tag = self.call_id_prefix + uac.new_call_id(), uac.new_tag()
        ports: list[int] = []
        to_tag: str | None = None
        offered = False
        result: CallResult | None = None
        reason = ""

        async def answered(tag: str, sdp: str) -> None:
            nonlocal to_tag
            to_tag = tag
            self._latency(INVITE_200, asyncio.get_running_loop().time() - invited)
            answer = await media.answer(call_id, from_tag, tag, sdp)
            await self._start_media(call_id, ports, answer, burst)

        try:
            offer = self._offer_sdp(call_id, ports)
            offered = True
            offer = await media.offer(call_id, from_tag, offer)
            invited = asyncio.get_running_loop().time()
            result = await uac.call(spec, offer, answered, call_id=call_id, from_tag=from_tag)
            if not math.isnan(result.bye_rtt):
                self._latency(BYE_200, result.bye_rtt)
        except asyncio.CancelledError:
            reason = "still up when the load stopped"
        except UnsafeTargetError as exc:
            self._refuse(exc)
            reason = "refused destination"
        except Exception as exc:  # a media or socket failure ends this call, not the run
            reason = _reason(exc)
        finally:
            if burst is not None and to_tag is None:
                burst.one_ready()  # never got to media; do not hold the burst up
            # a caller that vanished sends no BYE, so nothing tells the relay: its own
            # timeout has to close the session (the path a real vanished party takes)
            vanished = result is not None and result.completed and result.outcome == "vanish"
            if offered and not vanished:
                await _quietly(media.delete(call_id, from_tag, to_tag))
            self._close_ports(call_id, ports)
            self._end(call_id, result, reason)

    def _offer_sdp(self, call_id: str, ports: list[int]) -> str:
        plan = self._rtp_plan()
        port = PLACEHOLDER_RTP_PORT
        if self._engine is not None and plan is not None:
            port = self._engine.open_endpoint()
            ports.append(port)
        pt, ptime = (plan.payload_type, plan.ptime_ms) if plan else (0, 20)
        return build_sdp(self.targets.host, port, self._rng.randrange(1 << 31), pt, ptime)

    async def _start_media(
        self, call_id: str, ports: list[int], answer: str, burst: _Burst | None
    ) -> None:
        if self._engine is None or not ports:
            return
        if burst is None:
            self._start_streams(call_id, ports, answer)
            return
        burst.ports.extend(self._prepare_streams(call_id, ports, answer))
        burst.one_ready()
        await asyncio.shield(burst.fired)

    def _prepare_streams(self, call_id: str, ports: list[int], answer: str) -> list[int]:
        """Aim both legs' streams (ours at the answer, the UAS's at the offer); their ports."""
        engine = self._engine
        answer_origin, offer_origin = self._sdp_origins()
        engine.prepare_stream(ports[0], media_address(answer), answer_origin)
        local = [ports[0]]
        uas_side = self._uas_ports.get(call_id)
        if uas_side is not None:
            engine.prepare_stream(uas_side[0], uas_side[1], offer_origin)
            local.append(uas_side[0])
        return local

    def _start_streams(self, call_id: str, ports: list[int], answer: str) -> None:
        if self._engine is not None and ports:
            self._engine.start_streams(self._prepare_streams(call_id, ports, answer))

    def _sdp_origins(self) -> tuple[str, str]:
        """Where the two legs' RTP targets come from: (the caller's, the callee's)."""
        if self.targets.ng is not None:  # the rig sends NG: the relay rewrote both SDPs
            return ("SDP c=/m= from the relay's answer", "SDP c=/m= from the relay's offer")
        return ("SDP c=/m= of the 200 OK to INVITE", "SDP c=/m= of the INVITE")

    def _close_ports(self, call_id: str, ports: list[int]) -> None:
        if self._engine is None:
            return
        for port in ports:
            self._engine.close_endpoint(port)
        self._uas_end(call_id)

    def _uas_offer(self, call_id: str, offer: str) -> str:
        """The UAS's answer SDP: a fresh RTP endpoint aimed at whatever the offer names.
        An offer no phone could use (hostile traffic's) is refused: the UAS answers 488."""
        if (problem := offer_problem(offer)) is not None:
            raise OfferRefused(problem)
        plan = self._rtp_plan()
        if self._engine is None or plan is None:
            return build_sdp(self.targets.host, PLACEHOLDER_RTP_PORT, 1)
        port = self._engine.open_endpoint()
        self._uas_ports[call_id] = (port, media_address(offer))
        return build_sdp(self.targets.host, port, port, plan.payload_type, plan.ptime_ms)

    def _uas_end(self, call_id: str) -> None:
        side = self._uas_ports.pop(call_id, None)
        if side is not None and self._engine is not None:
            self._engine.close_endpoint(side[0])

    def _latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self._counts.latency.setdefault(name, Histogram()).record(max(0.0, seconds))

    def _begin(self) -> None:
        with self._lock:
            self._counts.attempted += 1
            self._counts.active += 1

    def _end(self, call_id: str, result: CallResult | None, reason: str) -> None:
        with self._lock:
            self._ended[call_id] = None
            if len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
            c = self._counts
            c.active -= 1
            if result is not None and result.completed:
                c.completed += 1
                c.outcomes[result.outcome] += 1
            else:
                c.failed += 1
                c.failures[result.reason if result is not None else reason] += 1
        if self._slot_waiter is not None:
            _resolve(self._slot_waiter)

    # ---- bursts ----------------------------------------------------------------------

    async def _run_bursts(self, media: Any, sender: BurstSender, sink: TimestampSink | None,
                          start: float, until: float, out: list[Any]) -> None:
        plan = self.bursts
        assert plan is not None
        index = 0
        while plan.count is None or index < plan.count:
            at = start + plan.first_at + index * plan.every
            if at >= until:
                return
            try:
                result = await self._burst(media, sender, sink, index, at)
            except UnsafeTargetError as exc:
                self._refuse(exc)
                return
            except Exception as exc:  # a burst that could not fire is reported, not fatal
                self.on_event("burst_error", {"index": index, "error": str(exc)})
                index += 1
                continue
            out.append(result)
            self.on_event("burst", {**result.event(), "workers": plan.workers})
            index += 1
            if plan.every <= 0:
                return

    async def _burst(self, media: Any, sender: BurstSender, sink: TimestampSink | None,
                     index: int, at: float) -> BurstResult:
        """Set up the burst's calls ahead of `at`, then fire all first packets at `at`."""
        plan = self.bursts
        assert plan is not None
        loop = asyncio.get_running_loop()
        slots = plan.workers * plan.streams_per_worker
        lead = min(max(0.5, slots * 0.004), max(plan.every * 0.8, 0.5))
        await asyncio.sleep(max(0.0, at - lead - loop.time()))
        burst = _Burst([], loop.create_future(), asyncio.Event(), slots)
        spec = CallSpec(outcome="answered", hold=plan.hold)
        try:
            for _ in range(slots):
                self._start_call(media, spec, burst)
            await _wait_event(burst.all_ready, at - FIRE_MARGIN - loop.time())
            ports = list(burst.ports)
            return await loop.run_in_executor(None, self._fire, sender, sink, index,
                                              max(at, loop.time() + FIRE_MARGIN), ports)
        finally:  # fired or not (cancelled while its calls were set up): none waits on
            _resolve(burst.fired)

    def _fire(self, sender: BurstSender, sink: TimestampSink | None, index: int,
              at: float, ports: list[int]) -> BurstResult:
        """Build the first packets, fire them at `at` (monotonic, the clock of loop.time()),
        then let the engine pace the streams; on the sender's thread, off the loop."""
        from dataclasses import replace

        from rig.clock import SystemClock
        from rig.load.bursts import Deadline, plan_burst
        from rig.load.burstsender import Packet

        plan = self.bursts
        assert plan is not None
        built = self._engine.first_packets(ports)
        ready = [port for port, _, _, _ in built]
        targets = [target if sink is None else sink.address for _, _, _, target in built]
        shots = plan_burst(index, Deadline.at(at, SystemClock()), targets, lanes=plan.lanes,
                           processes=plan.processes, jitter=plan.jitter,
                           rng=random.Random(self._seed * 100_003 + index))
        result: BurstResult | None = None
        try:
            result = sender.fire(shots, [Packet(sock, data) for _, sock, data, _ in built])
        finally:
            refused = ready if result is None else [
                ready[shot.stream] for shot, t in zip(shots.shots, result.send_times, strict=True)
                if math.isnan(t)]
            self._engine.run_streams(ready, time.monotonic(), refused)
        if sink is not None:
            arrivals = [a.t for a in sink.collect(len(ready), SINK_WAIT_S)]
            result = replace(result, arrivals=tuple(arrivals), lost=len(ready) - len(arrivals))
        return result


def _reason(error: BaseException) -> str:
    """A failed call's reason: the error's type and the first line of what it says."""
    return f"{type(error).__name__}: {error}".split("\n")[0][:120]


def _needs_no_awaits(media: Any) -> bool:
    """True for media control that leaves the SDP alone: its calls need no coroutine."""
    from rig.load.mediacontrol import NoMediaControl

    return type(media) is NoMediaControl


async def _until_done_or_halted(job: Awaitable[Any], halt: asyncio.Event) -> None:
    """Await `job`, or cancel it once `halt` is set; the job's own error propagates."""
    work = asyncio.ensure_future(job)
    halted = asyncio.ensure_future(halt.wait())
    try:
        await asyncio.wait({work, halted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halted.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(work, halted, return_exceptions=True)
    if not halt.is_set():
        work.result()


def _copy(histogram: Histogram) -> Histogram:
    out = Histogram()
    out.add(histogram)
    return out


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    if timeout <= 0:
        return
    try:
        async with asyncio.timeout(timeout):  # not wait_for: see NgClient.request
            await event.wait()
    except TimeoutError:
        pass


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel call tasks and let their cleanup (media delete, ports) run, bounded."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=2.0)


async def _settle(done: Callable[[], bool], seconds: float) -> None:
    """Give the other side a moment to see the last ACK/200 (bounded, polled)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not done() and loop.time() < until:
        await asyncio.sleep(0.01)


async def _quietly(job: Any) -> None:
    try:
        await job
    except Exception:  # a failed delete must not turn a completed call into a crash
        pass

