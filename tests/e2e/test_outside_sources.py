"""A service source outside the repository: refused without --allow-outside-sources, and with
it copied into the run's temporary folder like any other, which goes with the run."""

import shutil
import tempfile
from pathlib import Path

import pytest

from rig.cli import main

ROOT = Path(__file__).resolve().parents[2]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"
SHORT = ["--set", "duration=2", "--set", "settle=0.5", "--set", "bursts=null",
         "--set", "checks={relay_alive: {}}", "--set", "capture=off", "--no-progress"]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def rig(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run's temporary folders go here, so what is left of them can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def outside_kmod(tmp_path: Path) -> Path:
    """A copy of the kmod model outside the repository that says where it runs from."""
    kmod = tmp_path / "elsewhere" / "kmod"
    shutil.copytree(ROOT / "containers" / "kmod", kmod)
    source = kmod / "kmod.py"
    source.write_text(source.read_text().replace(
        "\nimport argparse\n", "\nimport argparse\nprint('running from', __file__, "
        "file=__import__('sys').stderr, flush=True)\n", 1))
    return kmod


def test_an_absolute_source_is_refused_without_the_option(capsys, tmp_path: Path, own_tmp):
    kmod = outside_kmod(tmp_path)
    code, err = rig(capsys, "run", str(PIN_RACE), *SHORT, "--out", str(tmp_path / "run"),
                    "--set", f"services.kmod.source={kmod}")
    assert code == 2
    assert err.strip().endswith("is an absolute path (allowed: a folder inside the repository "
                                f"{ROOT}, or --allow-outside-sources)"), err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and list(own_tmp.iterdir()) == []


def test_an_absolute_source_is_copied_into_the_run_and_removed_with_it(
        capsys, tmp_path: Path, own_tmp):
    kmod = outside_kmod(tmp_path)
    code, err = rig(capsys, "run", str(PIN_RACE), *SHORT, "--out", str(tmp_path / "run"),
                    "--set", f"services.kmod.source={kmod}", "--allow-outside-sources")
    assert code == 0, err
    log = (tmp_path / "run" / "logs" / "kmod.log").read_text()
    ran_from = Path(log.split("running from ", 1)[1].split()[0])
    assert ran_from.is_relative_to(own_tmp) and ran_from.name == "kmod.py"
    assert list(own_tmp.iterdir()) == []  # removed with the run
    assert (kmod / "kmod.py").is_file()  # the user's folder is untouched


def test_a_relative_source_that_climbs_out_is_refused_before_anything_starts(
        capsys, tmp_path: Path, own_tmp):
    code, err = rig(capsys, "run", str(PIN_RACE), *SHORT, "--out", str(tmp_path / "run"),
                    "--set", "services.kmod.source=../../x")
    assert code == 2
    assert "services.kmod.source: '../../x' leads out of the repository" in err
    assert not (tmp_path / "run").exists() and list(own_tmp.iterdir()) == []
