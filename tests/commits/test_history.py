import subprocess
from pathlib import Path

import pytest

from rig.commits.history import FIX_PATCH, RIG_ROOT, build_demo_history
from rig.errors import UsageError

from .conftest import git

STOCK = "def make_shard(pool):\n    shard = pin(pool.new())\n    pool.insert(shard)\n"
FIXED = "def make_shard(pool):\n    slot = pool.reserve()\n    slot.fill(pin(pool.new()))\n"
BUFFERPOOL = "containers/relay/bufferpool.py"


def fake_source(root: Path) -> Path:
    """The shape of this repository's SUT: two services, scenarios and the fix patch."""
    files = {
        "containers/kmod/kmod.py": "MAX_SHM_AREAS = 16\n",
        "containers/relay/relay.py": "import bufferpool\n",
        BUFFERPOOL: STOCK,
        "scenarios/pin-race.yaml": "name: pin-race\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "--quiet")
    git(root, "add", "--all")
    (root / BUFFERPOOL).write_text(FIXED)
    patch = root / FIX_PATCH
    patch.parent.mkdir(parents=True)
    patch.write_text(git(root, "diff"))
    (root / BUFFERPOOL).write_text(STOCK)
    return root


def show(repo: Path, sha: str, path: str) -> str:
    return git(repo, "show", f"{sha}:{path}")


def test_the_fix_is_present_before_the_culprit_and_absent_from_it_on(tmp_path: Path):
    source = fake_source(tmp_path / "src")
    history = build_demo_history(tmp_path / "demo", commits=9, culprit=4, source=source)
    assert len(history.commits) == 9
    assert git(history.root, "rev-list", "--count", "HEAD").strip() == "9"
    for index, commit in enumerate(history.commits):
        expected = FIXED if index < 4 else STOCK
        assert show(history.root, commit.sha, BUFFERPOOL) == expected, index


def test_only_the_culprit_touches_the_patched_file(tmp_path: Path):
    source = fake_source(tmp_path / "src")
    history = build_demo_history(tmp_path / "demo", commits=12, culprit=7, source=source)
    touching = [
        index for index, commit in enumerate(history.commits[1:], start=1)
        if BUFFERPOOL in git(history.root, "diff-tree", "--no-commit-id", "--name-only", "-r",
                             commit.sha).split()
    ]
    assert touching == [7]
    changed = {name for c in history.commits[1:] for name in git(
        history.root, "diff-tree", "--no-commit-id", "--name-only", "-r", c.sha).split()}
    assert len(changed) >= 3  # fillers spread over notes, changelog and source comments


def test_same_arguments_give_the_same_history(tmp_path: Path):
    source = fake_source(tmp_path / "src")
    one = build_demo_history(tmp_path / "one", commits=6, culprit=2, source=source)
    two = build_demo_history(tmp_path / "two", commits=6, culprit=2, source=source)
    assert [c.sha for c in one.commits] == [c.sha for c in two.commits]
    authors = set(git(one.root, "log", "--format=%an").split("\n")) - {""}
    assert len(authors) > 1


def test_a_filler_commit_leaves_python_sources_valid(tmp_path: Path):
    source = fake_source(tmp_path / "src")
    history = build_demo_history(tmp_path / "demo", commits=16, culprit=15, source=source)
    for name in ("containers/kmod/kmod.py", "containers/relay/relay.py"):
        compile((history.root / name).read_text(), name, "exec")


@pytest.mark.parametrize(
    ("commits", "culprit", "message"),
    [(1, 1, "--commits must be at least 2"), (5, 0, "--culprit must be in 1..4"),
     (5, 5, "--culprit must be in 1..4")],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, commits, culprit, message):
    source = fake_source(tmp_path / "src")
    with pytest.raises(UsageError, match=message):
        build_demo_history(tmp_path / "demo", commits, culprit, source=source)


def test_a_non_empty_destination_or_missing_patch_is_refused(tmp_path: Path):
    source = fake_source(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(UsageError, match="not empty"):
        build_demo_history(tmp_path / "full", 4, 2, source=source)
    (source / FIX_PATCH).unlink()
    with pytest.raises(UsageError, match="fix patch not found"):
        build_demo_history(tmp_path / "demo", 4, 2, source=source)


@pytest.mark.skipif(not (RIG_ROOT / FIX_PATCH).is_file(), reason="model SUT not in this tree")
def test_demo_history_of_the_real_model_sut(tmp_path: Path):
    history = build_demo_history(tmp_path / "demo", commits=5, culprit=3)
    before = show(history.root, history.commits[2].sha, BUFFERPOOL)
    after = show(history.root, history.commits[3].sha, BUFFERPOOL)
    assert before != after
    check = subprocess.run(["git", "apply", "--check", str(RIG_ROOT / FIX_PATCH)],
                           cwd=history.root, capture_output=True, check=False)
    assert check.returncode == 0  # HEAD is the stock relay: the fix applies again
