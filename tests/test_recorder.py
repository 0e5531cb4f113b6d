"""The run's recorder streams samples to series.csv and keeps none of them in memory."""

from pathlib import Path

from rig.results import RunFolder
from rig.runner import Recorder
from rig.series import Sample


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
