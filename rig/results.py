"""The run folder: summary.json, series.csv, events.jsonl, logs/ and plots/.

    results/<run-id>/summary.json   written at creation with verdict "incomplete",
                                    replaced atomically by `finish` at the end
    results/<run-id>/series.csv     one row per sample, flushed as it is taken
    results/<run-id>/events.jsonl   one JSON object per event, flushed as it happens

series.csv columns: `t`, then every counter in the order first seen. When a sample brings
a counter no earlier sample had, the file is rewritten once with the wider header (earlier
rows get empty cells, which read back as "absent"). New counters are rare (a probe that
starts answering late), so a rewrite costs little and the file is always plain CSV.

`build_summary` is pure: values in, a `Summary` (rig/summary.py) out; `read_summary` reads
one back, migrating older versions.
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

from rig import atomic
from rig.atomic import atomic_open
from rig.checks import RunWindow, Verdict
from rig.errors import UsageError
from rig.series import Event, Sample, Series
from rig.summary import (
    BurstNumbers,
    Capture,
    CheckEntry,
    ClusterRun,
    CounterStats,
    Environment,
    HostileNumbers,
    LoadNumbers,
    Summary,
    Sut,
    Timing,
    load_summary,
)

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
        write_json_atomic(path / SUMMARY, incomplete_summary(run_id).to_json())
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
        with atomic_open(target, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["t", *self.columns])
            writer.writerows(row + [""] * (width - len(row)) for row in rows)

    def append_event(self, event: Event) -> None:
        line = json.dumps({"t": event.t, "kind": event.kind, "data": dict(event.data)},
                          default=jsonable)
        with open(self.path / EVENTS, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def finish(self, summary: Summary) -> Path:
        return write_json_atomic(self.path / SUMMARY, summary.to_json())


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
    """rig.atomic's writer, with numpy numbers and dataclasses as JSON."""
    return atomic.write_json_atomic(path, data, default=jsonable)


def incomplete_summary(run_id: str) -> Summary:
    return Summary(run_id=run_id, verdict="incomplete")


def error_summary(run_id: str, error: str) -> Summary:
    """A run the infrastructure ended (a service that would not start): verdict error."""
    return Summary(run_id=run_id, verdict="error", error=error)


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


def read_summary(folder: Path) -> Summary:
    """summary.json of a run folder, of any version this rig knows (see rig/summary.py)."""
    return load_summary(_require(folder, SUMMARY))


# -- the summary (pure) ------------------------------------------------------------------


def checks_side_by_side(
    summaries: Sequence[Summary],
) -> list[tuple[str, list[CheckEntry | None]]]:
    """Every check of any summary (first-seen order), with each summary's result or None."""
    names: dict[str, None] = {}
    for summary in summaries:
        for check in summary.checks:
            names.setdefault(check.name, None)
    return [(name, [s.check(name) for s in summaries]) for name in names]


def counter_stats(series: Series) -> dict[str, CounterStats]:
    stats = {}
    for name in series.names():
        values = series.values(name)
        stats[name] = CounterStats(first=values[0], peak=max(values), last=values[-1])
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
    return spread_stats(len(bursts), [s for e in bursts if (s := burst_spread(e)) is not None])


def node_burst_stats(events: Sequence[Event], node_id: str) -> dict[str, Any]:
    """One node's own bursts of a `--cluster` run: the burst events whose `nodes` name it,
    and the percentiles of its spread there."""
    mine = [e.data["nodes"] for e in events
            if e.kind == "burst" and node_id in (e.data.get("nodes") or {})]
    return spread_stats(len(mine), [float(n[node_id]) for n in mine if n[node_id] is not None])


def spread_stats(count: int, spreads: Sequence[float]) -> dict[str, Any]:
    """A BurstNumbers block: `count` bursts, the percentiles of the spreads measured."""
    if not spreads:
        return {"count": count, "spread_p50_us": None, "spread_p99_us": None,
                "spread_max_us": None}
    p50, p99 = np.percentile(spreads, [50, 99])
    return {"count": count, "spread_p50_us": round(float(p50), 1),
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


def overall_verdict(
    verdicts: Sequence[Verdict], error: str | None
) -> Literal["pass", "fail", "error"]:
    if error is not None:
        return "error"
    return "pass" if verdicts and all(v.passed for v in verdicts) else "fail"


def cluster_block(events: Sequence[Event]) -> ClusterRun | None:
    """The nodes of a `--cluster` run, from its `cluster` event, each with its own burst
    spreads (None without one)."""
    found = next((e for e in events if e.kind == "cluster"), None)
    if found is None:
        return None
    nodes = [{**node, "bursts": node_burst_stats(events, node["node_id"])}
             for node in found.data.get("nodes") or []]
    return ClusterRun.model_validate({**found.data, "nodes": nodes})


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
    capture: Mapping[str, Any] | None = None,
    hostile: Mapping[str, Any] | None = None,
) -> Summary:
    """summary.json as data. `scenario` is a Scenario (or its dict); `error` (an
    infrastructure failure) makes the verdict "error" whatever the checks said; with the
    run's `window` the summary carries the diagnosis (race or growth, time to the ceiling,
    allocation sites)."""
    scenario_dict = scenario.to_dict() if hasattr(scenario, "to_dict") else dict(scenario)
    diagnosis = None
    if window is not None:
        from rig.diagnosis.summary import diagnosis_block

        diagnosis = diagnosis_block(series, list(events), window, scenario_dict)
    return Summary(
        run_id=run_id,
        scenario=scenario_dict,
        verdict=overall_verdict(verdicts, error),
        checks=[CheckEntry(name=v.name, passed=v.passed, observed=clean_number(v.observed),
                           limit=clean_number(v.limit), detail=v.detail,
                           diagnosis=v.diagnosis,
                           values={k: clean_number(x) for k, x in v.values.items()})
                for v in verdicts],
        sut=Sut.model_validate({"commit": sut.get("commit", "unknown"),
                                "patches": list(sut.get("patches", ())),
                                **{k: v for k, v in sut.items()
                                   if k not in ("commit", "patches")}}),
        counters=counter_stats(series),
        load=LoadNumbers.model_validate(load_block(load)),
        bursts=BurstNumbers.model_validate(burst_stats(list(events))),
        timing=Timing.model_validate(timing_block(timing)),
        environment=Environment.model_validate(
            dict(environment) if environment is not None else environment_info()),
        diagnosis=diagnosis,
        capture=None if capture is None else Capture.model_validate(dict(capture)),
        hostile=None if hostile is None else HostileNumbers.model_validate(dict(hostile)),
        cluster=cluster_block(events),
        error=error,
    )


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
