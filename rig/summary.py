"""summary.json as a typed, versioned model: what a run found, read the same by every part.

`Summary` is what `rig.results.build_summary` returns and what `read_summary` gives back;
the report, the console, the gate, sweep, matrix and the pytest plugin read its fields.
`rig/summary.schema.json` is generated from these models (`python -m rig.summary`).

Versions (asv keeps its results the same way: versioned JSON, each old version migrated
one step at a time when read):
  1  the first summary.json. Blocks could be missing (`capture`, `error`, a check's
     `diagnosis`), the top level was open, and an unfinished run (verdict `incomplete`)
     was outside the model.
  2  every block is present and typed (`capture`, `sut`'s target, topology, media and
     services, `load`'s outcomes, a check's `diagnosis` as null when it has none); an
     unfinished run is a Summary with verdict `incomplete` and empty blocks. The field
     names of version 1 are unchanged. A check's `values` came later in version 2, with
     a default (empty), so files written before it read unchanged. `cluster` (the Ray
     nodes of a `--cluster` run and their clock offsets) came later too, null by default,
     and later still each node's `label` and its own `bursts`, with defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rig.atomic import write_json_atomic
from rig.errors import UsageError, quote

SCHEMA_VERSION = 2
SUMMARY_SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")

Number = float | int | None
Verdict = Literal["pass", "fail", "error", "incomplete"]


class _Open(BaseModel):
    """A block whose writer may add numbers of its own (the driver's load figures, the
    stack's timings): the named fields are typed, the rest is kept as written."""

    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckEntry(_Closed):
    name: str
    passed: bool
    observed: float | int | str | None
    limit: float | int | str | None
    detail: str = ""
    diagnosis: str | None = None  # the check's one-word reading: "race", "growth"
    # the named numbers behind the detail (tracks: drift, drift_per_minute, ceiling,
    # seconds_to_ceiling, ...); empty for checks without any, and in files written before
    values: dict[str, float | None] = Field(default_factory=dict)


class Addresses(_Closed):
    """Where the run's services listened and the rig sent from: what to filter a capture
    on, or to find the run's traffic on a shared machine."""

    host: str  # every service's and the rig's own (targets.host, or the run's 127.a.b.c)
    ng_port: int | None = None  # the media relay's NG control port
    sip_port: int | None = None  # the SIP proxy's (topology kamailio), else null
    uac_port: int | None = None  # the rig's caller (generator process 0)
    uas_port: int | None = None  # the rig's callee (generator process 0)
    generator_sip_ports: list[int] = Field(default_factory=list)  # processes 1..: UAC, UAS
    relay_rtp_ports: tuple[int, int] | None = None
    rig_rtp_ports: tuple[int, int] | None = None


class Sut(_Open):
    commit: str = "unknown"
    patches: list[str] = Field(default_factory=list)
    target: str | None = None
    topology: str | None = None
    media: str | None = None
    services: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)  # the version each service reports
    netns: str | None = None  # the run's network namespace, with `netns:` in the scenario
    addresses: Addresses | None = None  # null where the run did not get as far


class CounterStats(_Closed):
    first: float
    peak: float
    last: float


class LoadNumbers(_Open):
    calls_attempted: int | None = None
    calls_completed: int | None = None
    calls_failed: int | None = None
    cps: Number = None
    rtp_sent: int | None = None
    rtp_received: int | None = None
    rtp_lost: int | None = None
    # per stream, RFC 3550 (rig.wire.rtpstats), merged over streams and processes
    rtp_streams: int | None = None
    rtp_expected: int | None = None
    rtp_duplicates: int | None = None
    rtp_reordered: int | None = None
    rtp_send_errors: int | None = None
    rtp_invalid: int | None = None
    rtp_loss_fraction: Number = None
    jitter_ms_max: Number = None
    jitter_ms_mean: Number = None
    outcomes: dict[str, int] = Field(default_factory=dict)


class BurstNumbers(_Closed):
    count: int = Field(default=0, ge=0)
    spread_p50_us: Number = None
    spread_p99_us: Number = None
    spread_max_us: Number = None


class Timing(_Open):
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    started_utc: str | None = None
    finished_utc: str | None = None


class Environment(_Open):
    python: str | None = None
    platform: str | None = None
    cpus: int | None = None
    hostname: str | None = None


class Capture(_Open):
    """capture.pcap of the run (rig/capture.py): counts when captured, else the reason."""

    enabled: bool = False
    captured: bool = False
    file: str | None = None
    filter: str | None = None
    max_bytes: int | None = None
    written: int | None = None
    bytes: int | None = None
    truncated: bool = False
    dropped_middle: int | None = None
    reason: str | None = None


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


class ToolNumbers(_Closed):
    """One sipvicious command's runs: requests sent, runs killed at their time, exit codes,
    and the statuses of the answers it printed."""

    runs: int
    requests: int
    killed: int
    exit_codes: dict[str, int]
    answers: dict[str, int]


class ClusterNode(_Closed):
    """A Ray node that ran generators, its clock measured from the coordinator, and its own
    burst spreads."""

    label: str | None = Field(
        default=None, description="`node1`, `node2`, ... in the generators' order: the "
                                  "node's columns in series.csv (`load.calls_active@node1`)")
    node_id: str
    ip: str
    generators: list[int] = Field(default_factory=list)  # the shares' indexes
    offset_s: float | None = Field(
        default=None, description="how far the node's wall clock is ahead of the "
                                  "coordinator's (NTP-style, least-delay exchange)")
    delay_s: float | None = None  # that exchange's round trip: the offset's error bound
    bursts: BurstNumbers = Field(
        default_factory=BurstNumbers,
        description="the bursts this node fired in and the spread of its own sends in them "
                    "(the `burst` events' `nodes`); the top-level `bursts` is across nodes")


class ClusterRun(_Closed):
    address: str
    nodes: list[ClusterNode] = Field(default_factory=list)
    ray_start_s: float | None = None  # joining the cluster (or starting the embedded Ray)
    actors_start_s: float | None = None  # placement group and generator actors up


class HostileNumbers(_Closed):
    """What the hostile traffic sent, by kind, and how the SUT answered each message."""

    target: Literal["proxy", "uas"]
    sent: dict[str, int]
    messages: int
    answers: dict[str, dict[str, int]]  # kind -> first final status (or "none") -> messages
    tools: dict[str, ToolNumbers]


class Summary(_Closed):
    """summary.json of a run; an unfinished one has verdict `incomplete` and empty blocks."""

    schema_version: Literal[2] = 2
    run_id: str
    scenario: dict[str, Any] = Field(
        default_factory=dict,
        description="the scenario as run (its own model: rig/scenario.schema.json), kept as "
                    "written so a run folder opens after the scenario format moves on")
    verdict: Verdict
    checks: list[CheckEntry] = Field(default_factory=list)
    sut: Sut = Field(default_factory=Sut)
    counters: dict[str, CounterStats] = Field(default_factory=dict)
    load: LoadNumbers = Field(default_factory=LoadNumbers)
    bursts: BurstNumbers = Field(default_factory=BurstNumbers)
    timing: Timing = Field(default_factory=Timing)
    environment: Environment = Field(default_factory=Environment)
    diagnosis: Diagnosis | None = None
    capture: Capture | None = None
    hostile: HostileNumbers | None = Field(
        default=None, description="the `hostile:` section's traffic; null without one")
    cluster: ClusterRun | None = Field(
        default=None, description="the Ray nodes of a `--cluster` run; null without one")
    error: str | None = None

    @property
    def name(self) -> str:
        """The scenario's name, or the run id where the summary has no scenario."""
        return str(self.scenario.get("name") or self.run_id)

    def check(self, name: str) -> CheckEntry | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def failed_checks(self) -> list[CheckEntry]:
        return [c for c in self.checks if not c.passed]

    def peaks(self) -> dict[str, float]:
        return {name: stats.peak for name, stats in self.counters.items()}

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict summary.json holds."""
        return self.model_dump(mode="json")


# -- reading old versions ----------------------------------------------------------------


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 left keys out where version 2 writes null; its top level was open, but no
    rig wrote keys other than these."""
    known = set(Summary.model_fields)
    out = {k: v for k, v in data.items() if k in known}
    out["schema_version"] = 2
    if isinstance(out.get("checks"), list):
        out["checks"] = [{"diagnosis": None, **c} if isinstance(c, dict) else c
                         for c in out["checks"]]
    return out


# from version N to N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: v1_to_v2}


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A summary of any version this rig knows, brought to SCHEMA_VERSION."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not (
            1 <= version <= SCHEMA_VERSION):
        raise UsageError(f"{source}: schema_version {quote(version)}: this rig reads summaries of "
                         f"version 1 to {SCHEMA_VERSION}")
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    return data


def parse_summary(data: Any, source: str) -> Summary:
    """A summary.json's content as a Summary; anything else is one clear line (UsageError)."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: not a JSON object")
    try:
        return Summary.model_validate(migrate(data, source))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise UsageError(f"{source}: {where}: {first['msg']}{more}") from None


def load_summary(path: Path) -> Summary:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except ValueError as err:
        raise UsageError(f"{path}: not JSON: {err}") from None
    return parse_summary(data, str(path))


# -- the JSON Schema ---------------------------------------------------------------------


def summary_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Summary.model_json_schema()}


def write_summary_schema(path: Path = SUMMARY_SCHEMA_PATH) -> Path:
    return write_json_atomic(path, summary_schema(), sort_keys=True)


if __name__ == "__main__":
    print(write_summary_schema())
