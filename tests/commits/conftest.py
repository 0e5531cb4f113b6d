"""Throwaway git repositories and fake runners for the tests across commits."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rig.runner import RunOutcome, RunRequest
from rig.summary import Summary

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV},
                          check=True, capture_output=True, text=True).stdout


def worktrees(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [line for line in out.splitlines() if line.startswith("worktree ")]


@dataclass(frozen=True)
class Repo:
    root: Path
    shas: tuple[str, ...]


def make_repo(root: Path, files_per_commit: list[dict[str, str]]) -> Repo:
    """One commit per dict of {path: text}; returns the shas oldest first."""
    root.mkdir(parents=True)
    git(root, "init", "--quiet", "--initial-branch=main")
    shas = []
    for index, files in enumerate(files_per_commit):
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        git(root, "add", "--all")
        git(root, "commit", "--quiet", "--allow-empty", "-m", f"commit {index}")
        shas.append(git(root, "rev-parse", "HEAD").strip())
    return Repo(root, tuple(shas))


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "race.yaml"
    path.write_text("name: race\nduration: 1\nbursts: {every: 1.0, workers: 2}\n")
    return path


def summary(verdict: str, checks: list[dict[str, Any]] | None = None,
            peaks: dict[str, float] | None = None) -> Summary:
    return Summary.model_validate({
        "run_id": "fake",
        "verdict": verdict,
        "checks": checks or [],
        "counters": {k: {"first": 0, "peak": v, "last": v} for k, v in (peaks or {}).items()},
    })


@dataclass
class FakeRun:
    """Stands in for run_scenario: decides the outcome from the request, records requests."""

    decide: Callable[[RunRequest], Summary]
    requests: list[RunRequest] = field(default_factory=list)

    def __call__(self, request: RunRequest) -> RunOutcome:
        self.requests.append(request)
        result = self.decide(request)
        folder = request.results_root / f"run-{len(self.requests)}"
        return RunOutcome(folder, result.verdict, result)
