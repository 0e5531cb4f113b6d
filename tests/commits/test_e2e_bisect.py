"""The real thing: a 16-commit demo history of the model SUT, the real runner and pin-race.

Each scenario run takes several seconds, and a bisect needs a dozen or more of them.
"""

import json
from pathlib import Path

import pytest

from rig.commits.bisect import BisectArgs, bisect
from rig.commits.history import FIX_PATCH, RIG_ROOT, build_demo_history

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not (RIG_ROOT / FIX_PATCH).is_file(), reason="model SUT not in this tree"),
]
# the warmup of pins_flat_after_warmup must end well inside the shortened load
SHORT = ("duration=10", "settle=1", "checks.pins_flat_after_warmup.warmup=4")


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))


@pytest.mark.parametrize("culprit", [1, 8, 15])
def test_bisect_finds_the_commit_that_removed_the_fix(tmp_path: Path, culprit: int):
    from rig.runner import run_scenario

    history = build_demo_history(tmp_path / "demo", commits=16, culprit=culprit)
    args = BisectArgs(history.root, "HEAD~15", "HEAD",
                      history.root / "scenarios" / "pin-race.yaml",
                      max_runs=60, overrides=SHORT)
    result = bisect(args, tmp_path / "out", run_scenario)
    assert result.reason == "confident", result
    assert result.best == culprit
    assert result.culprit.sha == history.commits[culprit].sha
    assert (tmp_path / "out" / "bisect.json").is_file()


# Two runs at once on 2 shared cores slow the fixed relay enough that it may add a shard after
# the warmup (a false alarm at a good commit); the stock relay's phantom shards still fail
# no_phantom_shards and make_shard_race, so only a leak is asked of pins_flat_after_warmup.
ONLY_LEAKS = ("checks.pins_flat_after_warmup.tolerance=50",)


@pytest.mark.timeout(1500)  # two runs at once on 2 cores take about as long as one after one
def test_bisect_parallel_2_finds_the_same_culprit(tmp_path: Path):
    from rig.distribute import Dispatch
    from rig.runner import run_scenario

    history = build_demo_history(tmp_path / "demo", commits=16, culprit=8)
    args = BisectArgs(history.root, "HEAD~15", "HEAD",
                      history.root / "scenarios" / "pin-race.yaml",
                      max_runs=60, overrides=(*SHORT, *ONLY_LEAKS))
    result = bisect(args, tmp_path / "out", run_scenario, dispatch=Dispatch(jobs=2))
    assert result.reason == "confident", result
    assert result.best == 8  # what the serial bisect answers (the test above)
    state = json.loads((tmp_path / "out" / "bisect.json").read_text())
    folders = [r["folder"] for r in state["runs"] if r["folder"]]
    assert len(set(folders)) == len(folders)  # runs at once never share a run folder
