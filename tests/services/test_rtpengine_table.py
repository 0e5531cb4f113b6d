"""rtpengine with the kernel module: `table: N` starts it on table N and reads the table's
status file with the kmod model's parser; without the module (or without root) a run ends
with exit 3 and one line saying which."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

import rig.services.rtpengine as rtpengine_module
from rig.cli import main
from rig.errors import InfraError, UsageError
from rig.services import Site, service
from rig.services.rtpengine import RtpengineSettings, kernel_table_problem
from rig.topology import Endpoints

# the layout the real module prints, shared with the kmod status parser's tests
STATUS = (Path(__file__).parents[1] / "fixtures" / "kmod-status.txt").read_text()


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))


def loaded_module(root: Path, table: int) -> Path:
    (root / str(table)).mkdir(parents=True)
    (root / "control").write_text("")
    (root / str(table) / "status").write_text(STATUS)
    return root


def test_the_problem_says_which_precondition_is_missing(tmp_path: Path):
    assert kernel_table_problem(-1, tmp_path, 1000) is None
    assert kernel_table_problem(0, loaded_module(tmp_path / "proc", 0), 0) is None
    absent = kernel_table_problem(0, tmp_path / "none", 0) or ""
    assert absent.startswith("services.rtpengine.table 0: the rtpengine kernel module is "
                             "not loaded") and "not root" not in absent
    user = kernel_table_problem(3, tmp_path / "proc", 1000) or ""
    assert user == ("services.rtpengine.table 3: the rig is not root (uid 1000); rtpengine "
                    "opens its kernel table as root")
    both = kernel_table_problem(0, tmp_path / "none", 1000) or ""
    assert "not loaded" in both and "not root" in both and "\n" not in both


def test_table_n_starts_on_it_without_fallback_and_is_probed_like_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    site = Site(Endpoints("127.0.0.9"), tmp_path / "site")
    svc = service("rtpengine")
    default = svc.local_spec(RtpengineSettings(), site, tmp_path)
    assert "--table=-1" in default.argv and "--no-fallback" not in default.argv
    proc = loaded_module(tmp_path / "proc", 2)
    monkeypatch.setattr(rtpengine_module, "PROC_RTPENGINE", proc)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    settings = RtpengineSettings.model_validate({"table": 2})
    spec = svc.local_spec(settings, site, tmp_path)
    assert "--table=2" in spec.argv and "--no-fallback" in spec.argv

    class Running:
        pid = os.getpid()

    kmod = [p for p in svc.probes(settings, site, Running()) if p.name == "kmod"]
    assert kmod and kmod[0].read()["kmod.pins"] == 5  # what the pin checks read

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InfraError, match="not root"):
        svc.local_spec(settings, site, tmp_path)


def test_table_is_a_small_number_and_for_the_local_target():
    with pytest.raises(ValidationError):
        RtpengineSettings.model_validate({"table": -2})
    with pytest.raises(UsageError, match="table 0 needs the local target"):
        RtpengineSettings.model_validate({"table": 0}).check_target("rtpengine", "docker")


SCENARIO = """\
name: kernel-table
description: rtpengine on kernel table 0
duration: 1
services:
  media: rtpengine
  rtpengine: {table: 0}
load: {cps: 1, max_concurrent: 1, hold: 0.5}
checks:
  relay_alive: {service: media}
"""


@pytest.mark.skipif(Path("/proc/rtpengine/control").exists(),
                    reason="the rtpengine kernel module is loaded here")
def test_table_0_without_the_module_is_exit_3_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    scenario = tmp_path / "table.yaml"
    scenario.write_text(SCENARIO)
    code = main(["run", str(scenario), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1, err
    assert "services.rtpengine.table 0: the rtpengine kernel module is not loaded" in err[0]
