from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own runtime folder, so leftovers are attributable to it."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(runtime))
    return runtime
