"""report.html in a real browser (Debian's chromium, headless): every image loads, the
comparison table of two runs is there, the ladders render; the screenshot is kept in the
test's temporary folder."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rig.report import html_report
from rig.runner import RunRequest, run_scenario

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SCENARIO = """\
name: browsed
duration: 2
settle: 0.5
load: {cps: 5, hold: 0.5, outcomes: {answered: 0.6, busy: 0.4, cancel: 0, no_answer: 0}}
checks:
  relay_alive: {}
  calls_completed: {min_ratio: 0.5}
"""

# Run by the browser once the page has loaded: what a reader would see, as JSON in the DOM.
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const heading = Array.from(document.querySelectorAll("h2"))
    .find(h => h.textContent.trim() === "Comparison");
  const table = heading && heading.nextElementSibling;
  const result = {
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    comparison_rows: table && table.tagName === "TABLE" ? table.rows.length : 0,
    comparison_columns: table && table.tagName === "TABLE" ? table.rows[0].cells.length : 0,
    ladders: document.querySelectorAll("svg.ladder").length,
  };
  const out = document.createElement("pre");
  out.id = "rig-probe";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()  # a new, empty profile every time
    return subprocess.run([CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (CI is set: .ci/run installs it)", pytrace=False)
        pytest.skip("needs Debian's chromium")
    scenario = tmp_path / "browsed.yaml"
    scenario.write_text(SCENARIO)
    runs = [run_scenario(RunRequest(scenario, out=tmp_path / name, progress=False)).folder
            for name in ("first", "second")]
    return html_report(runs, tmp_path / "compare.html")


def test_the_report_renders_in_chromium_with_every_image_and_the_comparison(
    report: Path, tmp_path: Path
) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    done = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="rig-probe">(.*?)</pre>', done.stdout)
    assert match, f"the page did not finish loading:\n{done.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"'))
    assert seen["images"] >= 4 and seen["broken"] == [], seen  # two plots per run at least
    assert seen["comparison_columns"] == 3 and seen["comparison_rows"] >= 4, seen
    assert seen["ladders"] >= 2, seen  # each run draws at least one call
    screenshot = tmp_path / "report.png"
    shot = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={screenshot}",
                    report.as_uri())
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
