"""`rig run --target docker`: the same scenarios and verdicts as on the local backend, with
every service in a container. Without an engine these skip, or fail when CI is set
(see conftest.py)."""

import shutil
from pathlib import Path
from typing import Any

import pytest

from rig.cli import main
from rig.runner import RunOutcome, RunRequest, run_scenario
from rig.summary import CheckEntry

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
PATCHES = SCENARIOS / "patches"

# The first run builds the images (minutes on a cold cache); later runs take ~20 s each.
BUILD_TIMEOUT_S = 600
needs_kamcmd = pytest.mark.skipif(not shutil.which("kamcmd"), reason="needs kamcmd on the host")


def run(tmp_path: Path, scenario: str, name: str, *overrides: str,
        patch: str | None = None) -> RunOutcome:
    return run_scenario(RunRequest(
        scenario_path=SCENARIOS / scenario,
        overrides=overrides,
        patches=(PATCHES / patch,) if patch else (),
        out=tmp_path / name,
        progress=False,
        target="docker",
    ))


def check(outcome: RunOutcome, name: str) -> CheckEntry:
    return next(c for c in outcome.summary.checks if c.name == name)


@pytest.fixture
def docker(docker_client: Any, runtime: Path) -> Any:
    return docker_client


@pytest.mark.docker
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@needs_kamcmd
def test_session_leak_passes_in_containers(docker: Any, tmp_path: Path):
    outcome = run(tmp_path, "session-leak.yaml", "stock", "duration=3")
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    assert outcome.summary.sut.target == "docker"
    assert outcome.summary.timing.stack_start_s > 0


@pytest.mark.docker
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@needs_kamcmd
def test_session_leak_names_the_leaked_sessions_in_containers(docker: Any, tmp_path: Path):
    outcome = run(tmp_path, "session-leak.yaml", "broken", "duration=3",
                  patch="kamailio-no-delete-on-busy.patch")
    assert outcome.verdict == "fail"
    leaked = outcome.summary.load.outcomes["busy"]
    assert leaked > 0 and check(outcome, "no_orphan_sessions").observed == leaked


@pytest.mark.docker
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@needs_kamcmd
def test_stock_relay_fails_pin_race_in_containers(docker: Any, tmp_path: Path):
    outcome = run(tmp_path, "pin-race.yaml", "stock", "duration=8")
    assert outcome.verdict == "fail"
    assert {c.name for c in outcome.summary.checks if not c.passed} & {
        "no_phantom_shards", "relay_alive", "pins_below_ceiling"}


@pytest.mark.docker
@pytest.mark.timeout(BUILD_TIMEOUT_S)
@needs_kamcmd
def test_fixed_relay_passes_pin_race_in_containers(docker: Any, tmp_path: Path):
    outcome = run(tmp_path, "pin-race.yaml", "fixed", "duration=8",
                  patch="relay-recheck-after-pin.patch")
    assert outcome.verdict == "pass", [c for c in outcome.summary.checks if not c.passed]
    assert check(outcome, "no_phantom_shards").observed == 0


def test_no_engine_is_an_infrastructure_error(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    code = main(["run", str(SCENARIOS / "session-leak.yaml"), "--target", "docker",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 3
    assert "no Docker engine reachable" in capsys.readouterr().err


def test_build_context_is_a_copy_with_the_wheels_folder_only_when_needed(tmp_path: Path):
    from rig.topology.images import build_context

    source = tmp_path / "svc"
    source.mkdir()
    (source / "Dockerfile").write_text("FROM scratch\n")
    with build_context(source) as copy:
        assert copy != source and (copy / "Dockerfile").is_file()
        assert not (copy / "wheels").exists()
        (copy / "extra").write_text("x")
    assert sorted(p.name for p in source.iterdir()) == ["Dockerfile"]


def test_a_wheel_pip_cannot_get_is_an_infrastructure_error(tmp_path: Path):
    from rig.errors import InfraError
    from rig.topology.images import build_context

    source = tmp_path / "svc"
    source.mkdir()
    (source / "requirements.txt").write_text(f"{tmp_path / 'no-such-project'}\n")
    with pytest.raises(InfraError, match="pip download for svc failed"):
        with build_context(source):
            pass
    assert not (source / "wheels").exists()
