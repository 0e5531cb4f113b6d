"""Fixtures for testing the shipped system under test: the kmod model and the relay's parts.

- `kmod_process`: a stock kmod on a temp folder, stopped at the end.
- `start_kmod`: starts kmod from any tree (e.g. a patched copy), all stopped at the end.
- `patched_tree`: `apply(*patch_names) -> Path`, a copy of containers/ with patches applied.
- `containers_dir`: the repository's stock containers/ folder.
- `import_from`: `import_from(folder, name) -> module`, imported under a unique name so stock
  and patched modules live side by side in one session.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

import pytest
from kmod_helpers import (  # noqa: F401 - re-exported for the fixtures below
    CONTAINERS,
    PATCHES,
    READY_TIMEOUT,
    ROOT,
    KmodProcess,
    parse_status,
    running_kmod,
    stop_process,
    wait_ready,
)


@pytest.fixture(scope="session")
def containers_dir() -> Path:
    """The repository's containers/ folder (stock sources)."""
    return CONTAINERS


@pytest.fixture
def kmod_process(tmp_path: Path) -> Iterator[KmodProcess]:
    with running_kmod(CONTAINERS / "kmod" / "kmod.py", tmp_path / "kmod") as kmod:
        yield kmod


@pytest.fixture
def start_kmod(tmp_path: Path) -> Iterator[Callable[[Path], KmodProcess]]:
    """`start_kmod(tree_root)` runs `<tree_root>/containers/kmod/kmod.py` until the test ends."""
    names = itertools.count()
    with ExitStack() as stack:

        def start(tree_root: Path) -> KmodProcess:
            kmod_py = tree_root / "containers" / "kmod" / "kmod.py"
            return stack.enter_context(running_kmod(kmod_py, tmp_path / f"kmod{next(names)}"))

        yield start


@pytest.fixture(scope="session")
def patched_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`apply(*patch_names)`: root of a copy of containers/ with those patches applied."""
    trees: dict[tuple[str, ...], Path] = {}

    def apply(*patch_names: str) -> Path:
        if patch_names not in trees:
            trees[patch_names] = make_tree(tmp_path_factory.mktemp("tree"), patch_names)
        return trees[patch_names]

    return apply


def make_tree(root: Path, patch_names: tuple[str, ...]) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(CONTAINERS, root / "containers", ignore=ignore)
    shutil.copytree(PATCHES, root / "scenarios" / "patches", ignore=ignore)
    if patch_names:
        paths = [str(root / "scenarios" / "patches" / name) for name in patch_names]
        done = subprocess.run(["git", "apply", *paths], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"git apply {' '.join(patch_names)} failed:\n{done.stderr}")
    return root


_unique = itertools.count()


def import_module_from(folder: Path, name: str) -> ModuleType:
    """Import `folder/name.py` under a unique name; its sibling imports come from `folder`."""
    siblings = {path.stem for path in folder.glob("*.py")}
    saved = {sibling: sys.modules.pop(sibling) for sibling in siblings if sibling in sys.modules}
    unique_name = f"sut_{name}_{next(_unique)}"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(unique_name, folder / f"{name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {name} from {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))
        for sibling in siblings:
            sys.modules.pop(sibling, None)
        sys.modules.update(saved)


@pytest.fixture(scope="session")
def import_from() -> Callable[[Path, str], ModuleType]:
    return import_module_from
