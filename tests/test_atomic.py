"""The one atomic writer: a write that fails or is killed half-way leaves the old file (or
none) and no temporary file; a whole write replaces the file in one step."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rig.atomic import (
    atomic_open,
    savefig_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

ROOT = Path(__file__).resolve().parents[1]


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Unserialisable:
    pass


def test_json_that_fails_half_way_leaves_the_old_file(tmp_path: Path):
    target = write_json_atomic(tmp_path / "summary.json", {"verdict": "incomplete"})
    data = {"first": list(range(1000)), "later": Unserialisable()}
    with pytest.raises(TypeError):
        write_json_atomic(target, data)
    assert json.loads(target.read_text()) == {"verdict": "incomplete"}
    assert only_files(tmp_path) == ["summary.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_stream_that_fails_after_writing_leaves_no_file(tmp_path: Path, error):
    with pytest.raises(type(error)), atomic_open(tmp_path / "matrix.txt") as f:
        f.write("row\n" * 10_000)
        f.flush()
        raise error
    assert only_files(tmp_path) == []


def test_a_plot_that_fails_half_way_leaves_the_old_plot(tmp_path: Path):
    class HalfFigure:
        def savefig(self, path, **kwargs):
            Path(path).write_bytes(b"\x89PNG half")
            raise RuntimeError("renderer died")

    target = write_bytes_atomic(tmp_path / "counters.png", b"old")
    with pytest.raises(RuntimeError):
        savefig_atomic(HalfFigure(), target, dpi=100)
    assert target.read_bytes() == b"old"
    assert only_files(tmp_path) == ["counters.png"]


def test_a_real_figure_is_written_in_the_format_of_its_name(tmp_path: Path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    png = savefig_atomic(fig, tmp_path / "plots" / "a.png", dpi=50)
    svg = savefig_atomic(fig, tmp_path / "plots" / "a.svg")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in svg.read_bytes()
    assert only_files(tmp_path / "plots") == ["a.png", "a.svg"]


def test_a_whole_write_replaces_the_file_with_normal_permissions(tmp_path: Path):
    target = write_text_atomic(tmp_path / "report.html", "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_only_whole_files_are_opened():
    with pytest.raises(ValueError, match="mode 'a'"), atomic_open(Path("x"), "a"):
        pass


KILLED_WRITER = """
import sys
from pathlib import Path
from rig.atomic import atomic_open

with atomic_open(Path(sys.argv[1])) as f:
    f.write("new " * 100_000)
    f.flush()
    print("half", flush=True)
    sys.stdin.readline()  # killed here, half-way through the file
    f.write("end")
"""


def test_a_writer_killed_half_way_leaves_the_old_file(tmp_path: Path):
    target = write_text_atomic(tmp_path / "sweep.json", "old")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert writer.stdout.readline() == "half\n"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        writer.kill()
        writer.stdin.close()
        writer.stdout.close()
    assert target.read_text() == "old"
    leftovers = [name for name in only_files(tmp_path) if name != "sweep.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".sweep.json.")  # hidden, apart
    # the next whole write of the same file removes what the killed writer left
    write_text_atomic(target, "next")
    assert only_files(tmp_path) == ["sweep.json"] and target.read_text() == "next"


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path):
    live = tmp_path / f".series.json.{os.getpid()}-0badcafe.tmp"
    live.write_text("being written")
    write_text_atomic(tmp_path / "series.json", "whole")
    assert live.exists()
