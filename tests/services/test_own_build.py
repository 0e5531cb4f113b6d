"""A user's own build of rtpengine and Kamailio: the settings, the versions they report,
and `binary:` with a copy of Debian's rtpengine under another path, through a whole run."""

import json
import shutil
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

from rig.errors import UsageError
from rig.runner import RunRequest, run_ports, run_scenario
from rig.services import Site, service
from rig.services.kamailio import KamailioSettings, parse_kamailio_version
from rig.services.rtpengine import RtpengineSettings, parse_rtpengine_version
from rig.topology import Endpoints, ImageRecipe
from rig.topology.images import own_image_tag
from rig.topology.local import LocalBackend
from rig.topology.runtime import RunRecord, reserved_host

# What Debian's packages print (rtpengine on stderr), copied from bookworm.
RTPENGINE_10_5 = "Version: 10.5.3.5-1+deb12u1\n"
KAMAILIO_5_6 = ("version: kamailio 5.6.3 (x86_64/linux) \nflags: USE_TCP, USE_TLS\n"
                "id: unknown \ncompiled with gcc 12.2.0\n")


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))


def test_versions_are_read_from_what_each_service_prints():
    assert parse_rtpengine_version(RTPENGINE_10_5) == "10.5.3.5-1+deb12u1"
    assert parse_rtpengine_version("Version: 26.0.1.26-1\n") == "26.0.1.26-1"
    assert parse_kamailio_version(KAMAILIO_5_6) == "5.6.3"
    assert parse_rtpengine_version(KAMAILIO_5_6) is None
    assert parse_kamailio_version("rtpengine: unknown option\n") is None


def test_a_users_build_is_image_or_build_and_stays_in_the_repository():
    with pytest.raises(ValidationError, match="image: or build:, not both"):
        RtpengineSettings.model_validate({"image": "x", "build": {"context": "."}})
    with pytest.raises(ValidationError, match="leads out of the repository"):
        KamailioSettings.model_validate({"build": {"context": "../elsewhere"}})
    with pytest.raises(ValidationError, match="leads out of the build context"):
        RtpengineSettings.model_validate({"build": {"context": ".", "dockerfile": "../D"}})
    own = RtpengineSettings.model_validate(
        {"build": {"context": "src", "dockerfile": "ci/Dockerfile", "args": {"X": "1"}},
         "args": ["--num-threads=2"]})
    assert own.folder() == "src" and own.args == ("--num-threads=2",)
    assert own.recipe() == ImageRecipe(dockerfile="ci/Dockerfile", args={"X": "1"}, own=True)
    assert RtpengineSettings.model_validate({"image": "mine:1"}).recipe() == ImageRecipe("mine:1")
    assert RtpengineSettings().recipe() == ImageRecipe()
    assert RtpengineSettings().folder() == "containers/rtpengine"


def test_each_target_refuses_the_build_of_the_other():
    with pytest.raises(UsageError, match=r"services.rtpengine.image is for the docker target"):
        RtpengineSettings.model_validate({"image": "x"}).check_target("rtpengine", "local")
    with pytest.raises(UsageError, match=r"services.kamailio.binary is for the local target"):
        KamailioSettings.model_validate({"binary": "/x"}).check_target("kamailio", "docker")
    both = RtpengineSettings.model_validate({"binary": "/x", "image": "y"})
    both.check_target("rtpengine", "local")
    both.check_target("rtpengine", "docker")


def test_the_users_tag_follows_content_dockerfile_and_arguments(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    plain = own_image_tag("rtpengine", tmp_path, ImageRecipe(own=True))
    assert plain == own_image_tag("rtpengine", tmp_path, ImageRecipe(own=True))
    assert plain != own_image_tag("rtpengine", tmp_path, ImageRecipe(args={"A": "1"}, own=True))
    assert plain != own_image_tag("rtpengine", tmp_path,
                                  ImageRecipe(dockerfile="D", own=True))
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    assert plain != own_image_tag("rtpengine", tmp_path, ImageRecipe(own=True))


def test_args_come_after_the_rigs_own_options(tmp_path: Path):
    site = Site(Endpoints("127.0.0.9"), tmp_path)
    rtp = service("rtpengine").local_spec(
        RtpengineSettings.model_validate({"binary": "/opt/rtp/bin/rtpengine",
                                          "args": ["--num-threads=3"]}), site, tmp_path)
    assert rtp.argv[0] == "/opt/rtp/bin/rtpengine" and rtp.argv[-1] == "--num-threads=3"
    assert "--table=-1" in rtp.argv[:-1]
    kam = service("kamailio").local_spec(
        KamailioSettings.model_validate({"args": ["-n", "2"]}), site, tmp_path)
    assert kam.argv[0] == "kamailio" and kam.argv[-2:] == ["-n", "2"]


needs_rtpengine = pytest.mark.skipif(not shutil.which("rtpengine"),
                                     reason="needs rtpengine (Debian's rtpengine-daemon)")


def debian_rtpengine_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "own-build" / "bin" / "my-rtpengine"
    copy.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("rtpengine") or "", copy)
    return copy


@pytest.mark.e2e
@needs_rtpengine
def test_binary_runs_that_executable_with_the_args_and_reports_its_version(tmp_path: Path):
    copy = debian_rtpengine_copy(tmp_path)
    settings = RtpengineSettings.model_validate(
        {"binary": str(copy), "args": ["--num-threads=3"]})
    svc = service("rtpengine")
    record = RunRecord.for_this_process("own-binary")
    with reserved_host(run_ports()) as host:
        site = Site(Endpoints(host, relay_rtp_ports=(30000, 30099)), tmp_path / "site").make()
        backend = LocalBackend(site.endpoints, tmp_path, record)
        spec = backend.spec(svc, settings, site)
        version = svc.parse_version(backend.version(spec, svc.version_argv))
        with backend.start([spec]) as stack:
            process = psutil.Process(stack.services["rtpengine"].pid)
            exe, cmdline = process.exe(), process.cmdline()
    assert exe == str(copy)
    assert cmdline[-1] == "--num-threads=3"
    assert version is not None and version.startswith("10.5.")
    record.remove()


SCENARIO = """\
name: own-rtpengine
description: Debian's rtpengine under another path, driven through NG
duration: 2
settle: 0.5
seed: 3
services:
  media: rtpengine
  rtpengine: {binary: BINARY, args: ["--num-threads=2"]}
load:
  cps: 5
  max_concurrent: 10
  hold: 0.5
  outcomes: {answered: 1.0}
  rtp: {codec: PCMU, ptime: 20}
probes:
  interval: 0.25
checks:
  relay_alive: {service: media}
  calls_completed: {min_ratio: 0.5}
"""


@pytest.mark.e2e
@needs_rtpengine
def test_a_run_with_binary_records_the_version_in_summary_and_report(tmp_path: Path):
    copy = debian_rtpengine_copy(tmp_path)
    scenario = tmp_path / "own.yaml"
    scenario.write_text(SCENARIO.replace("BINARY", str(copy)))
    outcome = run_scenario(RunRequest(scenario_path=scenario, out=tmp_path / "run",
                                      progress=False))
    assert outcome.verdict == "pass", outcome.summary.checks
    version = outcome.summary.sut.versions["rtpengine"]
    assert version.startswith("10.5.")
    written = json.loads((outcome.folder / "summary.json").read_text())
    assert written["sut"]["versions"] == {"rtpengine": version}
    assert f"rtpengine {version}" in (outcome.folder / "report.html").read_text()
    events = [json.loads(line) for line in (outcome.folder / "events.jsonl").read_text()
              .splitlines()]
    assert {"service": "rtpengine", "version": version} in [
        e["data"] for e in events if e["kind"] == "service_version"]
