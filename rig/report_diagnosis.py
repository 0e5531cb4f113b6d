"""The report's diagnosis: the make_shard timeline, the allocation sites, and the words.

`plot_make_shard` draws one row per relay worker thread with a mark per make_shard call
(green: the shard was needed; red: the call did not need it) and the bursts as vertical
lines, so a race shows as red marks stacked across rows at a burst. `plot_sites` draws the
live bytes per allocation site at the peak and what they come to per pinned shard.
`diagnosis_html` is the section of text and tables above the plots.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rig.atomic import savefig_atomic
from rig.diagnosis.race import phantom_calls, shard_calls
from rig.series import Event
from rig.summary import Summary

DEFAULT_WINDOW_MS = 1.0


def window_ms_of(summary: Summary) -> float:
    race = summary.diagnosis.make_shard if summary.diagnosis is not None else None
    return race.window_ms if race is not None else DEFAULT_WINDOW_MS


def plot_make_shard(events: Sequence[Event], summary: Summary, out: Path,
                    title: str) -> Path | None:
    """The make_shard timeline, or None when the run has no make_shard call."""
    from matplotlib.figure import Figure

    calls = shard_calls(events)
    if not calls:
        return None
    extra = phantom_calls(calls, window_ms_of(summary))
    threads = sorted({c.thread for c in calls})
    row = {thread: i for i, thread in enumerate(threads)}
    fig = Figure(figsize=(13, 1.6 + 0.45 * len(threads)), layout="constrained")
    ax = fig.subplots()
    for i, t in enumerate(e.t for e in events if e.kind == "burst"):
        ax.axvline(t, color="tab:orange", linewidth=0.8, linestyle="--", alpha=0.7,
                   label="burst" if i == 0 else None)
    for i, e in enumerate(e for e in events if e.kind == "crash"):
        ax.axvline(e.t, color="red", linewidth=2, label="crash" if i == 0 else None)
    needed = [c for c in calls if c not in extra]
    for group, style in ((needed, {"marker": "o", "color": "tab:green",
                                   "label": "make_shard: shard was needed"}),
                         ([c for c in calls if c in extra],
                          {"marker": "X", "color": "tab:red", "s": 70,
                           "label": "make_shard: not needed (raced)"})):
        if group:
            ax.scatter([c.t for c in group], [row[c.thread] for c in group], zorder=3,
                       **style)
    ax.set_yticks(range(len(threads)), threads)
    ax.set_ylim(-0.7, len(threads) - 0.3)
    ax.set(title=title, xlabel="time since run start (s)", ylabel="relay thread")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    savefig_atomic(fig, out, dpi=100)
    return out


def plot_sites(summary: Summary, out: Path, title: str) -> Path | None:
    """Bytes per allocation site at the live-bytes peak, and per pinned shard; None when
    the run has no site histogram."""
    from matplotlib.figure import Figure

    block = summary.diagnosis.allocation_sites if summary.diagnosis is not None else None
    if block is None or not block.at_peak.sites:
        return None
    peak = block.at_peak
    sites = list(peak.sites)
    entries = [peak.sites[s] for s in sites]
    fig = Figure(figsize=(13, 1.8 + 0.5 * len(sites)), layout="constrained")
    bytes_ax, shard_ax = fig.subplots(1, 2)
    kib = [e.bytes / 1024 for e in entries]
    bars = bytes_ax.barh(sites, kib, color="tab:blue")
    bytes_ax.bar_label(bars, labels=[f"{e.count} allocations" if e.count is not None
                                     else "" for e in entries], fontsize=8, padding=3)
    bytes_ax.set(title=f"{title}: live bytes at their peak (t={peak.t:.1f} s)",
                 xlabel="live bytes (KiB)")
    bytes_ax.set_xlim(0, max(max(kib), 1.0) * 1.35)
    per_shard = [e.bytes_per_shard or 0 for e in entries]
    left = 0.0
    colors = ("tab:green", "tab:purple", "tab:olive", "tab:cyan", "tab:brown", "tab:pink")
    for site, value, color in zip(sites, per_shard, colors * len(sites), strict=False):
        shard_ax.barh(["an average\npinned shard"], [value / 1024], left=left / 1024,
                      color=color, label=site, height=0.5)
        left += value
    shard_size = block.shard_size
    if shard_size:
        shard_ax.axvline(shard_size / 1024, color="black", linestyle="--", linewidth=1,
                         label=f"shard size ({shard_size / 1024:g} KiB)")
    shard_ax.set(title=f"what fills the {peak.pins} pinned shard(s), on average",
                 xlabel="KiB per pinned shard")
    shard_ax.legend(loc="lower right", fontsize=8)
    for ax in (bytes_ax, shard_ax):
        ax.grid(axis="x", alpha=0.3)
    savefig_atomic(fig, out, dpi=100)
    return out


def _e(value: Any) -> str:
    return "-" if value is None else html.escape(str(value))


def diagnosis_html(summary: Summary) -> str:
    """Race or growth, the time to the ceiling, and the site histogram as a table."""
    diagnosis = summary.diagnosis
    if diagnosis is None:
        return ""
    parts = []
    if (race := diagnosis.make_shard) is not None:
        parts.append(
            f"<p>make_shard: <b>{_e(race.verdict)}</b>: {_e(race.racing_clusters)} of "
            f"{_e(race.concurrent_clusters)} concurrent cluster(s) of calls within "
            f"{_e(race.window_ms)} ms raced; {_e(race.phantom_calls)} of "
            f"{_e(race.calls)} call(s) from {_e(race.threads)} thread(s) did not need "
            "their shard.</p>")
    if diagnosis.projection is not None:
        parts.append(f"<p>time to the ceiling: {_e(diagnosis.projection.text)}</p>")
    elif diagnosis.pin_steps:
        parts.append("<p>time to the ceiling: too few bursts after the warm-up to fit</p>")
    sites = diagnosis.allocation_sites
    if sites is not None and sites.at_peak.sites:
        peak = sites.at_peak
        rows = "".join(
            f"<tr><td>{_e(name)}</td><td>{_e(e.count)}</td><td>{_e(e.bytes)}</td>"
            f"<td>{_e(e.bytes_per_shard)}</td></tr>"
            for name, e in peak.sites.items())
        parts.append(
            f"<p>allocation sites at the peak of live bytes (t={peak.t:.2f} s,"
            f" {_e(peak.pins)} pinned shard(s) of "
            f"{_e(sites.shard_size)} bytes):</p><table><tr><th>site</th><th>count</th>"
            f"<th>bytes</th><th>bytes per pinned shard</th></tr>{rows}</table>")
    return "\n".join(parts)
