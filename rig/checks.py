"""Checks: pure functions from a run's series and events to verdicts.

Each check is `fn(series, events, window, **params) -> Verdict`, registered in `CHECKS`
with the pydantic model of its parameters (the scenario validates against those models,
so a check's parameters are checked before anything starts). No I/O and no clock here.

A check whose counters were never measured fails: a run that measured nothing must not pass.
To add a check: write the parameter model and the function, decorate it with
`@register(Params)`; the function's name is the check's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rig.errors import UsageError
from rig.probes.maps import MAPS_SHARDS
from rig.probes.rtpengine import BUFFERPOOL_SHARDS, not_reported, predates_bufferpool, short_version
from rig.series import Event, Series
from rig.tracking import (
    growth_while_flat,
    pair_points,
    persisting_peak,
    seconds_to_ceiling,
    slope_per_minute,
)

Observed = float | str | None


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: what was seen against what was allowed."""

    name: str
    passed: bool
    observed: Observed
    limit: Observed
    detail: str
    diagnosis: str | None = None  # a one-word reading of the failure, e.g. "race" or "growth"
    # named numbers behind the detail, for a report to show (tracks: drift, its rate, the
    # time to the ceiling); None where a number does not apply
    values: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RunWindow:
    """The phases of a run, in run seconds: load runs from load_start to load_stop."""

    load_start: float
    load_stop: float
    end: float


CheckFn = Callable[..., Verdict]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    params: type[BaseModel]
    fn: CheckFn
    doc: str


CHECKS: dict[str, CheckSpec] = {}


class Params(BaseModel):
    """Base of every check's parameters: frozen, strict, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def register(params: type[BaseModel]) -> Callable[[CheckFn], CheckFn]:
    def add(fn: CheckFn) -> CheckFn:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        CHECKS[fn.__name__] = CheckSpec(fn.__name__, params, fn, doc)
        return fn

    return add


def get_check(name: str) -> CheckSpec:
    try:
        return CHECKS[name]
    except KeyError:
        raise UsageError(
            f"unknown check {name!r} (allowed: {', '.join(sorted(CHECKS))})"
        ) from None


# -- helpers on series -------------------------------------------------------------------


def missing(name: str, counters: Sequence[str], series: Series,
            events: Sequence[Event] = ()) -> Verdict | None:
    """A failing verdict naming the first counter no sample has, else None. A counter the
    service's version does not report (rtpengine's bufferpools before mr26.1) is unusable
    input, and the verdict says so with the version the service reported."""
    names = set(series.names())
    absent = [c for c in counters if c not in names]
    if not absent:
        return None
    if (reason := not_reported(absent[0], reported_version("rtpengine", events))) is not None:
        return Verdict(name, False, None, None, reason, diagnosis="unusable")
    what = "no samples at all" if not series.samples else "no sample has it"
    return Verdict(name, False, None, None, f"counter {absent[0]} missing ({what})")


def reported_version(service: str, events: Sequence[Event]) -> str | None:
    """The version `service` reported at the start of the run (a `service_version` event)."""
    return next((str(e.data["version"]) for e in events if e.kind == "service_version"
                 and e.data.get("service") == service), None)


def value_at(column: Sequence[tuple[float, float]], t: float) -> tuple[float, float] | None:
    """The last (t, value) at or before t."""
    before = [(ts, v) for ts, v in column if ts <= t]
    return before[-1] if before else None


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


# -- the checks --------------------------------------------------------------------------


class CeilingParams(Params):
    ceiling: float = Field(gt=0, description="the peak must stay strictly below this")
    counter: str = Field(default="kmod.pins", min_length=1)


@register(CeilingParams)
def pins_below_ceiling(
    series: Series, events: Sequence[Event], window: RunWindow, *, ceiling: float, counter: str
) -> Verdict:
    """The counter's peak stays below the ceiling (kmod.pins below MAX_SHM_AREAS)."""
    name = "pins_below_ceiling"
    if (gone := missing(name, [counter], series, events)) is not None:
        return gone
    t, peak = max(series.column(counter), key=lambda tv: tv[1])
    passed = peak < ceiling
    detail = f"{counter} peaked at {_num(peak)} at t={t:.2f} s"
    if not passed:
        detail += f", not below {_num(ceiling)}"
    return Verdict(name, passed, _num(peak), _num(ceiling), detail)


class TracksParams(Params):
    physical: str = Field(min_length=1, description="the counter of objects held")
    logical: tuple[str, ...] = Field(
        min_length=1, strict=False,
        description="the counter it should follow (a list: their sum)")
    ratio: float = Field(default=1.0, ge=0, description="physical objects per logical one")
    tolerance: float = Field(default=0, ge=0, description="allowed physical - ratio x logical")
    persist: int = Field(default=2, ge=1, le=1000, description="samples an excess must last")
    baseline: Literal["zero", "load_start"] = Field(
        default="zero", description="gap measured from zero, or from its value at load start")
    slope: float | None = Field(
        default=None, ge=0, description="physical growth per minute allowed while logical is flat")
    window: float = Field(default=5.0, gt=0, description="seconds the logical side is flat")
    flat: float = Field(default=0, ge=0, description="logical change that still counts as flat")
    ceiling: float | str | None = Field(
        default=None, description="a value or a counter name: the projection's target")

    @field_validator("logical", mode="before")
    @classmethod
    def one_name(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


@register(TracksParams)
def tracks(
    series: Series, events: Sequence[Event], run: RunWindow, /, **params: Any
) -> Verdict:
    """A physical counter tracks a logical one: no lasting excess, no growth while the
    logical side is flat; reports the drift, its rate and the time to a ceiling."""
    # positional-only above: the parameter `window` must not collide with the run's window
    return track("tracks", series, run, TracksParams(**params), events)


def track(name: str, series: Series, run: RunWindow, p: TracksParams,
          events: Sequence[Event] = ()) -> Verdict:
    logical = p.logical
    ceiling_counter = [p.ceiling] if isinstance(p.ceiling, str) else []
    needed = [p.physical, *logical, *ceiling_counter]
    if (gone := missing(name, needed, series, events)) is not None:
        return gone
    what = f"{p.physical} - {_ratio(p.ratio)}{' + '.join(logical)}"
    points = pair_points(series, p.physical, logical, p.ratio,
                         run.load_start if p.baseline == "load_start" else None)
    if not points:
        return Verdict(name, False, None, _num(p.tolerance),
                       f"no sample has {p.physical} together with {', '.join(logical)}")
    level, where = persisting_peak([pt.gap for pt in points], p.persist)
    gap_ok = level <= p.tolerance
    rate = slope_per_minute([(pt.t, pt.gap) for pt in points if pt.t >= run.load_start])
    head = (f"{what}: drift {_num(level)} held {p.persist}+ samples from t={points[where].t:.2f} s"
            if where >= 0 else f"{what}: no drift lasted {p.persist} samples")
    parts = [head + (f", drift rate {_rate(rate)}" if rate is not None else "")]
    growth = growth_while_flat(points, p.window, p.flat) if p.slope is not None else None
    slope_ok = p.slope is None or growth is None or growth.per_minute <= p.slope
    if growth is not None:
        parts.append(f"{p.physical} {_rate(growth.per_minute)} from t={growth.start:.2f} s to "
                     f"t={growth.stop:.2f} s while {' + '.join(logical)} stayed flat")
    values: dict[str, float | None] = {
        "drift": level, "drift_per_minute": _rounded(rate),
        "growth_per_minute": _rounded(growth.per_minute) if growth is not None else None,
        "physical": points[-1].physical, "logical": points[-1].logical}
    if p.ceiling is not None:
        projection = _projection(series, p.physical, p.ceiling, points[-1].physical, rate,
                                 drifting=not (gap_ok and slope_ok))
        parts.append(projection.text)
        values.update(ceiling=projection.ceiling, seconds_to_ceiling=projection.seconds)
    detail = "; ".join(parts)
    if gap_ok and not slope_ok:
        assert growth is not None and p.slope is not None
        return Verdict(name, False, f"{_num(round(growth.per_minute, 3))}/min",
                       f"{_num(p.slope)}/min", detail, values=values)
    return Verdict(name, gap_ok and slope_ok, _num(level), _num(p.tolerance), detail,
                   values=values)


def _ratio(ratio: float) -> str:
    return "" if ratio == 1 else f"{_num(ratio)} x "


def _rate(per_minute: float) -> str:
    return f"{per_minute:+.3g}/min"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class Projection:
    text: str
    ceiling: float
    seconds: float | None  # None: the physical counter does not get there at this rate


def _projection(
    series: Series, physical: str, ceiling: float | str, current: float, rate: float | None,
    drifting: bool,
) -> Projection:
    """Where the drift leads: the time until the physical counter reaches the ceiling.

    Only a drift the check found (beyond the tolerance, or growth beyond the slope) is
    projected; the rate of a pair that tracks is read-out noise and would promise a ceiling
    in some hours that no leak is heading for."""
    limit = series.column(ceiling)[-1][1] if isinstance(ceiling, str) else float(ceiling)
    named = f"{ceiling} ({_num(limit)})" if isinstance(ceiling, str) else f"{_num(limit)}"
    eta = seconds_to_ceiling(current, limit, rate if drifting else None)
    if eta is None:
        why = "at this rate" if drifting else "(no drift beyond the tolerance)"
        text = f"{physical} ({_num(current)}) does not approach {named} {why}"
    elif eta == 0:
        text = f"{physical} ({_num(current)}) reached {named}"
    else:
        text = f"at this rate {physical} ({_num(current)}) reaches {named} in ~{eta:.0f} s"
    return Projection(text, limit, None if eta is None else round(eta, 3))


class PhantomParams(Params):
    tolerance: float = Field(default=0, ge=0, description="pinned shards beyond the needed ones")
    persist: int = Field(default=2, ge=1, le=1000, description="samples an excess must last")


NEEDED_SHARDS = ("relay.shards_active", "relay.shards_full", "relay.shards_free")


@register(PhantomParams)
def no_phantom_shards(
    series: Series, events: Sequence[Event], window: RunWindow, *, tolerance: float, persist: int
) -> Verdict:
    """Pins never exceed the shards the relay needs (active + full + free) for long."""
    # `tracks` with the pool's pair: kmod's pins against the shards the allocator can reach
    return track("no_phantom_shards", series, window, TracksParams(
        physical="kmod.pins", logical=NEEDED_SHARDS, tolerance=tolerance, persist=persist),
        events)


class FlatParams(Params):
    warmup: float = Field(ge=0, description="seconds after load start before growth counts")
    tolerance: float = Field(default=0, ge=0, description="growth allowed after the warmup")
    counter: str = Field(default="kmod.pins", min_length=1)


@register(FlatParams)
def pins_flat_after_warmup(
    series: Series,
    events: Sequence[Event],
    window: RunWindow,
    *,
    warmup: float,
    tolerance: float,
    counter: str,
) -> Verdict:
    """The counter does not grow between load_start + warmup and load_stop."""
    name = "pins_flat_after_warmup"
    if (gone := missing(name, [counter], series, events)) is not None:
        return gone
    start = window.load_start + warmup
    if start >= window.load_stop:
        return Verdict(name, False, None, _num(tolerance),
                       f"warmup {warmup:g} s is not shorter than the load "
                       f"({window.load_stop - window.load_start:g} s)")
    column = series.column(counter)
    inside = [(t, v) for t, v in column if start < t <= window.load_stop]
    base = value_at(column, start) or (inside[0] if inside else None)
    if base is None or not inside:
        return Verdict(name, False, None, _num(tolerance),
                       f"no sample of {counter} between t={start:g} s and t={window.load_stop:g} s")
    t_peak, peak = max(inside, key=lambda tv: tv[1])
    growth = max(0.0, peak - base[1])
    detail = (f"{counter} went from {_num(base[1])} at t={base[0]:.2f} s "
              f"to {_num(peak)} at t={t_peak:.2f} s")
    return Verdict(name, growth <= tolerance, _num(growth), _num(tolerance), detail)


class ShardsFlatParams(Params):
    warmup: float = Field(ge=0, description="seconds after load start before growth counts")
    tolerance: float = Field(default=0, ge=0, description="shards added after the warmup")


@dataclass(frozen=True)
class ShardSource:
    """Where rtpengine's shard count comes from in one run."""

    counter: str
    label: str


BUFFERPOOLS_SOURCE = ShardSource(BUFFERPOOL_SHARDS, "the daemon's bufferpools")
MAPS_SOURCE = ShardSource(MAPS_SHARDS, "the memory-map estimate")


def shard_source(names: Sequence[str], version: str | None) -> ShardSource | str:
    """The daemon's own count where it reports bufferpools (mr26.1+), else the estimate
    from its memory map; why there are no shards to count (a daemon older than the
    bufferpool) as a string."""
    if BUFFERPOOL_SHARDS in names:
        return BUFFERPOOLS_SOURCE
    if predates_bufferpool(version):
        return (f"rtpengine {short_version(version or '')} predates the bufferpool: no shards "
                f"to count ({not_reported(BUFFERPOOL_SHARDS, version)}, and its memory map "
                "holds no shards)")
    return MAPS_SOURCE


@register(ShardsFlatParams)
def shards_flat_after_warmup(
    series: Series, events: Sequence[Event], window: RunWindow, *, warmup: float,
    tolerance: float,
) -> Verdict:
    """rtpengine's bufferpool shards do not grow after the warmup (bufferpools or the map)."""
    name = "shards_flat_after_warmup"
    source = shard_source(series.names(), reported_version("rtpengine", events))
    if isinstance(source, str):
        return Verdict(name, False, None, _num(tolerance), source, diagnosis="unusable")
    if (gone := missing(name, [source.counter], series, events)) is not None:
        return gone
    flat = pins_flat_after_warmup(series, events, window, warmup=warmup, tolerance=tolerance,
                                  counter=source.counter)
    return replace(flat, name=name, detail=f"from {source.label}: {flat.detail}")


class AliveParams(Params):
    service: str = Field(default="relay", min_length=1,
                         description="a service name, or the role 'media' (whichever relay)")


@register(AliveParams)
def relay_alive(
    series: Series, events: Sequence[Event], window: RunWindow, *, service: str
) -> Verdict:
    """The service never crashed (no `crash` event); the detail quotes its CRIT line."""
    name = "relay_alive"
    # `service` names a service ("relay", "rtpengine") or a role ("media": whichever relay)
    crashes = [e for e in events if e.kind == "crash"
               and service in (e.data.get("service", service), e.data.get("role"))]
    if crashes:
        detail = crash_detail(crashes[0], service, "(no CRIT line)")
        return Verdict(name, False, len(crashes), 0, detail)
    if not series.samples:
        return Verdict(name, False, None, 0, "no samples at all: nothing shows it was running")
    return Verdict(name, True, 0, 0, f"no crash of {service}")


def crash_detail(crash: Event, who: str, no_line: str = "(no line in the log)") -> str:
    """How a service ended, from its `crash` event: the watch's cause (who, pid, signal,
    when) where the event has one, then the line its log ended with; `who` names the
    service in an event without a cause (a run folder from before the watch)."""
    line = str(crash.data.get("line") or no_line)
    cause = crash.data.get("cause")
    if cause:
        return f"{cause}; its log ends with: {line}"
    return f"{who} crashed at t={crash.t:.2f} s: {line}"


class ServicesAliveParams(Params):
    """No parameters: every service the run started counts."""


@register(ServicesAliveParams)
def services_alive(series: Series, events: Sequence[Event], window: RunWindow) -> Verdict:
    """Every service stayed up until the rig stopped it; the detail names the first death."""
    name = "services_alive"
    crashes = sorted((e for e in events if e.kind == "crash"), key=lambda e: e.t)
    if crashes:
        others = sorted({str(e.data.get("service")) for e in crashes[1:]})
        also = f" (also stopped: {', '.join(others)})" if others else ""
        first = crashes[0]
        detail = crash_detail(first, str(first.data.get("service", "a service")))
        return Verdict(name, False, len(crashes), 0, detail + also)
    if not series.samples:
        return Verdict(name, False, None, 0, "no samples at all: nothing shows they ran")
    return Verdict(name, True, 0, 0, "every service stayed up until the rig stopped it")


class ProxyAliveParams(Params):
    service: str = Field(default="proxy", min_length=1,
                         description="a service name, or the role 'proxy' (whichever proxy)")
    counter: str = Field(default="kamailio.shm_used", min_length=1,
                         description="a counter of the proxy's own probe: a reading after "
                                     "load stop shows it still answers")


@register(ProxyAliveParams)
def proxy_alive(
    series: Series, events: Sequence[Event], window: RunWindow, *, service: str, counter: str
) -> Verdict:
    """The proxy never crashed and still answered its probe after the load."""
    name = "proxy_alive"
    crashes = [e for e in events if e.kind == "crash"
               and service in (e.data.get("service"), e.data.get("role"))]
    if crashes:
        return Verdict(name, False, len(crashes), 0, crash_detail(crashes[0], service))
    if (gone := missing(name, [counter], series)) is not None:
        return gone
    after = [t for t, _ in series.column(counter) if t > window.load_stop]
    if not after:
        return Verdict(name, False, None, 0, f"no reading of {counter} after load stop "
                       f"(t={window.load_stop:g} s): the proxy stopped answering")
    return Verdict(name, True, 0, 0,
                   f"no crash of {service}; {counter} read at t={after[-1]:.2f} s")


class BaselineParams(Params):
    counters: tuple[str, ...] = Field(min_length=1, strict=False)
    within: float = Field(ge=0, description="seconds after load stop to get back")
    tolerance: float = Field(default=0, ge=0)
    relative: float = Field(default=0, ge=0, le=10,
                            description="extra allowance as a share of each baseline value")


@register(BaselineParams)
def back_to_baseline(
    series: Series,
    events: Sequence[Event],
    window: RunWindow,
    *,
    counters: Sequence[str],
    within: float,
    tolerance: float,
    relative: float = 0.0,
) -> Verdict:
    """Each counter's last value after load_stop + within is back to its value at load start
    (within tolerance + relative x baseline)."""
    name = "back_to_baseline"
    if (gone := missing(name, counters, series, events)) is not None:
        return gone
    worst: tuple[float, str, str] = (-math.inf, "", "")
    worst_allowed = 0.0
    for counter in counters:
        column = series.column(counter)
        base = value_at(column, window.load_start)
        # when sampling ended before load_stop + within (settle <= within), the run's last
        # sample after load stop is the latest word on the counter
        after_stop = [(t, v) for t, v in column if t > window.load_stop]
        settle_t = min(window.load_stop + within, after_stop[-1][0] if after_stop else math.inf)
        after = [(t, v) for t, v in after_stop if t >= settle_t]
        if base is None:
            return Verdict(name, False, counter, _num(tolerance),
                           f"no sample of {counter} at or before load start "
                           f"(t={window.load_start:g} s)")
        if not after:
            return Verdict(name, False, counter, _num(tolerance),
                           f"no sample of {counter} after load stop (t={window.load_stop:g} s)")
        diff = abs(after[-1][1] - base[1])
        allowed = tolerance + relative * abs(base[1])
        if diff - allowed > worst[0] - worst_allowed:
            worst, worst_allowed = (diff, counter, f"{counter}: {_num(base[1])} before load, "
                                    f"{_num(after[-1][1])} at t={after[-1][0]:.2f} s"), allowed
    diff, counter, detail = worst
    if len(counters) > 1:
        detail += f" (the worst of {len(counters)} counters)"
    if relative:
        detail += f"; allowed {_num(round(worst_allowed, 3))} for {counter}"
    return Verdict(name, diff <= worst_allowed, f"{counter} {_num(diff)}",
                   _num(round(worst_allowed, 6)) if relative else _num(tolerance), detail)


class CallsParams(Params):
    min_ratio: float = Field(ge=0, le=1, description="completed / attempted calls")


CALL_COUNTERS = ("load.calls_completed", "load.calls_failed", "load.calls_active")


@register(CallsParams)
def calls_completed(
    series: Series, events: Sequence[Event], window: RunWindow, *, min_ratio: float
) -> Verdict:
    """At least min_ratio of the attempted calls completed (attempted = completed + failed +
    still active at the last sample)."""
    name = "calls_completed"
    if (gone := missing(name, CALL_COUNTERS, series, events)) is not None:
        return gone
    done, failed, active = (series.values(c)[-1] for c in CALL_COUNTERS)
    attempted = done + failed + active
    if attempted <= 0:
        return Verdict(name, False, None, min_ratio, "no call was attempted")
    ratio = done / attempted
    detail = f"{_num(done)} of {_num(attempted)} calls completed ({_num(failed)} failed)"
    return Verdict(name, ratio >= min_ratio, round(ratio, 4), min_ratio, detail)


class OrphanParams(Params):
    counter: str = Field(default="media.orphan_sessions", min_length=1)
    tolerance: float = Field(default=0, ge=0)


@register(OrphanParams)
def no_orphan_sessions(
    series: Series, events: Sequence[Event], window: RunWindow, *, counter: str,
    tolerance: float,
) -> Verdict:
    """No call the rig saw end still has a session in the media relay (last reading after
    load stop); the detail names some of the leaked call-ids."""
    name = "no_orphan_sessions"
    if (gone := missing(name, [counter], series, events)) is not None:
        return gone
    after = [(t, v) for t, v in series.column(counter) if t > window.load_stop]
    if not after:
        return Verdict(name, False, None, _num(tolerance),
                       f"no reading of {counter} after load stop (t={window.load_stop:g} s)")
    t, orphans = after[-1]
    detail = f"{_num(orphans)} session(s) in the relay after their calls ended (t={t:.2f} s)"
    listed = [e for e in events if e.kind == "orphan_sessions"]
    if orphans > 0 and listed and listed[-1].data.get("call_ids"):
        detail += ", e.g. call-id " + ", ".join(map(str, listed[-1].data["call_ids"][:3]))
    return Verdict(name, orphans <= tolerance, _num(orphans), _num(tolerance), detail)


# -- running them ------------------------------------------------------------------------


def validate_params(name: str, params: Mapping[str, Any] | BaseModel) -> BaseModel:
    spec = get_check(name)
    if isinstance(params, spec.params):
        return params
    try:
        return spec.params.model_validate(dict(params))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(parameters)"
        raise UsageError(f"check {name}: {where}: {first['msg']}") from None


def run_checks(
    checks: Mapping[str, Mapping[str, Any] | BaseModel | None] | Any,
    series: Series,
    events: Sequence[Event],
    window: RunWindow,
) -> list[Verdict]:
    """Run each named check with its parameters; a None entry means the check is off.

    `checks` is a mapping of name -> parameters, or anything with `.items()` giving those
    (a scenario's `checks`).
    """
    verdicts = []
    for name, raw in checks.items():
        if raw is None:
            continue
        params = validate_params(name, raw)
        spec = CHECKS[name]
        verdicts.append(spec.fn(series, events, window, **dict(params)))
    return verdicts


# checks that live in their own modules register themselves on import
from rig.diagnosis import race, time_to_ceiling  # noqa: E402, F401
