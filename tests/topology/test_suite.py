"""services.<name>.suite: which Debian suite a service's image is built on (the tag, the base,
the error when the base is missing), and why the local target refuses another suite."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rig.cli import main
from rig.errors import InfraError, ScenarioError, UsageError
from rig.scenario import load_scenario
from rig.services.kamailio import KamailioSettings
from rig.services.rtpengine import RtpengineSettings
from rig.topology import ImageRecipe
from rig.topology.images import build_images, image_tag, require_base
from rig.topology.suite import SUITES, host_suite, local_suite_problem, parse_host_suite

SESSION_LEAK = Path(__file__).resolve().parents[2] / "scenarios" / "session-leak.yaml"

# /etc/os-release and /etc/debian_version as each suite's base image has them
BOOKWORM = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n'
            "ID=debian\n", "12.11\n")
TRIXIE = ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n',
          "13.8\n")
SID = ('PRETTY_NAME="Debian GNU/Linux forky/sid"\nVERSION_CODENAME=forky\nID=debian\n',
       "forky/sid\n")
UBUNTU = ('NAME="Ubuntu"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n', "trixie/sid\n")


@pytest.mark.parametrize(("files", "suite"), [(BOOKWORM, "bookworm"), (TRIXIE, "trixie"),
                                              (SID, "sid"), (UBUNTU, None), (("", ""), None)])
def test_the_hosts_suite_comes_from_os_release_and_sid_from_debian_version(files, suite):
    assert parse_host_suite(*files) == suite


def test_the_hosts_suite_is_read_from_its_files(tmp_path: Path):
    (tmp_path / "os-release").write_text(TRIXIE[0])
    (tmp_path / "debian_version").write_text(TRIXIE[1])
    assert host_suite(tmp_path / "os-release", tmp_path / "debian_version") == "trixie"
    assert host_suite(tmp_path / "none", tmp_path / "none") is None


def test_the_tag_carries_content_and_suite(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    tags = {suite: image_tag("rtpengine", tmp_path, suite) for suite in SUITES}
    assert len(set(tags.values())) == len(SUITES)
    assert tags["sid"].startswith("rig-rtpengine:") and tags["sid"].endswith("-sid")
    assert image_tag("rtpengine", tmp_path) == tags["bookworm"]
    (tmp_path / "extra.conf").write_text("x")
    assert image_tag("rtpengine", tmp_path, "sid") != tags["sid"]


class FakeClient:
    """Images the engine has, and the builds asked of it."""

    def __init__(self, have: set[str]) -> None:
        from docker.errors import ImageNotFound

        self.have, self.builds = set(have), []
        self.not_found = ImageNotFound
        self.images, self.api = self, self

    def get(self, name: str) -> str:
        if name not in self.have:
            raise self.not_found(name)
        return name

    def build(self, **kwargs: Any) -> list[dict[str, str]]:
        self.builds.append(kwargs)
        self.have.add(kwargs["tag"])
        return [{"stream": "Successfully built\n"}]


def service_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rtpengine"
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE=rig-base:bookworm\nFROM ${BASE}\n")
    return folder


def test_the_recipes_suite_picks_the_base_and_the_tag(tmp_path: Path):
    folder = service_folder(tmp_path)
    client = FakeClient({"rig-base:bookworm", "rig-base:sid"})
    images = build_images(client, {"rtpengine": folder}, progress=lambda line: None,
                          recipes={"rtpengine": ImageRecipe(suite="sid")})
    assert images["rtpengine"].tag == image_tag("rtpengine", folder, "sid")
    assert [b["buildargs"] for b in client.builds] == [{"BASE": "rig-base:sid"}]
    again = build_images(client, {"rtpengine": folder}, progress=lambda line: None,
                         recipes={"rtpengine": ImageRecipe(suite="bookworm")})
    assert again["rtpengine"].built and client.builds[-1]["buildargs"] == {
        "BASE": "rig-base:bookworm"}  # another suite is another image


def test_a_missing_base_says_how_to_make_it(tmp_path: Path):
    client = FakeClient({"rig-base:bookworm"})
    with pytest.raises(InfraError) as caught:
        build_images(client, {"rtpengine": service_folder(tmp_path)},
                     progress=lambda line: None, recipes={"rtpengine": ImageRecipe(suite="trixie")})
    message = str(caught.value)
    assert "\n" not in message
    assert "rig-base:trixie not found" in message
    assert "SUITE=trixie containers/base/make-base.sh" in message
    assert client.builds == []
    require_base(client, "debian:trixie-slim", "trixie")  # a registry's: the engine pulls it


def test_the_suite_is_one_of_debians_three():
    assert RtpengineSettings(suite="trixie").recipe() == ImageRecipe(suite="trixie")
    assert KamailioSettings().recipe() == ImageRecipe(suite="bookworm")
    with pytest.raises(ValidationError, match="'bookworm', 'trixie' or 'sid'"):
        RtpengineSettings.model_validate({"suite": "buster"})


@pytest.mark.parametrize("own", [{"binary": "/opt/rtpengine"}, {"image": "mine:1"},
                                 {"build": {"context": "."}}])
def test_a_suite_and_an_own_build_exclude_each_other(own: dict[str, Any]):
    with pytest.raises(ValidationError, match=f"give suite: or {next(iter(own))}:, not both"):
        RtpengineSettings.model_validate({**own, "suite": "sid"})
    RtpengineSettings.model_validate(own)  # the default suite is no choice


def test_a_bad_suite_is_one_line_naming_the_allowed_ones(capsys):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(SESSION_LEAK, ["services.kamailio.suite=buster"])
    assert "services.kamailio.suite" in str(caught.value) and "sid" in str(caught.value)
    assert main(["check", str(SESSION_LEAK), "--set", "services.rtpengine.suite=buster"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "services.rtpengine.suite" in err and "trixie" in err


def test_rig_images_refuses_an_unknown_suite(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "containers").mkdir()
    assert main(["images", "--suite", "buster"]) == 2
    err = capsys.readouterr().err
    assert "--suite 'buster'" in err and "bookworm, trixie, sid" in err


def test_the_local_target_runs_the_hosts_suite_only_when_one_is_asked_for():
    trixie = RtpengineSettings(suite="trixie")
    trixie.check_local_suite("rtpengine", "local", lambda: "trixie")
    trixie.check_local_suite("rtpengine", "docker", lambda: "bookworm")
    with pytest.raises(UsageError, match=r"suite trixie: the local target runs this host's "
                                         r"rtpengine, from Debian bookworm"):
        trixie.check_local_suite("rtpengine", "local", lambda: "bookworm")
    RtpengineSettings().check_local_suite("rtpengine", "local", lambda: "sid")  # default
    assert "not Debian" in str(local_suite_problem("kamailio", "sid", None))


def test_rig_run_with_another_suite_on_the_local_target_exits_2(capsys, tmp_path: Path,
                                                                monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    other = next(suite for suite in SUITES if suite != host_suite())
    code = main(["run", str(SESSION_LEAK), "--target", "local", "--no-progress",
                 "--set", f"services.kamailio.suite={other}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert f"services.kamailio.suite {other}: the local target runs" in err
    assert "--target docker" in err
