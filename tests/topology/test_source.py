import subprocess
from pathlib import Path

import pytest

from rig.errors import InfraError, ScenarioError, UsageError
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


# -- where a source may come from ----------------------------------------------------------


def test_a_relative_source_that_climbs_out_is_refused_and_nothing_is_copied(tmp_path: Path):
    repo, dest = tmp_path / "a" / "repo", tmp_path / "a" / "run" / "src"
    make_repo(repo)
    (tmp_path / "x").mkdir()
    with pytest.raises(ScenarioError, match=r"^services.svc.source: \.\./\.\./x leads out "
                                            r"of the repository .*repo \(allowed: a folder "
                                            r"inside it\)$"):
        copy_sources(repo, {"svc": "../../x"}, dest)
    assert not (tmp_path / "a" / "run").exists()


def test_a_symbolic_link_out_of_the_repository_is_refused(tmp_path: Path):
    repo = tmp_path / "repo"
    make_repo(repo)
    (tmp_path / "elsewhere").mkdir()
    (repo / "containers" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ScenarioError, match="containers/link leads out of the repository"):
        copy_sources(repo, {"svc": "containers/link"}, tmp_path / "run" / "src")


def test_an_absolute_source_needs_allow_outside_sources(tmp_path: Path):
    repo = tmp_path / "repo"
    make_repo(repo)
    elsewhere = tmp_path / "elsewhere"
    make_repo(elsewhere)
    absolute = str(elsewhere / "containers" / "svc")
    with pytest.raises(ScenarioError, match="is an absolute path .*--allow-outside-sources"):
        copy_sources(repo, {"svc": absolute}, tmp_path / "run" / "src")
    copies = copy_sources(repo, {"svc": absolute}, tmp_path / "run" / "src",
                          outside=tmp_path / "run" / "outside")
    assert copies == {"svc": tmp_path / "run" / "outside" / "svc"}
    assert (copies["svc"] / "main.py").read_text() == "LIMIT = 16\n"
    assert (elsewhere / "containers" / "svc" / "main.py").is_file()  # copied, not moved


def test_an_absolute_source_that_is_the_repository_copy_itself_is_copied_too(tmp_path: Path):
    # it used to be copied onto itself (dest / "/abs" is "/abs"): a shutil.Error traceback
    repo = tmp_path / "repo"
    make_repo(repo)
    absolute = str(repo / "containers" / "svc")
    copies = copy_sources(repo, {"svc": absolute}, tmp_path / "run" / "src",
                          outside=tmp_path / "run" / "outside")
    assert copies["svc"].is_relative_to(tmp_path / "run")


@pytest.mark.parametrize(("make", "what"), [
    (lambda p: None, "not found"),
    (lambda p: p.write_text("a file\n"), "not a folder"),
])
def test_a_source_that_is_no_folder_is_named(tmp_path: Path, make, what):
    make(tmp_path / "thing")
    for named, outside in (("thing", None), (str(tmp_path / "thing"), tmp_path / "o")):
        with pytest.raises(InfraError, match=f"source folder of svc {what}: "):
            copy_sources(tmp_path, {"svc": named}, tmp_path / "run", outside=outside)


def test_a_source_holding_the_run_folder_is_refused(tmp_path: Path):
    make_repo(tmp_path)
    with pytest.raises(ScenarioError, match="holds the run's temporary folder"):
        copy_sources(tmp_path, {"svc": "."}, tmp_path / "run" / "src")


def test_a_file_that_cannot_be_copied_is_one_infra_error(tmp_path: Path):
    import os

    make_repo(tmp_path / "repo")
    os.mkfifo(tmp_path / "repo" / "containers" / "svc" / "pipe")  # shutil refuses to copy it
    with pytest.raises(InfraError, match="cannot copy the source folder of svc .*pipe"):
        copy_sources(tmp_path / "repo", {"svc": "containers/svc"}, tmp_path / "run")
