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
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
PATCHES = ROOT / "scenarios" / "patches"
READY_TIMEOUT = 10.0


def parse_status(text: str) -> dict[str, int]:
    """`{label: value}` of a table status file, e.g. `{"Memory pins": 5, ...}`."""
    values = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"malformed status line {line!r}")
        values[label] = int(value)
    return values


@dataclass
class KmodProcess:
    dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    parse_status = staticmethod(parse_status)

    @property
    def socket(self) -> Path:
        return self.dir / "control.sock"

    def status_text(self, table: str | int) -> str:
        return (self.dir / str(table) / "status").read_text()

    def status(self, table: str | int) -> dict[str, int]:
        return parse_status(self.status_text(table))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_status(
        self, table: str | int, label: str, value: int, timeout: float = 5.0
    ) -> dict[str, int]:
        """The status once `label` shows `value`; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(table)
            if status[label] == value or time.monotonic() > deadline:
                assert status[label] == value, f"{label} stayed {status[label]}, wanted {value}"
                return status
            time.sleep(0.01)


@contextmanager
def running_kmod(kmod_py: Path, state_dir: Path) -> Iterator[KmodProcess]:
    """kmod started on `state_dir`, ready (socket accepting), always stopped on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(kmod_py), "--dir", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    kmod = KmodProcess(state_dir, process, log_path)
    try:
        wait_ready(kmod)
        yield kmod
    finally:
        stop_process(process)


def wait_ready(kmod: KmodProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while "kmod ready" not in kmod.log():
        if kmod.process.poll() is not None:
            pytest.fail(f"kmod exited with {kmod.process.returncode}:\n{kmod.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"kmod not ready after {READY_TIMEOUT} s:\n{kmod.log()}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
