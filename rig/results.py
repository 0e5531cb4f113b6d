"""The run folder: summary.json, series.csv, events.jsonl, logs/ and plots/.

    results/<run-id>/summary.json   written at creation with verdict "incomplete",
                                    replaced atomically by `finish` at the end
    results/<run-id>/series.csv     one row per sample, flushed as it is taken
    results/<run-id>/events.jsonl   one JSON object per event, flushed as it happens

series.csv columns: `t`, then every counter in the order first seen. When a sample brings
a counter no earlier sample had, the file is rewritten once with the wider header (earlier
rows get empty cells, which read back as "absent"). New counters are rare (a probe that
starts answering late), so a rewrite costs little and the file is always plain CSV.

`build_summary` is pure: values in, a JSON-ready dict out, in the shape of
`summary.schema.json` (generated from the models below by `write_summary_schema`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rig.checks import RunWindow, Verdict
from rig.errors import UsageError
from rig.series import Event, Sample, Series

SCHEMA_VERSION = 1
SUMMARY_SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")
SUMMARY, SERIES, EVENTS = "summary.json", "series.csv", "events.jsonl"


# -- the folder --------------------------------------------------------------------------


@dataclass
class RunFolder:
    """Writes one run's files. Files are opened per write, so nothing needs closing."""

    path: Path
    columns: list[str] = field(default_factory=list)

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @classmethod
    def create(cls, root: Path, run_id: str) -> RunFolder:
        path = Path(root) / run_id
        if (path / SUMMARY).exists():
            raise UsageError(f"run folder already holds a run: {path}")
        for sub in ("logs", "plots"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        folder = cls(path)
        write_json_atomic(path / SUMMARY, incomplete_summary(run_id))
        return folder

    def append_sample(self, sample: Sample) -> None:
        new = [name for name in sample.values if name not in self.columns]
        if new or not (self.path / SERIES).exists():
            self._widen(new)
        row = [format_number(sample.t)] + [
            format_number(sample.values[c]) if c in sample.values else "" for c in self.columns
        ]
        with open(self.path / SERIES, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(row)
            f.flush()

    def _widen(self, new: list[str]) -> None:
        """Rewrite series.csv with the new counters added to the header."""
        self.columns = [*self.columns, *new]
        target = self.path / SERIES
        rows: list[list[str]] = []
        if target.exists():
            with target.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))[1:]
        width = 1 + len(self.columns)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["t", *self.columns])
            writer.writerows(row + [""] * (width - len(row)) for row in rows)
        os.replace(tmp, target)

    def append_event(self, event: Event) -> None:
        line = json.dumps({"t": event.t, "kind": event.kind, "data": dict(event.data)},
                          default=jsonable)
        with open(self.path / EVENTS, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def finish(self, summary: Mapping[str, Any]) -> Path:
        return write_json_atomic(self.path / SUMMARY, summary)


def format_number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def jsonable(value: Any) -> Any:
    """json.dumps fallback: dataclasses as dicts, anything else as its text."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def incomplete_summary(run_id: str) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "verdict": "incomplete"}


def new_run_id(scenario_name: str, now: float, suffix: str | None = None) -> str:
    """`20261122-031500-pin-race-ab12`: UTC time of `now`, scenario name, a random tag."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{scenario_name}-{suffix or secrets.token_hex(2)}"


# -- reading back ------------------------------------------------------------------------


def _require(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise UsageError(f"not a run folder (no {name}): {folder}")
    return path


def read_series(folder: Path) -> Series:
    """series.csv back into a Series; empty cells are absent counters."""
    path = _require(folder, SERIES)
    series = Series()
    with path.open(newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.DictReader(f), start=2):
            try:
                values = {k: float(v) for k, v in row.items() if k and v not in ("", None)}
                t = values.pop("t")
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{lineno}: not a row of numbers") from None
            series.append(Sample(t=t, values=values))
    return series


def read_events(folder: Path) -> list[Event]:
    """events.jsonl back into Events; a cut-off last line (a killed run) is skipped."""
    path = Path(folder) / EVENTS
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    events = []
    for lineno, line in enumerate(lines, start=1):
        try:
            raw = json.loads(line)
            events.append(Event(t=float(raw["t"]), kind=str(raw["kind"]),
                                data=raw.get("data") or {}))
        except (ValueError, KeyError, TypeError):
            if lineno == len(lines):
                break
            raise UsageError(f"{path}:{lineno}: not an event") from None
    return events


def read_summary(folder: Path) -> dict[str, Any]:
    path = _require(folder, SUMMARY)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UsageError(f"{path}: not JSON: {err}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
    return data


# -- the summary (pure) ------------------------------------------------------------------


def checks_side_by_side(
    summaries: Sequence[Mapping[str, Any]],
) -> list[tuple[str, list[Mapping[str, Any] | None]]]:
    """Every check of any summary (first-seen order), with each summary's result or None."""
    names: dict[str, None] = {}
    for summary in summaries:
        for check in summary.get("checks", []):
            names.setdefault(check["name"], None)
    return [(name, [next((c for c in s.get("checks", []) if c["name"] == name), None)
                    for s in summaries])
            for name in names]


def counter_stats(series: Series) -> dict[str, dict[str, float]]:
    stats = {}
    for name in series.names():
        values = series.values(name)
        stats[name] = {"first": values[0], "peak": max(values), "last": values[-1]}
    return stats


def burst_spread(event: Event) -> float | None:
    """One burst's alignment spread in µs: `spread_us` (the contract) or, from a load driver
    that reports percentiles per burst, its `spread_max_us`."""
    for key in ("spread_us", "spread_max_us"):
        if event.data.get(key) is not None:
            return float(event.data[key])
    return None


def burst_stats(events: Sequence[Event]) -> dict[str, Any]:
    """Count of burst events and the percentiles of their alignment spread."""
    bursts = [e for e in events if e.kind == "burst"]
    spreads = [spread for e in bursts if (spread := burst_spread(e)) is not None]
    if not spreads:
        return {"count": len(bursts), "spread_p50_us": None, "spread_p99_us": None,
                "spread_max_us": None}
    p50, p99 = np.percentile(spreads, [50, 99])
    return {"count": len(bursts), "spread_p50_us": round(float(p50), 1),
            "spread_p99_us": round(float(p99), 1), "spread_max_us": round(max(spreads), 1)}


LOAD_KEYS = ("calls_attempted", "calls_completed", "calls_failed", "cps",
             "rtp_sent", "rtp_received", "rtp_lost")


def load_block(load: Mapping[str, Any]) -> dict[str, Any]:
    """The known load numbers (None where not given) plus whatever else the driver reported,
    less its per-burst list (the bursts block summarises the burst events)."""
    block: dict[str, Any] = {key: load.get(key) for key in LOAD_KEYS}
    extra = {k: v for k, v in load.items() if k not in block and k != "bursts"}
    return {**block, **json.loads(json.dumps(extra, default=jsonable))}


def clean_number(value: Any) -> Any:
    """NaN and infinities are not JSON: they become None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def overall_verdict(verdicts: Sequence[Verdict], error: str | None) -> str:
    if error is not None:
        return "error"
    return "pass" if verdicts and all(v.passed for v in verdicts) else "fail"


def build_summary(
    *,
    run_id: str,
    scenario: Any,
    verdicts: Sequence[Verdict],
    series: Series,
    events: Sequence[Event],
    load: Mapping[str, Any],
    sut: Mapping[str, Any],
    timing: Mapping[str, Any],
    environment: Mapping[str, Any] | None = None,
    error: str | None = None,
    window: RunWindow | None = None,
) -> dict[str, Any]:
    """summary.json as data. `scenario` is a Scenario (or its dict); `error` (an
    infrastructure failure) makes the verdict "error" whatever the checks said; with the
    run's `window` the summary carries the diagnosis (race or growth, time to the ceiling,
    allocation sites)."""
    scenario_dict = scenario.to_dict() if hasattr(scenario, "to_dict") else dict(scenario)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "scenario": scenario_dict,
        "verdict": overall_verdict(verdicts, error),
        "checks": [
            {"name": v.name, "passed": v.passed, "observed": clean_number(v.observed),
             "limit": clean_number(v.limit), "detail": v.detail,
             **({"diagnosis": v.diagnosis} if v.diagnosis is not None else {})}
            for v in verdicts
        ],
        "sut": {"commit": sut.get("commit", "unknown"), "patches": list(sut.get("patches", ())),
                **{k: v for k, v in sut.items() if k not in ("commit", "patches")}},
        "counters": counter_stats(series),
        "load": load_block(load),
        "bursts": burst_stats(list(events)),
        "timing": timing_block(timing),
        "environment": dict(environment) if environment is not None else environment_info(),
    }
    if window is not None:
        from rig.diagnosis.summary import diagnosis_block

        summary["diagnosis"] = diagnosis_block(series, list(events), window, scenario_dict)
    if error is not None:
        summary["error"] = error
    return summary


def timing_block(timing: Mapping[str, Any]) -> dict[str, Any]:
    started, finished = timing.get("started"), timing.get("finished")
    block = dict(timing)
    if started is not None:
        block["started_utc"] = utc(started)
    if finished is not None:
        block["finished_utc"] = utc(finished)
    if "duration_s" not in block and started is not None and finished is not None:
        block["duration_s"] = round(finished - started, 3)
    return block


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def environment_info() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "hostname": platform.node()}


# -- the summary's JSON Schema -----------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


Number = float | int | None


class CheckEntry(_Closed):
    name: str
    passed: bool
    observed: float | int | str | None
    limit: float | int | str | None
    detail: str
    diagnosis: str | None = None


class Sut(_Open):
    commit: str
    patches: list[str]


class CounterStats(_Closed):
    first: float
    peak: float
    last: float


class LoadNumbers(_Open):
    calls_attempted: Number
    calls_completed: Number
    calls_failed: Number
    cps: Number
    rtp_sent: Number
    rtp_received: Number
    rtp_lost: Number


class BurstNumbers(_Closed):
    count: int = Field(ge=0)
    spread_p50_us: Number
    spread_p99_us: Number
    spread_max_us: Number


class Timing(_Open):
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None


class Environment(_Open):
    python: str
    platform: str
    cpus: int | None
    hostname: str


class RaceNumbers(_Closed):
    calls: int
    threads: int
    window_ms: float
    concurrent_clusters: int
    racing_clusters: int
    phantom_calls: int
    verdict: Literal["race", "growth"]


class PinStepEntry(_Closed):
    t: float
    before: float
    after: float


class CeilingEtaEntry(_Closed):
    ceiling: float
    hours: float | None
    hours_low: float | None
    hours_high: float | None


class ProjectionNumbers(_Closed):
    counter: str
    bursts_per_hour: float
    warmup_s: float
    bursts_fitted: int
    start: float
    last: float
    per_burst: float
    per_burst_se: float | None
    per_hour: float
    ceilings: list[CeilingEtaEntry]
    text: str


class SiteEntry(_Closed):
    count: int | None
    bytes: int
    bytes_per_shard: float | None


class SiteHistogram(_Closed):
    t: float
    pins: int | None
    shards: int | None
    sites: dict[str, SiteEntry]


class AllocationSites(_Closed):
    shard_size: int | None
    at_peak: SiteHistogram
    at_load_stop: SiteHistogram
    at_pin_steps: list[SiteHistogram]


class Diagnosis(_Closed):
    """Why it failed: race or growth, pin steps, time to the ceiling, what fills the shards."""

    make_shard: RaceNumbers | None
    pin_steps: list[PinStepEntry]
    projection: ProjectionNumbers | None
    allocation_sites: AllocationSites | None


class Summary(_Open):
    """summary.json of a finished run (an unfinished one has only run_id and verdict)."""

    schema_version: Literal[1]
    run_id: str
    scenario: dict[str, Any]
    verdict: Literal["pass", "fail", "error"]
    checks: list[CheckEntry]
    sut: Sut
    counters: dict[str, CounterStats]
    load: LoadNumbers
    bursts: BurstNumbers
    timing: Timing
    environment: Environment
    diagnosis: Diagnosis | None = None
    error: str | None = None


def summary_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Summary.model_json_schema()}


def write_summary_schema(path: Path = SUMMARY_SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(summary_schema(), indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_summary_schema())
