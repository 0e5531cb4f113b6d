"""The allocation-site histograms from site counters: at the peak, at load stop, per pin step."""

from rig.diagnosis.sites import site_histograms
from rig.series import Sample, Series


def sample(t: float, pins: float, stats: float, ssrc: float) -> Sample:
    return Sample(t, {"kmod.pins": pins, "relay.live_bytes": stats * 512 + ssrc * 256,
                      "relay.site.stream_stats.count": stats,
                      "relay.site.stream_stats.bytes": stats * 512,
                      "relay.site.ssrc_entry.count": ssrc,
                      "relay.site.ssrc_entry.bytes": ssrc * 256})


def test_histograms_at_the_peak_at_load_stop_and_at_each_pin_step():
    series = Series([sample(0, 0, 0, 0), sample(1, 1, 4, 4), sample(2, 3, 10, 10),
                     sample(3, 3, 6, 6), sample(4, 3, 0, 0)])
    block = site_histograms(series, load_stop=3.0, shard_size=16384)
    assert block is not None
    assert block["shard_size"] == 16384
    assert block["at_peak"]["t"] == 2
    assert block["at_peak"]["sites"]["stream_stats"] == {
        "count": 10, "bytes": 5120, "bytes_per_shard": round(5120 / 3, 1)}
    assert block["at_load_stop"]["t"] == 3
    assert [step["pins"] for step in block["at_pin_steps"]] == [1, 3]
    assert block["at_pin_steps"][0]["sites"]["ssrc_entry"]["bytes"] == 1024


def test_no_site_counters_no_block():
    assert site_histograms(Series([Sample(0, {"kmod.pins": 1})]), load_stop=1) is None
