"""`rig matrix`: one scenario under every combination of a few settings, side by side.

Each axis is a scenario key with the values to try (`services.kamailio.shm_manager=qm,fm,tlsf`);
every combination becomes one run (the values go in as `--set` overrides) in its own folder
under the matrix folder. The comparison is computed as data (`CellResult`), then printed as a
table (`matrix.txt`), saved as `matrix.json` (status `incomplete` until the whole matrix is
written, like a run's summary.json), and rendered with `rig.report.html_report` over the run
folders.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rig.atomic import write_json_atomic, write_text_atomic
from rig.distribute import SERIAL, Dispatch, open_pool
from rig.errors import UsageError, quote, shorten
from rig.services import matrix_counters
from rig.summary import Summary

AXIS_KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
MAX_CELLS = 64
MATRIX_SCHEMA = 2  # 1 was a bare list of the cells, written only at the end


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """One combination: its folder name and the overrides that make it."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class CellResult:
    name: str
    overrides: tuple[str, ...]
    verdict: str
    cps: float | None
    calls_completed: int | None
    # (counter, peak, last) of every counter a service has `rig matrix` compare
    counters: tuple[tuple[str, float | None, float | None], ...]
    checks: tuple[tuple[str, bool, Any], ...]  # (check, passed, observed)
    versions: tuple[tuple[str, str], ...] = ()  # (service, the version it reported)


def parse_axis(text: str) -> Axis:
    """`KEY=V1,V2,...` -> Axis; a malformed axis is a one-line usage error."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    values = tuple(v.strip() for v in raw.split(","))
    if not sep or not AXIS_KEY.match(key):
        raise UsageError(f"--axis {quote(text)}: expected KEY.PATH=V1,V2 "
                         f"(e.g. services.kamailio.shm_manager=qm,fm,tlsf)")
    if not all(values):
        raise UsageError(f"--axis {shorten(key)}: empty value in {quote(raw)}")
    if len(set(values)) != len(values):
        raise UsageError(f"--axis {shorten(key)}: a value is listed twice in {quote(raw)}")
    return Axis(key, values)


def cells(axes: Sequence[Axis]) -> list[Cell]:
    """Every combination of the axes' values, the first axis varying slowest."""
    if not axes:
        raise UsageError("a matrix needs at least one --axis")
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise UsageError(f"--axis given twice for the same key: {keys}")
    combos = list(itertools.product(*(a.values for a in axes)))
    if len(combos) > MAX_CELLS:
        raise UsageError(f"{len(combos)} cells: at most {MAX_CELLS} per matrix")
    labels = key_labels(keys)
    return [
        Cell(
            name="_".join(f"{label}-{safe(value)}"
                          for label, value in zip(labels, combo, strict=True)),
            overrides=tuple(f"{key}={value}" for key, value in zip(keys, combo, strict=True)),
        )
        for combo in combos
    ]


def key_labels(keys: Sequence[str]) -> list[str]:
    """Each key's last segment in cell names, or as many segments as tell it from the other
    keys (services.rtpengine.suite and services.kamailio.suite: rtpengine.suite ...)."""
    def label(key: str, depth: int) -> str:
        return ".".join(key.split(".")[-depth:])

    labels = []
    for key in keys:
        depth = 1
        while depth < key.count(".") + 1 and any(
                label(other, depth) == label(key, depth) for other in keys if other != key):
            depth += 1
        labels.append(label(key, depth))
    return labels


def safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", value)


def cell_result(cell: Cell, summary: Summary) -> CellResult:
    """The numbers a matrix compares, from one run's summary."""
    counters = [(c.counter, summary.counters.get(c.counter)) for c in matrix_counters()]
    return CellResult(
        name=cell.name,
        overrides=cell.overrides,
        verdict=summary.verdict,
        cps=summary.load.cps,
        calls_completed=summary.load.calls_completed,
        counters=tuple((name, None if stats is None else stats.peak,
                        None if stats is None else stats.last) for name, stats in counters),
        checks=tuple((c.name, c.passed, c.observed) for c in summary.checks),
        versions=tuple(summary.sut.versions.items()),
    )


def matrix_table(results: Sequence[CellResult]) -> str:
    """One row per cell: throughput, the versions the services reported (when any did: a
    matrix over services.<name>.suite is a compatibility table), the services' compared
    counters (Kamailio's shm), then each check's verdict."""
    from rig.console import table

    compared = matrix_counters()
    names: dict[str, None] = {}
    for result in results:
        for check, _, _ in result.checks:
            names.setdefault(check, None)
    with_versions = any(r.versions for r in results)
    rows = []
    for r in results:
        verdicts = {check: ("pass" if passed else f"FAIL ({observed})")
                    for check, passed, observed in r.checks}
        numbers = {counter: (peak, last) for counter, peak, last in r.counters}
        values = [scaled(value, c.divisor) for c in compared
                  for value in numbers.get(c.counter, (None, None))]
        versions = [", ".join(f"{s} {v}" for s, v in r.versions) or "-"] if with_versions else []
        rows.append([r.name, r.verdict.upper(), r.cps, r.calls_completed, *versions, *values,
                     *(verdicts.get(n, "-") for n in names)])
    columns = [f"{c.label} {which} {c.unit}".rstrip() for c in compared
               for which in ("peak", "last")]
    headers = ["cell", "verdict", "calls/s", "calls", *(["versions"] if with_versions else []),
               *columns, *names]
    return table(headers, rows)


def scaled(value: float | None, divisor: float) -> str:
    return "-" if value is None else f"{value / divisor:.0f}"


def all_passed(results: Sequence[CellResult]) -> bool:
    return bool(results) and all(r.verdict == "pass" for r in results)


@dataclass(frozen=True)
class MatrixOutcome:
    folder: Path
    results: tuple[CellResult, ...]
    report: Path

    @property
    def exit_code(self) -> int:
        return 0 if all_passed(self.results) else 1


def run_matrix(
    request: Any,
    axes: Sequence[Axis],
    out: Path,
    run: Callable[[Any], Any] | None = None,
    on_cell: Callable[[CellResult], None] = lambda result: None,
    dispatch: Dispatch = SERIAL,
) -> MatrixOutcome:
    """Run `request` (a RunRequest) once per cell into `out/<cell>`; write the comparison.

    The scenario is validated for every cell before the first run starts. With `dispatch`
    of several jobs (or a cluster) the cells run at once and end in any order: matrix.json
    lists the cells ended so far, and every file lists them in the plan's order.
    """
    from rig.report import html_report
    from rig.scenario import load_scenario

    plan = cells(axes)
    for cell in plan:
        load_scenario(request.scenario_path, (*request.overrides, *cell.overrides))
    if run is None:
        from rig.runner import run_scenario

        run = run_scenario
    out.mkdir(parents=True, exist_ok=True)
    write_matrix_json(out, plan, [], complete=False)
    requests = [replace(request, overrides=(*request.overrides, *cell.overrides),
                        out=out / cell.name) for cell in plan]
    ended: dict[int, tuple[CellResult, Path]] = {}
    with open_pool(dispatch) as pool:
        for done in pool.each(run, requests):
            outcome = done.result()  # an error stops the matrix, as it does serially
            result = cell_result(plan[done.index], outcome.summary)
            ended[done.index] = (result, outcome.folder)
            write_matrix_json(out, plan, [ended[i][0] for i in sorted(ended)],
                              complete=False)
            on_cell(result)
    results = [ended[i][0] for i in range(len(plan))]
    folders = [ended[i][1] for i in range(len(plan))]
    write_text_atomic(out / "matrix.txt", matrix_table(results) + "\n")
    report = html_report(folders, out / "report.html")
    write_matrix_json(out, plan, results, complete=True)  # last: the matrix is whole
    return MatrixOutcome(out, tuple(results), report)


def write_matrix_json(out: Path, plan: Sequence[Cell], results: Sequence[CellResult], *,
                      complete: bool) -> Path:
    """matrix.json: `status` stays `incomplete` (like a run's verdict) until every cell,
    matrix.txt and the report are written; `cells` holds the cells run so far."""
    return write_json_atomic(out / "matrix.json", {
        "schema_version": MATRIX_SCHEMA,
        "status": "complete" if complete else "incomplete",
        "planned": [c.name for c in plan],
        "cells": [asdict(r) for r in results],
    }, default=str)
