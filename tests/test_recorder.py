"""The run's recorder streams samples to series.csv and keeps none of them in memory; a
run the infrastructure stopped says so in its folder."""

from pathlib import Path

import pytest

from rig.errors import InfraError
from rig.results import RunFolder, read_summary
from rig.runner import Recorder, Run, RunRequest
from rig.series import Sample

PIN_RACE = Path(__file__).resolve().parents[1] / "scenarios" / "pin-race.yaml"


def test_samples_go_to_disk_and_come_back_whole(tmp_path: Path):
    recorder = Recorder(RunFolder.create(tmp_path, "run"))
    taken = [Sample(t=i / 10, values={"kmod.pins": float(i), "relay.rate": i / 3})
             for i in range(50)]
    for sample in taken:
        recorder.sample(sample)
    assert not any(isinstance(v, list) and v and isinstance(v[0], Sample)
                   for v in vars(recorder).values())  # nothing holds the samples
    assert not hasattr(recorder, "samples")
    assert recorder.series().samples == taken  # floats round-trip exactly (repr)
    size = (tmp_path / "run" / "series.csv").stat().st_size
    recorder.sample(Sample(t=5.0, values={"kmod.pins": 50.0}))
    assert (tmp_path / "run" / "series.csv").stat().st_size > size


class BackendThatCannotStart:
    """A backend whose services never come up, as when one dies before it is ready."""

    def __init__(self, *args: object) -> None:
        pass

    def prepare(self, *args: object) -> dict[str, float]:
        raise InfraError("relay exited with code -9 before it was ready (NG ping)")

    def close(self) -> None:
        pass


def test_an_infrastructure_error_leaves_verdict_error_not_incomplete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Only a rig that died leaves `incomplete`; one that lived says what stopped it."""
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    run = Run(RunRequest(PIN_RACE, overrides=("capture=off",), out=tmp_path / "run",
                         progress=False))
    run.backend_factory = BackendThatCannotStart
    with pytest.raises(InfraError, match="before it was ready"):
        run.execute()
    summary = read_summary(tmp_path / "run")
    assert (summary.verdict, summary.error) == (
        "error", "relay exited with code -9 before it was ready (NG ping)")
    assert list((tmp_path / "runtime" / "runs").glob("*.json")) == []
