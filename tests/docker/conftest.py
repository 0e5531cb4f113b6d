"""Docker tests need an engine and the base image (scripts/ci-docker.sh makes both).

Without them the tests skip on a workstation, and fail under CI (CI set), where a missing
engine is a broken job, not a reason to pass.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rig.errors import InfraError
from rig.topology.images import DEFAULT_BASE


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: run scripts/ci-docker.sh first)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        from rig.topology.docker import connect

        client = connect()
    except InfraError as exc:
        _unavailable(str(exc))
    try:
        client.images.get(DEFAULT_BASE)
    except Exception:
        _unavailable(f"base image {DEFAULT_BASE} missing: run containers/base/make-base.sh")
    yield client
    client.close()


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    return tmp_path
