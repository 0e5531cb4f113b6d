"""pytest plugin: a scenario becomes a test.

    @pytest.mark.rig_scenario("scenarios/pin-race.yaml", set=["load.cps=20"])
    def test_pin_race(rig_outcome):
        ...                      # fails already if a check failed; rig_outcome.summary is
                                 # the run's Summary: .check("relay_alive").passed, .peaks()

or call the `rig_run` fixture yourself: `outcome = rig_run("scenarios/x.yaml", patches=[...])`.
Heavy modules are imported only when a scenario actually runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rig.summary import Summary


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rig_scenario(path, set=(), patches=(), expect='pass'): run a rig scenario as this test",
    )


def failing_checks_message(summary: Summary) -> str:
    lines = [f"scenario {summary.name}: {summary.verdict}"]
    lines += [f"  {c.name}: observed {c.observed} limit {c.limit} {c.detail}"
              for c in summary.failed_checks]
    return "\n".join(lines)


@pytest.fixture
def rig_run(tmp_path: Path) -> Callable[..., Any]:
    """Run a scenario into a temporary run folder and return its RunOutcome."""

    def run(path: str | Path, set: Sequence[str] = (), patches: Sequence[str | Path] = ()) -> Any:
        from rig.runner import RunRequest, run_scenario

        request = RunRequest(
            scenario_path=Path(path),
            overrides=tuple(set),
            patches=tuple(Path(p) for p in patches),
            out=tmp_path / "run",
            progress=False,
        )
        return run_scenario(request)

    return run


@pytest.fixture
def rig_outcome(request: pytest.FixtureRequest, rig_run: Callable[..., Any]) -> Any:
    """The outcome of the test's `rig_scenario` marker; fails the test on a verdict it did
    not expect (default: pass)."""
    marker = request.node.get_closest_marker("rig_scenario")
    if marker is None:
        raise pytest.UsageError("rig_outcome needs @pytest.mark.rig_scenario(path, ...)")
    expect = marker.kwargs.get("expect", "pass")
    outcome = rig_run(
        marker.args[0], set=marker.kwargs.get("set", ()), patches=marker.kwargs.get("patches", ())
    )
    if outcome.verdict != expect:
        pytest.fail(failing_checks_message(outcome.summary), pytrace=False)
    return outcome
