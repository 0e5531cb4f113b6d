"""Commits of a repository, and a throwaway checkout of one of them.

A checkout is a detached `git worktree` in a temporary folder: the user's working tree,
index and branches are never touched, and the worktree is removed (and pruned) on every
exit path, an exception or Ctrl-C included. A SIGKILL skips all of that, so the folder is
also written into a run record: `rig gc` removes it once this process is gone, and the
next checkout's `git worktree prune` forgets it in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rig.errors import UsageError
from rig.topology.runtime import RunRecord


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def git(repo: Path, *args: str) -> str:
    """Run one git command in repo; a failure is bad input, named by git's first line."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
        raise UsageError(f"git {' '.join(args[:2])} failed in {repo}: {first}")
    return result.stdout


def repo_root(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"repository not found: {path}")
    return Path(git(path, "rev-parse", "--show-toplevel").strip())


def resolve(repo: Path, rev: str) -> str:
    """The full sha of a revision (branch, tag, short sha, HEAD~3, ...)."""
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise UsageError(f"unknown revision in {repo}: {rev}")
    return result.stdout.strip()


def describe(repo: Path, shas: Sequence[str]) -> list[Commit]:
    if not shas:
        return []
    out = git(repo, "show", "-s", "--format=%H%x09%s", *shas)
    pairs = [line.split("\t", 1) for line in out.splitlines() if line]
    return [Commit(sha, subject) for sha, subject in pairs]


def first_parent_range(repo: Path, good: str, bad: str) -> list[Commit]:
    """good, then every first-parent commit after it up to bad: index 0 good, last bad."""
    good_sha, bad_sha = resolve(repo, good), resolve(repo, bad)
    ancestor = subprocess.run(
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", good_sha, bad_sha],
        capture_output=True, check=False,
    )
    if good_sha == bad_sha or ancestor.returncode != 0:
        raise UsageError(f"--good {good} is not an ancestor of --bad {bad}")
    after = git(repo, "rev-list", "--first-parent", "--reverse", f"{good_sha}..{bad_sha}")
    shas = after.split()
    if not shas or shas[-1] != bad_sha:
        raise UsageError(f"--bad {bad} is not on the first-parent line after --good {good}")
    return describe(repo, [good_sha, *shas])


def commit_range(repo: Path, spec: str) -> list[Commit]:
    """`A..B` as git reads it (first-parent, oldest first), or a single revision."""
    if ".." not in spec:
        return describe(repo, [resolve(repo, spec)])
    start, end = spec.split("..", 1)
    if not start or not end:
        raise UsageError(f"range must be A..B: {spec}")
    span = f"{resolve(repo, start)}..{resolve(repo, end)}"
    shas = git(repo, "rev-list", "--first-parent", "--reverse", span).split()
    if not shas:
        raise UsageError(f"no commits in {spec}")
    return describe(repo, shas)


@contextmanager
def checkout(repo: Path, rev: str) -> Iterator[Path]:
    """A detached worktree of rev in a temporary folder, removed when the block ends."""
    sha = resolve(repo, rev)
    parent = Path(tempfile.mkdtemp(prefix="rig-worktree-"))
    tree = parent / sha[:12]
    record = RunRecord.for_this_process(parent.name)
    try:
        record.add_folder(parent)
        git(repo, "worktree", "add", "--detach", "--quiet", str(tree), sha)
        yield tree
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                       capture_output=True, check=False)
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"],
                       capture_output=True, check=False)
        record.remove()
