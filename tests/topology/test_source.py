import subprocess
from pathlib import Path

import pytest

from rig.errors import InfraError, UsageError
from rig.topology.source import apply_patches, copy_sources, tree_hash


def make_repo(root: Path) -> None:
    (root / "containers" / "svc").mkdir(parents=True)
    (root / "containers" / "svc" / "main.py").write_text("LIMIT = 16\n")


def make_patch(root: Path, new_text: str) -> Path:
    work = root / "work"
    make_repo(work)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    (work / "containers" / "svc" / "main.py").write_text(new_text)
    diff = subprocess.run(["git", "diff"], cwd=work, check=True, capture_output=True, text=True)
    patch = root / "bump.patch"
    patch.write_text(diff.stdout)
    return patch


def test_copy_then_patch_leaves_the_original_untouched(tmp_path: Path):
    repo, dest = tmp_path / "repo", tmp_path / "copy"
    make_repo(repo)
    patch = make_patch(tmp_path, "LIMIT = 32\n")
    copies = copy_sources(repo, {"svc": "containers/svc"}, dest)
    apply_patches(dest, [patch])
    assert (copies["svc"] / "main.py").read_text() == "LIMIT = 32\n"
    assert (repo / "containers" / "svc" / "main.py").read_text() == "LIMIT = 16\n"


def test_a_patch_that_does_not_apply_is_bad_input(tmp_path: Path):
    repo, dest = tmp_path / "repo", tmp_path / "copy"
    make_repo(repo)
    patch = make_patch(tmp_path, "LIMIT = 32\n")
    copy_sources(repo, {"svc": "containers/svc"}, dest)
    (dest / "containers" / "svc" / "main.py").write_text("something else\n")
    with pytest.raises(UsageError, match="bump.patch does not apply"):
        apply_patches(dest, [patch])


def test_missing_patch_and_missing_source_are_named(tmp_path: Path):
    with pytest.raises(UsageError, match="patch not found"):
        apply_patches(tmp_path, [tmp_path / "nope.patch"])
    with pytest.raises(InfraError, match="containers/none"):
        copy_sources(tmp_path, {"x": "containers/none"}, tmp_path / "d")


def test_tree_hash_changes_with_content(tmp_path: Path):
    make_repo(tmp_path)
    before = tree_hash(tmp_path / "containers")
    (tmp_path / "containers" / "svc" / "main.py").write_text("LIMIT = 17\n")
    assert tree_hash(tmp_path / "containers") != before
