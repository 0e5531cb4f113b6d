"""Plots and the HTML report, from hand-made run folders."""

import base64
import re
import struct
from pathlib import Path

import pytest

from rig.checks import Verdict
from rig.report import comparison, html_report, plot_run, values_line
from rig.results import RunFolder, build_summary, incomplete_summary, read_events, read_series
from rig.series import Event, Sample
from rig.summary import Summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert('x')</script>"


def stock_like_samples(crash_at: float | None) -> list[Sample]:
    """Pins step up at each burst (every 2 s from t=1) while needed shards stay at 3."""
    samples = []
    for i in range(100):
        t = i * 0.1
        if crash_at is not None and t >= crash_at:
            break
        bursts = 0 if t < 1.0 else int((t - 1.0) // 2.0) + 1
        phantom = 2 * bursts if crash_at is not None else 0
        values = {
            "kmod.pins": 3 + phantom,
            "relay.shards_total": 3 + phantom,
            "relay.shards_active": 1,
            "relay.shards_full": 2,
            "relay.shards_free": 0,
            "relay.sessions": min(i, 20),
            "load.calls_active": min(i, 20),
            "load.rtp_sent": 50 * i,
            "load.rtp_received": 49 * i,
        }
        samples.append(Sample(round(t, 3), values))
    return samples


def make_run(root: Path, name: str, *, crash_at: float | None, detail: str = "") -> Path:
    folder = RunFolder.create(root, name)
    for sample in stock_like_samples(crash_at):
        folder.append_sample(sample)
    events = [Event(0.0, "load_start")]
    events += [Event(1.0 + 2 * i, "burst", {"index": i, "workers": 8, "spread_us": 30.0 + i})
               for i in range(4)]
    if crash_at is not None:
        events.append(Event(crash_at, "crash", {"service": "relay", "line": "CRIT: Failed to pin"}))
    events.append(Event(8.0, "load_stop"))
    for event in events:
        folder.append_event(event)
    crashed = crash_at is not None
    verdicts = [
        Verdict("relay_alive", not crashed, int(crashed), 0, detail or "no crash of relay"),
        Verdict("pins_below_ceiling", not crashed, 9 if crashed else 3, 16, "peak"),
    ]
    summary = build_summary(
        run_id=name, scenario={"name": "pin-race", "description": "bursts & <pins>"},
        verdicts=verdicts, series=read_series(folder.path), events=read_events(folder.path),
        load={"calls_attempted": 20, "calls_completed": 20, "calls_failed": 0, "cps": 5.0},
        sut={"commit": "abc123", "patches": [] if crashed else ["relay-recheck-after-pin.patch"]},
        timing={"started": 1.7e9, "finished": 1.7e9 + 10},
        environment={"python": "3.11", "platform": "Linux", "cpus": 2, "hostname": "h"},
    )
    folder.finish(summary)
    return folder.path


# Plotting takes a second or two per run on a busy machine: the runs are made once per module
# (the tests only read them and write HTML files beside them).
@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    return make_run(root, "stock", crash_at=7.2, detail=f"relay crashed: {SCRIPT}")


@pytest.fixture(scope="module")
def patched(stock: Path) -> Path:
    return make_run(stock.parent, "patched", crash_at=None)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_plot_run_writes_sensible_pngs(stock: Path):
    paths = plot_run(stock)
    assert [p.name for p in paths] == ["pins.png", "load.png"]
    for path in paths:
        assert path.parent == stock / "plots"
        width, height = png_size(path)
        assert 800 <= width <= 2000 and 300 <= height <= 1000
        assert path.stat().st_size > 20_000  # lines, labels and legends were drawn


def test_plot_run_copes_with_a_run_that_measured_nothing(tmp_path: Path):
    folder = RunFolder.create(tmp_path, "empty")
    folder.append_sample(Sample(0.0, {}))
    folder.finish(incomplete_summary("empty"))
    for path in plot_run(folder.path):
        png_size(path)


def test_html_has_the_verdicts_and_embedded_plots(stock: Path):
    out = html_report([stock], stock / "report.html")
    page = out.read_text()
    assert "relay_alive" in page and "pins_below_ceiling" in page
    assert ">FAIL<" in page
    images = re.findall(r'alt="(\w+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [alt for alt, _ in images] == ["pins", "load"]
    assert base64.b64decode(images[0][1])[:8] == PNG_MAGIC
    assert "Comparison" not in page


def test_html_has_no_external_references(stock: Path, patched: Path):
    page = html_report([stock, patched], stock.parent / "compare.html").read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:)?//[a-z]", text)
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)


def test_html_escapes_text_from_the_run(stock: Path):
    page = html_report([stock], stock / "report.html").read_text()
    assert SCRIPT not in page and "<script" not in page
    assert "&lt;script&gt;" in page
    assert "bursts &amp; &lt;pins&gt;" in page


def test_several_runs_get_a_comparison_first(stock: Path, patched: Path):
    page = html_report([stock, patched], stock.parent / "compare.html").read_text()
    comparison = page.index("Comparison")
    assert comparison < page.index("<section>")
    table = page[comparison:page.index("</table>", comparison)]
    assert "<th>stock</th><th>patched</th>" in table
    assert "relay-recheck-after-pin.patch" in table
    assert table.count(">PASS<") >= 3 and table.count(">FAIL<") >= 3
    assert "<td>calls/s</td>" in table
    assert "<td>peak kmod.pins</td>" in table
    assert "Kamailio shm" not in table  # neither run recorded it


def test_comparison_shows_the_kamailio_shm_peak_of_the_runs_that_have_it():
    shm = 5283 * 1024
    with_shm = Summary.model_validate({
        "run_id": "qm", "verdict": "pass", "load": {"cps": 20.0},
        "counters": {"kamailio.shm_used": {"first": 0, "peak": shm, "last": shm}}})
    without = Summary.model_validate({"run_id": "relay", "verdict": "fail",
                                      "load": {"cps": 19.5}})
    page = comparison([Path("qm"), Path("relay")], [with_shm, without])
    row = re.search(r"<tr><td>peak Kamailio shm used \(KiB\)</td>(.*?)</tr>", page)
    assert row is not None and row.group(1) == "<td>5283</td><td>-</td>"
    assert "<tr><td>calls/s</td><td>20</td><td>19.5</td></tr>" in page


def test_the_report_counts_what_hostile_traffic_sent_and_how_the_sut_answered():
    from rig.report import hostile_html
    from rig.summary import HostileNumbers

    hostile = HostileNumbers.model_validate({
        "target": "proxy", "messages": 7,
        "sent": {"scanner_invite": 4, "truncated": 3},
        "answers": {"scanner_invite": {"403": 4}, "truncated": {"none": 3}},
        "tools": {"svwar": {"runs": 2, "requests": 40, "killed": 1, "exit_codes": {"0": 1},
                            "answers": {"403": 3}}},
    })
    page = hostile_html(hostile)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert rows == [("scanner_invite", "4", "403: 4"), ("truncated", "3", "none: 3"),
                    ("svwar (2 runs, 1 killed)", "40", "403: 3")]
    assert "against the proxy: 7 malformed messages" in page
    assert "Hostile traffic" not in html_report_text_without_hostile()


def html_report_text_without_hostile() -> str:
    from rig.report import run_section

    summary = Summary(run_id="r", verdict="pass")
    return run_section(Path("/nonexistent"), summary)


def test_a_checks_values_are_shown_labelled_without_the_missing_ones():
    from rig.summary import CheckEntry

    check = CheckEntry(name="tracks", passed=False, observed=82, limit=2, values={
        "drift": 82.0, "drift_per_minute": 596.2, "growth_per_minute": None,
        "ceiling": 4096.0, "seconds_to_ceiling": 404.1, "physical": 82.0})
    assert values_line(check) == (
        "drift <b>82</b> &middot; drift rate <b>+596/min</b> &middot; ceiling <b>4096</b>"
        " &middot; time to the ceiling <b>404.1 s</b>")
    assert values_line(CheckEntry(name="relay_alive", passed=True, observed=0, limit=0)) == ""
