import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rig.commits.worktree import (
    checkout,
    commit_range,
    first_parent_range,
    repo_root,
    resolve,
)
from rig.errors import UsageError
from rig.topology.runtime import collect_garbage

from .conftest import git, make_repo, worktrees


@pytest.fixture
def repo(tmp_path: Path):
    return make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(5)])


def test_checkout_shows_the_commit_and_leaves_the_users_tree_alone(repo):
    (repo.root / "v.txt").write_text("local edit\n")
    (repo.root / "untracked.txt").write_text("mine\n")
    status = git(repo.root, "status", "--porcelain")
    with checkout(repo.root, repo.shas[1]) as tree:
        assert (tree / "v.txt").read_text() == "1\n"
        assert len(worktrees(repo.root)) == 2
        (tree / "scratch.txt").write_text("written by a run\n")
    assert not tree.exists()
    assert len(worktrees(repo.root)) == 1
    assert git(repo.root, "status", "--porcelain") == status
    assert (repo.root / "v.txt").read_text() == "local edit\n"
    assert git(repo.root, "rev-parse", "HEAD").strip() == repo.shas[-1]


def test_worktree_is_removed_and_pruned_when_the_run_raises(repo):
    with pytest.raises(KeyboardInterrupt), checkout(repo.root, repo.shas[2]) as tree:
        raise KeyboardInterrupt
    assert not tree.exists()
    assert len(worktrees(repo.root)) == 1
    assert not (repo.root / ".git" / "worktrees").exists() or not any(
        (repo.root / ".git" / "worktrees").iterdir())


def test_gc_removes_the_worktree_of_a_killed_process(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from rig.commits.worktree import checkout\n"
         f"with checkout(Path({str(repo.root)!r}), {repo.shas[1]!r}) as tree:\n"
         "    print(tree, flush=True)\n"
         "    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        tree = Path(holder.stdout.readline().strip())
        assert (tree / "v.txt").read_text() == "1\n"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert tree.exists()  # SIGKILL ran no cleanup

    report = collect_garbage()
    assert not tree.parent.exists()
    assert report.folders == 1
    git(repo.root, "worktree", "prune")
    assert len(worktrees(repo.root)) == 1


def test_first_parent_range_runs_from_good_to_bad(repo):
    commits = first_parent_range(repo.root, repo.shas[1], "HEAD")
    assert [c.sha for c in commits] == list(repo.shas[1:])
    assert commits[0].subject == "commit 1"


def test_first_parent_range_skips_the_inside_of_merged_branches(tmp_path: Path):
    repo = make_repo(tmp_path / "repo", [{"a.txt": "0\n"}])
    git(repo.root, "checkout", "--quiet", "-b", "side")
    (repo.root / "b.txt").write_text("side\n")
    git(repo.root, "add", "--all")
    git(repo.root, "commit", "--quiet", "-m", "on the side")
    side = git(repo.root, "rev-parse", "HEAD").strip()
    git(repo.root, "checkout", "--quiet", "main")
    (repo.root / "a.txt").write_text("1\n")
    git(repo.root, "commit", "--quiet", "-am", "on main")
    git(repo.root, "merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    commits = first_parent_range(repo.root, repo.shas[0], "HEAD")
    assert [c.subject for c in commits] == ["commit 0", "on main", "merge side"]
    assert side not in [c.sha for c in commits]


def test_commit_range_follows_git_two_dot_meaning(repo):
    commits = commit_range(repo.root, f"{repo.shas[1]}..{repo.shas[3]}")
    assert [c.sha for c in commits] == list(repo.shas[2:4])


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        ("nope", "HEAD", "unknown revision"),
        ("HEAD", "HEAD~2", "is not an ancestor"),
        ("HEAD", "HEAD", "is not an ancestor"),
    ],
)
def test_bad_revisions_are_usage_errors(repo, good, bad, message):
    with pytest.raises(UsageError, match=message):
        first_parent_range(repo.root, good, bad)


def test_a_folder_that_is_no_repository_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="not a git repository"):
        repo_root(tmp_path)
    with pytest.raises(UsageError, match="repository not found"):
        repo_root(tmp_path / "missing")
    with pytest.raises(UsageError, match="unknown revision"):
        resolve(tmp_path, "HEAD")
    with pytest.raises(UsageError, match="range must be A..B"):
        commit_range(tmp_path, "A..")
