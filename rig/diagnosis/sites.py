"""What fills the shards: the relay's allocation-site histogram, sampled as counters.

The relay's probe turns its per-site histogram into `relay.site.<site>.count` and
`relay.site.<site>.bytes` counters, so every sample carries it. Here those samples become
the summary's histograms: at the peak of live bytes, when the load stopped, and at each pin
step, with the bytes each site takes per pinned shard (phantom shards dilute that number).
"""

from __future__ import annotations

from typing import Any

from rig.series import Sample, Series

SITE_PREFIX = "relay.site."
PINS = "kmod.pins"
LIVE_BYTES = "relay.live_bytes"


def site_counter(site: str, what: str) -> str:
    return f"{SITE_PREFIX}{site}.{what}"


def site_names(series: Series) -> list[str]:
    """Sites in first-seen order."""
    names: dict[str, None] = {}
    for name in series.names():
        if name.startswith(SITE_PREFIX) and name.endswith(".bytes"):
            names.setdefault(name[len(SITE_PREFIX):-len(".bytes")], None)
    return list(names)


def histogram(sample: Sample, sites: list[str]) -> dict[str, Any]:
    """One sample's histogram: per site count, bytes and bytes per pinned shard."""
    values = sample.values
    pins = values.get(PINS)
    entry: dict[str, Any] = {"t": sample.t, "pins": _int(pins),
                             "shards": _int(values.get("relay.shards_total")), "sites": {}}
    for site in sites:
        count = values.get(site_counter(site, "count"))
        size = values.get(site_counter(site, "bytes"))
        if size is None:
            continue
        per_shard = round(size / pins, 1) if pins else None
        entry["sites"][site] = {"count": _int(count), "bytes": _int(size),
                                "bytes_per_shard": per_shard}
    return entry


def site_histograms(series: Series, load_stop: float,
                    shard_size: int | None = None) -> dict[str, Any] | None:
    """The summary's `allocation_sites` block, or None when no sample has a site counter.
    `shard_size` is the relay's setting (bytes per shard), carried for the report."""
    sites = site_names(series)
    samples = [s for s in series.samples
               if any(site_counter(site, "bytes") in s.values for site in sites)]
    if not sites or not samples:
        return None
    peak = max(samples, key=lambda s: s.values.get(LIVE_BYTES, sum(
        s.values.get(site_counter(site, "bytes"), 0.0) for site in sites)))
    during = [s for s in samples if s.t <= load_stop] or samples
    steps = []
    previous: float | None = None
    for s in samples:
        pins = s.values.get(PINS)
        if pins is not None and previous is not None and pins > previous:
            steps.append(histogram(s, sites))
        previous = pins if pins is not None else previous
    return {"shard_size": shard_size, "at_peak": histogram(peak, sites),
            "at_load_stop": histogram(during[-1], sites), "at_pin_steps": steps}


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
