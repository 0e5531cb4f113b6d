"""Where a service's code comes from: a copy of its folder, with patches applied to the copy.

The user's tree is never modified: every run works on its own copy.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rig.errors import InfraError, ScenarioError, UsageError, shorten

# .git too: a user's build context is often their repository's root, and its history is
# neither built nor part of the content hash.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".git")


def copy_sources(repo_root: Path, folders: Mapping[str, str], dest: Path, *,
                 outside: Path | None = None) -> dict[str, Path]:
    """Copy each service folder into dest, keeping its path relative to repo_root.

    A relative folder must stay inside repo_root (symbolic links followed); an absolute one
    is refused unless `outside` is given, and is then copied to outside/<service>. Both
    dest and outside belong to the run's temporary folder."""
    root = repo_root.resolve()
    copies: dict[str, Path] = {}
    for service, named in folders.items():
        src, target = source_and_copy(root, service, named, dest, outside)
        if not src.is_dir():
            what = "not a folder" if src.exists() else "not found"
            raise InfraError(f"source folder of {service} {what}: {named} in {root}")
        if target.resolve().is_relative_to(src):
            raise ScenarioError(f"services.{service}.source: {shorten(named)} holds the run's "
                                f"temporary folder {dest} (allowed: a service's own folder)")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(src, target, ignore=IGNORED, dirs_exist_ok=True)
        except (OSError, shutil.Error) as err:
            raise InfraError(f"cannot copy the source folder of {service} ({shorten(named)}): "
                             f"{shorten(str(err), 200)}") from None
        copies[service] = target
    return copies


def check_sources(repo_root: Path, folders: Mapping[str, str], *, allow_outside: bool) -> None:
    """ScenarioError for the first folder copy_sources would refuse; before anything starts."""
    for service, named in folders.items():
        source_and_copy(repo_root.resolve(), service, named, Path("."),
                        Path(".") if allow_outside else None)


def source_and_copy(root: Path, service: str, named: str, dest: Path,
                    outside: Path | None) -> tuple[Path, Path]:
    """(the folder to copy, where its copy goes); ScenarioError when it may not be used."""
    path = Path(named)
    if path.is_absolute():
        if outside is None:
            raise ScenarioError(
                f"services.{service}.source: {shorten(named)} is an absolute path (allowed: a "
                f"folder inside the repository {root}, or --allow-outside-sources)")
        return path.resolve(), outside / service
    src = (root / path).resolve()
    if not src.is_relative_to(root):
        raise ScenarioError(f"services.{service}.source: {shorten(named)} leads out of the "
                            f"repository {root} (allowed: a folder inside it)")
    return src, dest / src.relative_to(root)


def copy_file(repo_root: Path, relative: str, dest: Path) -> Path:
    """Copy one file (relative to repo_root) into dest at the same relative path, unless a
    copied folder already brought it; patches then apply to it like to the folders."""
    target = dest / relative
    if not target.is_file():
        src = repo_root / relative
        if not src.is_file():
            raise UsageError(f"file not found: {relative} in {repo_root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return target


def apply_patches(tree: Path, patches: Sequence[Path]) -> None:
    """Apply unified diffs (paths relative to the repository root) to the copied tree."""
    for patch in patches:
        if not patch.is_file():
            raise UsageError(f"patch not found: {patch}")
        result = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch.resolve())],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["git apply failed"])[0]
            raise UsageError(f"patch {patch.name} does not apply: {first}")


def tree_hash(folder: Path) -> str:
    """Content hash of a folder (file names and bytes), to tag builds of unchanged sources."""
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file()
             and not {"__pycache__", ".git"} & set(p.relative_to(folder).parts))
    for path in sorted(files):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
