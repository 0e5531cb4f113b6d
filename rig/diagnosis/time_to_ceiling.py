"""Time to the ceiling: pins climb in steps at bursts and never fall; fit the growth per
burst and project when they reach the ceiling at a burst rate, as an operator would ask.

The plateau after burst i is the last pin reading before burst i+1 (or before the load
stops). A least-squares line through the plateaus of the bursts after the warm-up gives the
growth per burst and its standard error; the projection counts from the plateau where the
warm-up ended (what a freshly restarted daemon climbs to under this load) and gives a 95%
range from the slope's uncertainty. `pins_below_alert` is an operator's monitor: it fails
at the alert level, before the ceiling is reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, model_validator

from rig.checks import Params, RunWindow, Verdict, missing, register, value_at
from rig.series import Event, Series

Z95 = 1.96
MIN_BURSTS = 2
MIN_BURSTS_FOR_RANGE = 3


@dataclass(frozen=True)
class PinStep:
    t: float
    before: float
    after: float


@dataclass(frozen=True)
class GrowthFit:
    """Pins per burst fitted over `bursts` plateaus from level `start`."""

    bursts: int
    per_burst: float
    per_burst_se: float | None  # None with fewer than three plateaus
    start: float
    last: float


@dataclass(frozen=True)
class CeilingEta:
    ceiling: float
    hours: float | None  # None: no growth, the ceiling is not reached
    hours_low: float | None
    hours_high: float | None  # None: the fit allows no growth at all


@dataclass(frozen=True)
class Projection:
    counter: str
    bursts_per_hour: float
    fit: GrowthFit
    per_hour: float
    etas: tuple[CeilingEta, ...]


def pin_steps(column: Sequence[tuple[float, float]]) -> list[PinStep]:
    """Where the counter rose between consecutive readings."""
    return [PinStep(t1, v0, v1) for (_, v0), (t1, v1) in zip(column, column[1:], strict=False)
            if v1 > v0]


def plateaus(column: Sequence[tuple[float, float]], bursts: Sequence[float],
             until: float) -> list[tuple[float, float]]:
    """(burst time, last reading before the next burst or `until`) for each burst."""
    if not bursts:  # a run that died before its first burst
        return []
    ends = [*bursts[1:], until]
    out = []
    for t, end in zip(bursts, ends, strict=True):
        reading = value_at([(ts, v) for ts, v in column if ts < end], end)
        if reading is not None and reading[0] >= t:
            out.append((t, reading[1]))
    return out


def fit_line(ys: Sequence[float]) -> tuple[float, float, float | None]:
    """Least squares y = a + b*i over i = 0..n-1: (a, b, standard error of b)."""
    n = len(ys)
    xs = range(n)
    mx, my = (n - 1) / 2, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a = my - b * mx
    if n < 3:
        return a, b, None
    ssr = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, b, math.sqrt(ssr / (n - 2) / sxx)


def fit_growth(column: Sequence[tuple[float, float]], bursts: Sequence[float], until: float,
               warmup_end: float) -> GrowthFit | None:
    """Growth per burst over the plateaus of bursts at or after warmup_end; None with fewer
    than two such plateaus."""
    levels = [v for t, v in plateaus(column, bursts, until) if t >= warmup_end]
    if len(levels) < MIN_BURSTS:
        return None
    before = value_at(column, warmup_end)
    # The level the warm-up left is the first point: a step at the first burst after it
    # is growth, not the baseline the later plateaus are measured from.
    start = before[1] if before is not None else levels[0]
    _, slope, se = fit_line([start, *levels] if before is not None else levels)
    if len(levels) < MIN_BURSTS_FOR_RANGE:  # one degree of freedom: no honest range
        se = None
    return GrowthFit(len(levels), slope, se, start, levels[-1])


def eta(fit: GrowthFit, bursts_per_hour: float, ceiling: float) -> CeilingEta:
    """Hours from the warm level to the ceiling, with a 95% range from the slope's error."""
    room = ceiling - fit.start

    def hours(per_burst: float) -> float | None:
        if room <= 0:
            return 0.0
        return room / (per_burst * bursts_per_hour) if per_burst > 1e-9 else None

    spread = Z95 * fit.per_burst_se if fit.per_burst_se is not None else None
    low = hours(fit.per_burst + spread) if spread is not None else None
    high = hours(fit.per_burst - spread) if spread is not None else None
    return CeilingEta(ceiling, hours(fit.per_burst), low, high)


def project(series: Series, events: Sequence[Event], window: RunWindow, *,
            bursts_per_hour: float, ceilings: Sequence[float], warmup: float = 0.0,
            counter: str = "kmod.pins") -> Projection | None:
    """The projection, or None when the run has no counter or too few bursts to fit."""
    column = series.column(counter)
    bursts = [e.t for e in events if e.kind == "burst" and e.t <= window.load_stop]
    crashes = [e.t for e in events if e.kind == "crash"]
    until = min([window.load_stop, *crashes])
    fit = fit_growth(column, [t for t in bursts if t < until], until,
                     window.load_start + warmup)
    if not column or fit is None:
        return None
    return Projection(counter, bursts_per_hour, fit, fit.per_burst * bursts_per_hour,
                      tuple(eta(fit, bursts_per_hour, c) for c in ceilings))


def hours_text(hours: float | None) -> str:
    if hours is None:
        return "never"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def eta_text(e: CeilingEta) -> str:
    if e.hours is None:
        return "not reached (no growth)"
    if e.hours_low is None:
        return f"in {hours_text(e.hours)}"
    return (f"in {hours_text(e.hours)} "
            f"(95%: {hours_text(e.hours_low)} to {hours_text(e.hours_high)})")


def projection_text(p: Projection, ceiling_name: str | None = None) -> str:
    """`at 30 bursts/hour: ceiling 16 in 3.1 h (...); with a ceiling of 32 in 6.5 h (...)`;
    with the constant that sets the ceiling named (`MAX_SHM_AREAS`): `ceiling
    (MAX_SHM_AREAS 16) in 3.1 h (...); with MAX_SHM_AREAS 32 in 6.5 h (...)`."""
    if all(e.hours is None for e in p.etas):
        return (f"no growth after the warm-up: {p.fit.last:g} pins over {p.fit.bursts} bursts "
                f"(from {p.fit.start:g}); no ceiling is reached at any burst rate")
    spread = (f" (± {p.fit.per_burst_se:.2f})" if p.fit.per_burst_se is not None
              else f" (no range from {p.fit.bursts} bursts)")
    head = (f"{p.fit.per_burst:+.2f} pins per burst{spread} over {p.fit.bursts} bursts "
            f"from {p.fit.start:g}")
    first, *rest = p.etas
    ceiling = (f"ceiling ({ceiling_name} {first.ceiling:g})" if ceiling_name
               else f"ceiling {first.ceiling:g}")
    parts = [f"at {p.bursts_per_hour:g} bursts/hour: {ceiling} {eta_text(first)}"]
    parts += [(f"with {ceiling_name} {e.ceiling:g}" if ceiling_name
               else f"with a ceiling of {e.ceiling:g}") + f" {eta_text(e)}" for e in rest]
    return f"{head}; " + "; ".join(parts)


class AlertParams(Params):
    alert: float = Field(default=12, gt=0, description="an operator's alert level")
    ceiling: float = Field(default=16, gt=0, description="the ceiling the alert guards")
    counter: str = Field(default="kmod.pins", min_length=1)

    @model_validator(mode="after")
    def below_ceiling(self) -> AlertParams:
        if self.alert >= self.ceiling:
            raise ValueError(f"alert {self.alert:g} is not below the ceiling {self.ceiling:g}")
        return self


@register(AlertParams)
def pins_below_alert(
    series: Series, events: Sequence[Event], window: RunWindow, *, alert: float,
    ceiling: float, counter: str,
) -> Verdict:
    """The counter stays below the alert level (12 of 16), as an operator's monitor."""
    name = "pins_below_alert"
    if (gone := missing(name, [counter], series, events)) is not None:
        return gone
    column = series.column(counter)
    t_peak, peak = max(column, key=lambda tv: tv[1])
    crossed = next(((t, v) for t, v in column if v >= alert), None)
    if crossed is None:
        return Verdict(name, True, _n(peak), _n(alert),
                       f"{counter} peaked at {_n(peak)} at t={t_peak:.2f} s, below the alert "
                       f"{_n(alert)} of {_n(ceiling)}")
    at_ceiling = next((t for t, v in column if v >= ceiling), None)
    detail = f"{counter} reached the alert {_n(alert)} of {_n(ceiling)} at t={crossed[0]:.2f} s"
    if at_ceiling is not None:
        detail += f", {at_ceiling - crossed[0]:.2f} s before it hit the ceiling"
    return Verdict(name, False, _n(peak), _n(alert), detail)


def _n(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)
