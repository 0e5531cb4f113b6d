"""The summary's `diagnosis` block: race or growth, pin steps, the time to the ceiling and
the allocation-site histograms, from a run's series and events and its scenario (as the
plain dict summary.json carries), as the typed blocks of rig/summary.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rig.checks import RunWindow
from rig.diagnosis.race import GROWTH, RACE, RaceParams, classify, phantom_calls, shard_calls
from rig.diagnosis.sites import site_histograms
from rig.diagnosis.time_to_ceiling import pin_steps, project, projection_text
from rig.series import Event, Series
from rig.summary import (
    AllocationSites,
    CeilingEtaEntry,
    Diagnosis,
    PinStepEntry,
    ProjectionNumbers,
    RaceNumbers,
)

DEFAULT_CEILING = 16
PINS = "kmod.pins"
PINS_CEILING = "MAX_SHM_AREAS"  # what sets the pin ceiling, in rtpengine's module and kmod


def projection_settings(scenario: Mapping[str, Any]) -> tuple[float | None, list[float], float]:
    """(bursts per hour, ceilings, warm-up seconds) from the scenario's `projection` block,
    falling back to its burst rate and its checks' ceiling and warm-up."""
    settings = scenario.get("projection") or {}
    checks = scenario.get("checks") or {}
    bursts = scenario.get("bursts") or {}
    rate = settings.get("bursts_per_hour")
    if rate is None and bursts.get("every"):
        rate = 3600.0 / float(bursts["every"])
    ceiling = (checks.get("pins_below_ceiling") or {}).get("ceiling", DEFAULT_CEILING)
    ceilings = settings.get("ceilings") or [ceiling, 2 * ceiling]
    warmup = settings.get("warmup")
    if warmup is None:
        warmup = (checks.get("pins_flat_after_warmup") or {}).get("warmup", 0.0)
    return rate, [float(c) for c in ceilings], float(warmup)


def race_block(events: Sequence[Event], scenario: Mapping[str, Any]) -> RaceNumbers | None:
    calls = shard_calls(events)
    if not calls:
        return None
    params = (scenario.get("checks") or {}).get("make_shard_race") or {}
    window_ms = float(params.get("window_ms", RaceParams().window_ms))
    concurrent, racing = classify(calls, window_ms)
    return RaceNumbers(calls=len(calls), threads=len({c.thread for c in calls}),
                       window_ms=window_ms, concurrent_clusters=len(concurrent),
                       racing_clusters=len(racing),
                       phantom_calls=len(phantom_calls(calls, window_ms)),
                       verdict=RACE if racing else GROWTH)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def projection_block(series: Series, events: Sequence[Event], window: RunWindow,
                     scenario: Mapping[str, Any]) -> ProjectionNumbers | None:
    rate, ceilings, warmup = projection_settings(scenario)
    if rate is None:
        return None
    p = project(series, events, window, bursts_per_hour=rate, ceilings=ceilings,
                warmup=warmup, counter=PINS)
    if p is None:
        return None
    return ProjectionNumbers(
        counter=p.counter, bursts_per_hour=round(rate, 3), warmup_s=warmup,
        bursts_fitted=p.fit.bursts, start=p.fit.start, last=p.fit.last,
        per_burst=round(p.fit.per_burst, 4), per_burst_se=_round(p.fit.per_burst_se, 4),
        per_hour=round(p.per_hour, 3),
        ceilings=[CeilingEtaEntry(ceiling=e.ceiling, hours=_round(e.hours, 4),
                                  hours_low=_round(e.hours_low, 4),
                                  hours_high=_round(e.hours_high, 4)) for e in p.etas],
        text=projection_text(p, PINS_CEILING if p.counter == PINS else None))


def diagnosis_block(series: Series, events: Sequence[Event], window: RunWindow,
                    scenario: Mapping[str, Any]) -> Diagnosis:
    relay = (scenario.get("services") or {}).get("relay") or {}
    sites = site_histograms(series, window.load_stop, relay.get("shard_size"))
    return Diagnosis(
        make_shard=race_block(events, scenario),
        pin_steps=[PinStepEntry(t=s.t, before=s.before, after=s.after)
                   for s in pin_steps(series.column(PINS))],
        projection=projection_block(series, events, window, scenario),
        allocation_sites=None if sites is None else AllocationSites.model_validate(sites),
    )
