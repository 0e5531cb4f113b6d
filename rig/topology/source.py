"""Where a service's code comes from: a copy of its folder, with patches applied to the copy.

The user's tree is never modified: every run works on its own copy.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rig.errors import InfraError, UsageError

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def copy_sources(repo_root: Path, folders: Mapping[str, str], dest: Path) -> dict[str, Path]:
    """Copy each service folder (relative to repo_root) into dest, keeping its relative path."""
    copies: dict[str, Path] = {}
    for service, relative in folders.items():
        src = repo_root / relative
        if not src.is_dir():
            raise InfraError(f"source folder of {service} not found: {relative} in {repo_root}")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, target, ignore=IGNORED, dirs_exist_ok=True)
        copies[service] = target
    return copies


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
    files = (p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in sorted(files):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
