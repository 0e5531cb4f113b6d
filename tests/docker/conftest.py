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
from rig.topology.suite import base_image


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


@pytest.fixture
def suite_base(docker_client: Any) -> Any:
    """`suite_base("sid")` skips (fails under CI) when rig-base:sid is missing."""

    def need(suite: str) -> str:
        try:
            docker_client.images.get(base_image(suite))
        except Exception:
            _unavailable(f"base image {base_image(suite)} missing: run "
                         f"SUITE={suite} containers/base/make-base.sh")
        return base_image(suite)

    return need
