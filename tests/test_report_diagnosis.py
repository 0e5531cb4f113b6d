"""The report's diagnosis: make_shard timeline, allocation sites, the words above the plots."""

import re
import struct
from pathlib import Path

from rig.checks import RunWindow, Verdict
from rig.report import html_report, plot_run
from rig.results import RunFolder, build_summary, read_events, read_series
from rig.series import Event, Sample

SCENARIO = {"name": "pin-race", "bursts": {"every": 2.0},
            "services": {"relay": {"shard_size": 16384}},
            "checks": {"pins_below_ceiling": {"ceiling": 16}}}


def racing_folder(root: Path) -> Path:
    folder = RunFolder.create(root, "racing")
    for k in range(100):
        t = round(k * 0.1, 4)
        live = k % 20
        folder.append_sample(Sample(t, {
            "kmod.pins": float(2 + sum(1 for b in range(4) if t >= 1.3 + 2 * b)),
            "relay.live_bytes": 896.0 * live,
            **{f"relay.site.{site}.{what}": float(live * (size if what == "bytes" else 1))
               for site, size in (("stream_stats", 512), ("ssrc_entry", 256))
               for what in ("count", "bytes")}}))
    events = []
    for b in range(4):
        events += [Event(1.0 + 2 * b, "burst", {"index": b, "spread_us": 100.0}),
                   Event(1.2 + 2 * b, "make_shard",
                         {"num": 3 + 2 * b, "full": 2 + b, "space": b, "thread": "worker-0"}),
                   Event(1.2004 + 2 * b, "make_shard",
                         {"num": 4 + 2 * b, "full": 2 + b, "space": b + 1,
                          "thread": "worker-2"})]
    for event in events:
        folder.append_event(event)
    summary = build_summary(
        run_id="racing", scenario=SCENARIO,
        verdicts=[Verdict("make_shard_race", False, 4, 0, "race: ...", diagnosis="race")],
        series=read_series(folder.path), events=read_events(folder.path), load={}, sut={},
        timing={}, environment={"python": "3", "platform": "p", "cpus": 2, "hostname": "h"},
        window=RunWindow(0.0, 9.9, 9.9))
    folder.finish(summary)
    return folder.path


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_racing_run_gets_the_timeline_and_the_sites_plots(tmp_path: Path):
    folder = racing_folder(tmp_path)
    paths = plot_run(folder)
    assert [p.name for p in paths] == ["pins.png", "make_shard.png", "sites.png", "load.png"]
    for path in paths[1:3]:
        width, height = png_size(path)
        assert 800 <= width <= 2000 and 150 <= height <= 1000
        assert path.stat().st_size > 15_000
    page = html_report([folder], folder / "report.html").read_text()
    assert "<h3>Diagnosis</h3>" in page
    assert "make_shard: <b>race</b>: 4 of 4 concurrent cluster(s)" in page
    assert "time to the ceiling: +1.00 pins per burst (± 0.00) over 4 bursts" in page
    # 14 pins to go at one a burst, 1800 bursts/hour: 28 s; 30 more pins with the patch
    assert "at 1800 bursts/hour: ceiling (MAX_SHM_AREAS 16) in 28 s (95%: 28 s to 28 s); " \
           "with MAX_SHM_AREAS 32 in 1 min (95%: 1 min to 1 min)" in page
    assert "<td>stream_stats</td>" in page
    assert "4 <b>race</b>" in page
    alts = re.findall(r'alt="(\w+)" src="data:image/png', page)
    assert alts == ["pins", "make_shard", "sites", "load"]
