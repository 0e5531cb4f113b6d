"""The walking rig, end to end on the local backend: the stock relay fails pin-race, each fix
patch passes it, and the 32-pin ceiling patch delays the abort."""

from pathlib import Path

import pytest

from rig.results import read_events
from rig.runner import RunRequest, run_scenario

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
PATCHES = ROOT / "scenarios" / "patches"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timing]


def run(tmp_path: Path, name: str, patches: tuple[str, ...] = (), overrides: tuple[str, ...] = ()):
    return run_scenario(
        RunRequest(
            scenario_path=PIN_RACE,
            overrides=overrides,
            patches=tuple(PATCHES / p for p in patches),
            out=tmp_path / name,
            progress=False,
        )
    )


def failed_checks(outcome) -> set[str]:
    return {c.name for c in outcome.summary.checks if not c.passed}


def test_stock_relay_fails_pin_race(tmp_path: Path):
    outcome = run(tmp_path, "stock")
    assert outcome.verdict == "fail"
    assert outcome.exit_code == 1
    # phantoms are what the field report is about; the abort may or may not come first
    assert failed_checks(outcome) & {"no_phantom_shards", "relay_alive", "pins_below_ceiling"}
    assert (outcome.folder / "report.html").is_file()
    assert any(e.kind == "make_shard" and e.data["space"] > 0
               for e in read_events(outcome.folder))
    race = next(c for c in outcome.summary.checks if c.name == "make_shard_race")
    assert (race.passed, race.diagnosis) == (False, "race"), race
    assert outcome.summary.diagnosis.make_shard.phantom_calls > 0


@pytest.mark.parametrize("patch", ["relay-reserve-slot-first.patch",
                                   "relay-recheck-after-pin.patch"])
def test_each_fix_passes_pin_race(tmp_path: Path, patch: str):
    outcome = run(tmp_path, "fixed", patches=(patch,))
    assert failed_checks(outcome) == set(), outcome.summary.checks
    assert outcome.verdict == "pass"
    race = next(c for c in outcome.summary.checks if c.name == "make_shard_race")
    assert (race.passed, race.diagnosis) == (True, "growth"), race
    peak = outcome.summary.counters["kmod.pins"].peak
    assert 0 < peak < 16


def crash_time(outcome) -> float | None:
    crashes = [e.t for e in read_events(outcome.folder) if e.kind == "crash"]
    return crashes[0] if crashes else None


def test_max_shm_areas_32_delays_the_abort(tmp_path: Path):
    heavy = ("duration=30", "bursts.streams_per_worker=4")
    stock = run(tmp_path, "stock", overrides=heavy)
    bumped = run(tmp_path, "bumped", patches=("kmod-max-shm-areas-32.patch",), overrides=heavy)
    stock_crash = crash_time(stock)
    assert stock_crash is not None, "the stock relay should abort at 16 pins under this load"
    bumped_crash = crash_time(bumped)
    assert bumped_crash is None or bumped_crash > stock_crash
    assert bumped.summary.counters["kmod.pins"].peak > 16
