import json
from pathlib import Path

import pytest

from rig.commits.sweep import ceiling_from, every_kth, sweep
from rig.commits.worktree import Commit
from rig.errors import InfraError, UsageError

from .conftest import FakeRun, make_repo, summary, worktrees

PINS = [2, 2, 3, 5, 8, 13]
CEILING = {"name": "pins_below_ceiling", "passed": True, "observed": 0, "limit": 16}


@pytest.fixture
def repo(tmp_path: Path):
    return make_repo(tmp_path / "repo", [{"pins.txt": f"{n}\n"} for n in PINS])


def pins_at(request) -> dict:
    text = (request.repo / "pins.txt").read_text().strip()
    if text == "broken":
        raise InfraError("kmod did not start")
    pins = int(text)
    return summary("pass" if pins < 10 else "fail", [CEILING], {"kmod.pins": pins})


def test_every_kth_keeps_the_last_commit():
    commits = [Commit(str(i) * 40, f"c{i}") for i in range(6)]
    assert [c.subject for c in every_kth(commits, 2)] == ["c0", "c2", "c4", "c5"]
    assert [c.subject for c in every_kth(commits, 5)] == ["c0", "c5"]
    with pytest.raises(UsageError, match="--every"):
        every_kth(commits, 0)


def test_sweep_records_the_peak_per_commit(repo, scenario, tmp_path):
    out = tmp_path / "sweep"
    result = sweep(repo.root, f"{repo.shas[0]}..{repo.shas[-1]}", scenario, out,
                   FakeRun(pins_at), every=2)
    assert [p.peak for p in result.points] == [2, 5, 13]  # commits 1, 3, 5 of A..B
    assert [p.verdict for p in result.points] == ["pass", "pass", "fail"]
    assert result.ceiling == 16
    data = json.loads((out / "sweep.json").read_text())
    assert [p["commit"] for p in data["points"]] == [repo.shas[1], repo.shas[3], repo.shas[5]]
    assert data["counter"] == "kmod.pins" and data["ceiling"] == 16
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert len(worktrees(repo.root)) == 1


def test_a_commit_that_does_not_start_is_a_skipped_point(tmp_path, scenario):
    repo = make_repo(tmp_path / "r", [{"pins.txt": "1\n"}, {"pins.txt": "broken\n"},
                                      {"pins.txt": "4\n"}])
    result = sweep(repo.root, f"{repo.shas[0]}..HEAD", scenario, tmp_path / "out",
                   FakeRun(pins_at), ceiling=12)
    assert [(p.verdict, p.peak) for p in result.points] == [("skip", None), ("pass", 4)]
    assert "kmod did not start" in result.points[0].detail
    assert result.ceiling == 12


def test_a_counter_the_run_does_not_have_is_said(repo, scenario, tmp_path):
    result = sweep(repo.root, f"{repo.shas[4]}..HEAD", scenario, tmp_path / "out",
                   FakeRun(pins_at), counter="relay.fds")
    assert result.points[0].peak is None
    assert result.points[0].detail == "no counter relay.fds in the run"
    assert result.ceiling is None


def test_ceiling_comes_from_the_counters_check():
    assert ceiling_from(summary("pass", [CEILING]), "kmod.pins") == 16
    assert ceiling_from(summary("pass", [CEILING]), "relay.fds") is None


def test_an_empty_range_is_a_usage_error(repo, scenario, tmp_path):
    with pytest.raises(UsageError, match="no commits in"):
        sweep(repo.root, "HEAD..HEAD", scenario, tmp_path / "out", FakeRun(pins_at))


def pins_run(request):
    """Module level, so that it pickles into the local pool of `--jobs`."""
    from rig.runner import RunOutcome

    result = pins_at(request)
    return RunOutcome(request.results_root / "run", result.verdict, result)


def test_a_sweep_with_jobs_gives_the_serial_points_in_commit_order(repo, scenario, tmp_path):
    from rig.distribute import Dispatch

    span = f"{repo.shas[0]}..{repo.shas[-1]}"
    serial = sweep(repo.root, span, scenario, tmp_path / "serial", pins_run)
    at_once = sweep(repo.root, span, scenario, tmp_path / "jobs", pins_run,
                    dispatch=Dispatch(jobs=2))
    assert [(p.commit, p.verdict, p.peak) for p in at_once.points] == \
        [(p.commit, p.verdict, p.peak) for p in serial.points]
    assert [p.peak for p in at_once.points] == PINS[1:]
    saved = json.loads((tmp_path / "jobs" / "sweep.json").read_text())
    assert [p["commit"] for p in saved["points"]] == list(repo.shas[1:])
    assert len(worktrees(repo.root)) == 1  # every checkout of a batch is gone
