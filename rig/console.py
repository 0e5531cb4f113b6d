"""Plain-text tables for the terminal: verdicts of one run or of several side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rig.results import checks_side_by_side
from rig.summary import CheckEntry, Summary


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def observed(check: CheckEntry) -> str:
    """The observed value, with the check's reading of it where it has one: `3 (race)`."""
    seen = _cell(check.observed)
    return f"{seen} ({check.diagnosis})" if check.diagnosis else seen


def verdict_table(summary: Summary) -> str:
    rows = [("PASS" if c.passed else "FAIL", c.name, observed(c), c.limit)
            for c in summary.checks]
    return table(["", "check", "observed", "limit"], rows)


def comparison_table(labels: Sequence[str], summaries: Sequence[Summary]) -> str:
    """One row per check, one column per run: the side-by-side view of `make demo`."""
    rows: list[list[Any]] = [["verdict", *[s.verdict.upper() for s in summaries]]]
    for name, results in checks_side_by_side(summaries):
        rows.append([name, *(
            "-" if check is None
            else f"{'pass' if check.passed else 'FAIL'} ("
                 + ", ".join(filter(None, [_cell(check.observed), check.diagnosis])) + ")"
            for check in results)])
    return table(["check", *labels], rows)


def diagnosis_lines(summary: Summary) -> list[str]:
    """A service's death, race or growth, and the time to the ceiling, for the lines under
    the verdict table."""
    lines = death_lines(summary)
    diagnosis = summary.diagnosis
    if diagnosis is None:
        return lines
    if (race := diagnosis.make_shard) is not None:
        lines.append(
            f"make_shard: {race.verdict} ({race.racing_clusters} of "
            f"{race.concurrent_clusters} concurrent cluster(s) raced; "
            f"{race.phantom_calls} of {race.calls} call(s) did not need their shard)")
    if diagnosis.projection is not None:
        lines.append(f"time to the ceiling: {diagnosis.projection.text}")
    elif diagnosis.pin_steps:
        lines.append("time to the ceiling: too few bursts after the warm-up to fit")
    return lines


def death_lines(summary: Summary) -> list[str]:
    """The first service that died during the run (who, pid, signal, when), if one did."""
    alive = summary.check("services_alive")
    if alive is None or alive.passed or not alive.observed:
        return []
    return [f"died: {alive.detail}"]


class Progress:
    """A tqdm bar over the planned seconds of the run (hidden when not wanted)."""

    def __init__(self, enabled: bool, total_s: float) -> None:
        from rig.clock import SystemClock

        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(total_s, 1), unit="s", desc="run", leave=False,
                            bar_format="{desc} {bar} {n:.0f}/{total:.0f} s {postfix}")
        self.clock = SystemClock()
        self.start = self.clock.monotonic()

    def update(self, postfix: str = "") -> None:
        if self.bar is None:
            return
        self.bar.n = min(self.bar.total, round(self.clock.monotonic() - self.start, 1))
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
