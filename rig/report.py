"""Plots of a run folder (PNG) and one self-contained HTML report of one or more runs.

`plot_run(folder)` draws `plots/pins.png` (pins against the ceiling, with burst and crash
markers, and the relay's shards beside it), `plots/make_shard.png` and `plots/sites.png`
where the run has make_shard lines and site histograms (rig/report_diagnosis.py), and
`plots/load.png` (calls and RTP packets).
`html_report(folders, out)` writes one HTML file with the PNGs embedded, inline CSS and no
external reference; several runs get a side-by-side comparison first.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rig.atomic import savefig_atomic, write_text_atomic
from rig.report_diagnosis import diagnosis_html, plot_make_shard, plot_sites
from rig.results import checks_side_by_side, read_events, read_series, read_summary
from rig.series import Event, Series
from rig.services import ceiling_check, compared_peaks
from rig.services.relay import SHARD_LINES, phantoms
from rig.summary import CheckEntry, HostileNumbers, Summary, Sut

PLOTS = ("pins.png", "make_shard.png", "sites.png", "load.png")

# -- plots -------------------------------------------------------------------------------


def ceiling_of(summary: Summary, counter: str = "kmod.pins") -> float | None:
    """The limit of the check that enforces `counter`'s ceiling, where the run had it."""
    name = ceiling_check(counter)
    check = summary.check(name) if name is not None else None
    if check is not None and isinstance(check.limit, int | float):
        return float(check.limit)
    return None


def rate(column: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per-second rate of a cumulative counter, between consecutive samples."""
    return [
        (t1, (v1 - v0) / (t1 - t0))
        for (t0, v0), (t1, v1) in zip(column, column[1:], strict=False)
        if t1 > t0
    ]


def title_of(summary: Summary, what: str) -> str:
    patches = summary.sut.patches
    sut = f" + {', '.join(patches)}" if patches else " (stock)"
    return f"{summary.name}{sut}: {what} ({summary.verdict.upper()})"


def _line(ax: Any, points: Sequence[tuple[float, float]], label: str, **style: Any) -> bool:
    if not points:
        return False
    ts, vs = zip(*points, strict=True)
    ax.step(ts, vs, where="post", label=label, **style)
    return True


def mark_events(ax: Any, events: Sequence[Event]) -> None:
    """Bursts as thin grey lines, the load phase shaded, a crash as a red line."""
    bursts = [e.t for e in events if e.kind == "burst"]
    for i, t in enumerate(bursts):
        ax.axvline(t, color="tab:orange", linewidth=0.8, linestyle="--", alpha=0.7,
                   label="burst" if i == 0 else None)
    starts = [e.t for e in events if e.kind == "load_start"]
    stops = [e.t for e in events if e.kind == "load_stop"]
    if starts and stops:
        ax.axvspan(starts[0], stops[-1], color="tab:blue", alpha=0.05, label="load")
    for i, e in enumerate(e for e in events if e.kind == "crash"):
        ax.axvline(e.t, color="red", linewidth=2, label="crash" if i == 0 else None)
        ax.annotate(f"{e.data.get('service', '')} crash", (e.t, 0.02),
                    xycoords=("data", "axes fraction"), xytext=(-4, 0), textcoords="offset points",
                    color="red", fontsize=9, rotation=90, ha="right", va="bottom")


def finish_axes(ax: Any, integer_counts: bool = True) -> None:
    """Grid, legend, counts from zero with headroom so a flat line is not hidden in the frame."""
    from matplotlib.ticker import MaxNLocator

    ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.3)
    if integer_counts:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[0])
    if entries:
        ax.legend(loc="upper left", fontsize=8, ncols=2 if entries > 3 else 1)


def no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} measured", transform=ax.transAxes, ha="center",
            va="center", color="0.4")


def plot_pins(series: Series, events: Sequence[Event], summary: Summary, out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    pins_ax, shards_ax = fig.subplots(1, 2, sharex=True, width_ratios=(3, 2))
    drawn = _line(pins_ax, series.column("kmod.pins"), "kmod Memory pins", color="tab:red",
                  linewidth=2)
    _line(pins_ax, series.column("relay.shards_total"), "relay shards (pinned, held)",
          color="tab:purple", linestyle="--")
    ceiling = ceiling_of(summary)
    if ceiling is not None:
        pins_ax.axhline(ceiling, color="black", linestyle="--", linewidth=1,
                        label=f"ceiling ({ceiling:g})")
    if not drawn:
        no_data(pins_ax, "kmod.pins")
    mark_events(pins_ax, events)
    pins_ax.set(title=title_of(summary, "kernel memory pins"), xlabel="time since run start (s)",
                ylabel="pins (count)")

    colors = ("tab:green", "tab:blue", "tab:gray")
    any_shard = False
    for (name, label), color in zip(SHARD_LINES, colors, strict=True):
        any_shard |= _line(shards_ax, series.column(name), label, color=color)
    any_shard |= _line(shards_ax, phantoms(series), "phantom (pinned, unused)", color="tab:red",
                       linewidth=2)
    if not any_shard:
        no_data(shards_ax, "shard counters")
    mark_events(shards_ax, [e for e in events if e.kind == "crash"])
    shards_ax.set(title="relay bufferpool shards", xlabel="time since run start (s)",
                  ylabel="shards (count)")
    finish_axes(pins_ax)
    finish_axes(shards_ax)
    savefig_atomic(fig, out, dpi=100)
    return out


def plot_load(series: Series, events: Sequence[Event], summary: Summary, out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    calls_ax, rtp_ax = fig.subplots(1, 2, sharex=True)
    drawn = _line(calls_ax, series.column("load.calls_active"), "calls active", color="tab:blue")
    drawn |= _line(calls_ax, series.column("relay.sessions"), "relay sessions",
                   color="tab:purple", linestyle="--")
    if not drawn:
        no_data(calls_ax, "call counters")
    mark_events(calls_ax, events)
    calls_ax.set(title=title_of(summary, "calls"), xlabel="time since run start (s)",
                 ylabel="calls (count)")
    drawn = _line(rtp_ax, rate(series.column("load.rtp_sent")), "RTP sent", color="tab:green")
    drawn |= _line(rtp_ax, rate(series.column("load.rtp_received")), "RTP received",
                   color="tab:red", linestyle="--")
    if not drawn:
        no_data(rtp_ax, "RTP counters")
    mark_events(rtp_ax, [e for e in events if e.kind == "crash"])
    rtp_ax.set(title="RTP through the relay", xlabel="time since run start (s)",
               ylabel="packets per second")
    finish_axes(calls_ax)
    finish_axes(rtp_ax, integer_counts=False)
    savefig_atomic(fig, out, dpi=100)
    return out


def plot_run(folder: Path) -> list[Path]:
    """Draw the run's PNGs into <folder>/plots/ and return their paths."""
    folder = Path(folder)
    summary = read_summary(folder)
    series, events = read_series(folder), read_events(folder)
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    drawn = [
        plot_pins(series, events, summary, plots / "pins.png"),
        plot_make_shard(events, summary, plots / "make_shard.png",
                        title_of(summary, "make_shard calls per thread")),
        plot_sites(summary, plots / "sites.png", title_of(summary, "allocation sites")),
        plot_load(series, events, summary, plots / "load.png"),
    ]
    return [path for path in drawn if path is not None]


# -- HTML --------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.pass { color: #176617; font-weight: bold; }
.values { color: #444; font-size: 90%; }
.fail, .error { color: #b00020; font-weight: bold; }
.incomplete { color: #8a6d00; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
section { border-top: 2px solid #444; margin-top: 2em; }
"""


def esc(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(round(value, 4))
    return html.escape(str(value))


def verdict_span(verdict: Any) -> str:
    word = str(verdict)
    return f'<span class="{esc(word)}">{esc(word.upper())}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells in `rows` are already HTML (escaped by the caller)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def observed_cell(check: CheckEntry) -> str:
    """The observed value, with the check's one-word reading (race, growth) where it has one."""
    word = check.diagnosis
    return esc(check.observed) + (f" <b>{esc(word)}</b>" if word else "")


# how the report labels a check's values, and the unit after the number
VALUE_LABELS = {
    "drift": ("drift", ""), "drift_per_minute": ("drift rate", "/min"),
    "growth_per_minute": ("growth while flat", "/min"), "ceiling": ("ceiling", ""),
    "seconds_to_ceiling": ("time to the ceiling", " s"),
}


def values_line(check: CheckEntry) -> str:
    """The check's named numbers, labelled (`drift 82 · drift rate +596/min · ...`); the
    ones without a number (no growth, no projection) are left out."""
    parts = []
    for key, value in check.values.items():
        if value is None or key not in VALUE_LABELS:
            continue
        label, unit = VALUE_LABELS[key]
        number = f"{value:+.3g}" if unit == "/min" else esc(round(value, 1))
        parts.append(f"{esc(label)} <b>{number}{esc(unit)}</b>")
    return " &middot; ".join(parts)


def checks_table(summary: Summary) -> str:
    rows = [
        [esc(c.name), verdict_span("pass" if c.passed else "fail"), observed_cell(c),
         esc(c.limit), esc(c.detail) + (f'<br><span class="values">{line}</span>'
                                        if (line := values_line(c)) else "")]
        for c in summary.checks
    ]
    return table(["check", "passed", "observed", "limit", "detail"], rows)


def counters_table(summary: Summary) -> str:
    rows = [
        [esc(name), esc(stats.first), esc(stats.peak), esc(stats.last)]
        for name, stats in sorted(summary.counters.items())
    ]
    return table(["counter", "first", "peak", "last"], rows)


def numbers_table(block: BaseModel) -> str:
    """The block's plain numbers and words (its own and those its writer added)."""
    rows = [[esc(k), esc(v)] for k, v in block.model_dump().items()
            if not isinstance(v, dict | list)]
    return table(["", "value"], rows)


def hostile_html(hostile: HostileNumbers) -> str:
    """What the hostile traffic sent, one row per kind (and per sipvicious tool), and how
    the SUT answered: each status (or none) with its count."""
    def answers(counts: dict[str, int]) -> str:
        return esc(", ".join(f"{status}: {n}" for status, n in counts.items()) or "-")

    rows = [[esc(kind), esc(n), answers(hostile.answers.get(kind, {}))]
            for kind, n in hostile.sent.items()]
    rows += [[esc(f"{name} ({t.runs} runs, {t.killed} killed)"), esc(t.requests),
              answers(t.answers)] for name, t in hostile.tools.items()]
    return (f"<p>against the {esc(hostile.target)}: {esc(hostile.messages)} malformed "
            "messages</p>" + table(["kind", "sent", "answers"], rows))


def embedded_plots(folder: Path) -> str:
    images = []
    pngs = sorted((folder / "plots").glob("*.png"),
                  key=lambda p: (PLOTS.index(p.name) if p.name in PLOTS else len(PLOTS), p.name))
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        images.append(f'<img alt="{esc(png.stem)}" src="data:image/png;base64,{data}">')
    return "\n".join(images) or "<p>no plots</p>"


def versions_text(sut: Sut) -> str:
    """`rtpengine 10.5.3.5-1, kamailio 5.6.3`: what each real service reported."""
    return ", ".join(f"{name} {version}" for name, version in sut.versions.items())


def run_section(folder: Path, summary: Summary, report_dir: Path | None = None) -> str:
    patches = ", ".join(summary.sut.patches) or "none"
    versions = versions_text(summary.sut)
    parts = [
        f"<section><h2>{esc(folder.name)}: {verdict_span(summary.verdict)}</h2>",
        f"<p>scenario <b>{esc(summary.scenario.get('name'))}</b>: "
        f"{esc(summary.scenario.get('description'))}"
        f"<br>commit {esc(summary.sut.commit)}, patches {esc(patches)}"
        + (f"<br>versions {esc(versions)}" if versions else "") + "</p>",
    ]
    if summary.error:
        parts.append(f"<p class=\"error\">error: {esc(summary.error)}</p>")
    parts += ["<h3>Checks</h3>", checks_table(summary)]
    if diagnosis := diagnosis_html(summary):
        parts += ["<h3>Diagnosis</h3>", diagnosis]
    if summary.verdict != "incomplete":
        blocks: tuple[tuple[str, BaseModel], ...] = (
            ("Load", summary.load), ("Bursts", summary.bursts), ("Timing", summary.timing))
        for title, block in blocks:
            parts += [f"<h3>{title}</h3>", numbers_table(block)]
    if summary.hostile is not None:
        parts += ["<h3>Hostile traffic</h3>", hostile_html(summary.hostile)]
    from rig.pcapcalls import capture_html

    parts += ["<h3>Counters</h3>", counters_table(summary), "<h3>Plots</h3>",
              embedded_plots(folder), "<h3>Capture</h3>",
              capture_html(folder, summary.capture, report_dir or folder), "</section>"]
    return "\n".join(parts)


def comparison(folders: Sequence[Path], summaries: Sequence[Summary]) -> str:
    """One row per check (and a few key numbers), one column per run."""
    rows = [["patches", *(esc(", ".join(s.sut.patches) or "stock") for s in summaries)],
            ["versions", *(esc(versions_text(s.sut) or "-") for s in summaries)],
            ["verdict", *(verdict_span(s.verdict) for s in summaries)]]
    for name, results in checks_side_by_side(summaries):
        rows.append([esc(name), *(
            "-" if check is None
            else f"{verdict_span('pass' if check.passed else 'fail')} {observed_cell(check)}"
            for check in results)])
    rows += [["calls completed", *(esc(s.load.calls_completed) for s in summaries)],
             ["calls/s", *(esc(s.load.cps) for s in summaries)]]
    for compared in compared_peaks():
        peaks = [s.peaks().get(compared.counter) for s in summaries]
        if any(peak is not None for peak in peaks):
            rows.append([compared.label, *(esc("-" if p is None else round(p / compared.divisor))
                                           for p in peaks)])
    return "<h2>Comparison</h2>" + table(["", *(f.name for f in folders)], rows)


def html_report(folders: Sequence[Path], out: Path) -> Path:
    """Write one self-contained HTML file for the given run folders; returns its path."""
    folders = [Path(f) for f in folders]
    summaries = [read_summary(f) for f in folders]
    for folder in folders:
        if not any((folder / "plots").glob("*.png")) and (folder / "series.csv").is_file():
            plot_run(folder)
    title = "rig report: " + ", ".join(f.name for f in folders)
    body = [f"<h1>{esc(title)}</h1>"]
    if len(folders) > 1:
        body.append(comparison(folders, summaries))
    body += [run_section(f, s, Path(out).parent) for f, s in zip(folders, summaries, strict=True)]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )
    return write_text_atomic(Path(out), page)


def report_runs(folders: Sequence[Path], out: Path | None = None
                ) -> tuple[list[Summary], Path]:
    """`rig report`: plots of every run folder and one HTML report of them all (default:
    the run's own report.html, or results/compare.html for several); returns the
    summaries and the report's path."""
    from rig.errors import UsageError

    for folder in folders:
        if not (folder / "summary.json").is_file():
            raise UsageError(f"not a run folder (no summary.json): {folder}")
    summaries = [read_summary(folder) for folder in folders]
    for folder in folders:
        plot_run(folder)
    default = folders[0] / "report.html" if len(folders) == 1 else Path("results/compare.html")
    return summaries, html_report(folders, out or default)
