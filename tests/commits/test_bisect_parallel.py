"""`rig bisect --parallel K`: K runs of one checkout at once, in spawned processes; the same
culprit as one run at a time, with the runs of each batch logged in the order asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.commits.bisect import BisectArgs, bisect
from rig.distribute import Dispatch
from rig.runner import RunOutcome, RunRequest

from .conftest import make_repo, summary

CULPRIT = 9


def culprit_run(request: RunRequest) -> RunOutcome:
    """Module level, so that it pickles into the pool: fails at and after CULPRIT."""
    index = int((request.repo / "v.txt").read_text())
    verdict = "fail" if index >= CULPRIT else "pass"
    return RunOutcome(request.results_root / f"run-{index}", verdict, summary(verdict))


@pytest.mark.parametrize("runs_per_step", [4, None])
def test_parallel_runs_find_the_serial_culprit(tmp_path: Path, scenario: Path,
                                               runs_per_step: int | None):
    history = make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(16)])
    args = BisectArgs(history.root, history.shas[0], history.shas[-1], scenario,
                      runs_per_step=runs_per_step)
    serial = bisect(args, tmp_path / "serial", culprit_run)
    parallel = bisect(args, tmp_path / "parallel", culprit_run, dispatch=Dispatch(jobs=2))
    assert serial.best == parallel.best == CULPRIT
    assert serial.reason == parallel.reason == "confident"
    runs = json.loads((tmp_path / "parallel" / "bisect.json").read_text())["runs"]
    # a batch is two runs of one commit, even where the search asked for one; a failing
    # batch ends its step
    assert len(runs) % 2 == 0
    assert all(runs[i]["index"] == runs[i + 1]["index"] for i in range(0, len(runs), 2))
    assert parallel.runs >= serial.runs
