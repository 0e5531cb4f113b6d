"""A user's own rtpengine on the docker target: `image:` (an image the test builds under a
name of its own, which the rig does not build) and `build:` (a throwaway git repository
whose Dockerfile is the test's: its first commit builds and runs, its second breaks the
build, which a bisect skips and a run ends with exit 3 and the build log's last lines)."""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rig.cli import main
from rig.commits.bisect import BisectArgs, run_at
from rig.runner import RunRequest, run_ports, run_scenario
from rig.services import Site, service
from rig.services.rtpengine import RtpengineSettings
from rig.topology import Endpoints
from rig.topology.docker import RUN_LABEL, DockerBackend
from rig.topology.images import DEFAULT_BASE, build_image
from rig.topology.runtime import RunRecord, reserved_host

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
OWN_IMAGE = "rig-issue9-own-rtpengine:test"

SCENARIO = """\
name: own-build
description: the user's rtpengine image, built from their repository
target: docker
duration: 2
settle: 0.5
seed: 3
services:
  media: rtpengine
  rtpengine:
    build: {context: ".", dockerfile: docker/Dockerfile, args: {FROM_IMAGE: FROM}}
    args: ["--num-threads=2"]
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
GOOD_DOCKERFILE = """\
ARG FROM_IMAGE
FROM ${FROM_IMAGE}
COPY VERSION /usr/share/own-build-version
"""
BROKEN_STEP = 'RUN echo "daemon/main.c:42: error: expected ;" && exit 7\n'


@pytest.fixture(scope="module")
def rig_rtpengine(docker_client: Any) -> str:
    """The rig's rtpengine image (Debian's 10.5), which the user's images start from."""
    return build_image(docker_client, "rtpengine", REPO / "containers" / "rtpengine",
                       progress=lambda line: None).tag


@pytest.fixture
def own_image(docker_client: Any, rig_rtpengine: str) -> Iterator[str]:
    docker_client.images.build(path=str(REPO / "containers" / "rtpengine"), tag=OWN_IMAGE,
                               buildargs={"BASE": DEFAULT_BASE}, network_mode="host", rm=True)
    yield OWN_IMAGE
    docker_client.images.remove(OWN_IMAGE)


def test_image_runs_the_users_image_unbuilt_and_reports_its_version(
    docker_client: Any, own_image: str, runtime: Path
):
    svc = service("rtpengine")
    settings = RtpengineSettings.model_validate({"image": own_image, "args": ["--num-threads=2"]})
    run_id = "issue9-own-image"
    record = RunRecord.for_this_process(run_id)
    with reserved_host(run_ports()) as host:
        site = Site(Endpoints(host, relay_rtp_ports=(30000, 30099)), runtime / "site").make()
        backend = DockerBackend(site.endpoints, runtime, record, client=docker_client)
        timing = backend.prepare({"rtpengine": runtime / "unused"},
                                 {"rtpengine": settings.recipe()})
        spec = backend.spec(svc, settings, site)
        assert spec.image == own_image and spec.argv[-1] == "--num-threads=2"
        version = svc.parse_version(backend.version(spec, svc.version_argv))
        with backend.start([spec]) as stack:
            counters = svc.probes(settings, site, stack.services["rtpengine"])[0].read()
    build_log = (runtime / "build.log").read_text()
    assert "building" not in build_log  # the rig did not build it
    assert timing["images_s"] >= 0 and "rtpengine.sessions_own" in counters
    assert version is not None and version.startswith("10.5.")
    assert docker_client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={run_id}"}) == []
    record.remove()


def test_image_that_is_not_there_is_exit_3_and_one_line(
    tmp_path: Path, runtime: Path, capsys: pytest.CaptureFixture[str]
):
    scenario = tmp_path / "missing.yaml"
    scenario.write_text(SCENARIO.replace(
        '    build: {context: ".", dockerfile: docker/Dockerfile, args: {FROM_IMAGE: FROM}}\n',
        "    image: rig-issue9-no-such-image:none\n"))
    assert main(["run", str(scenario), "--out", str(tmp_path / "run"), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "image rig-issue9-no-such-image:none not found" in err[0] and len(err) == 1


def git(repo: Path, *argv: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def user_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A throwaway repository: commit 1 builds, commit 2 breaks the build."""
    repo = tmp_path / "rtpengine-src"
    (repo / "docker").mkdir(parents=True)
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "config", "user.email", "dev@example.invalid")
    git(repo, "config", "user.name", "dev")
    (repo / "VERSION").write_text("1\n")
    (repo / "docker" / "Dockerfile").write_text(GOOD_DOCKERFILE)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "builds")
    good = git(repo, "rev-parse", "HEAD")
    (repo / "VERSION").write_text("2\n")
    (repo / "docker" / "Dockerfile").write_text(GOOD_DOCKERFILE + BROKEN_STEP)
    git(repo, "commit", "-qam", "breaks the build")
    return repo, good, git(repo, "rev-parse", "HEAD")


def test_build_at_each_commit_a_broken_one_is_skipped_and_exit_3(
    docker_client: Any, rig_rtpengine: str, user_repo: tuple[Path, str, str], tmp_path: Path,
    runtime: Path, capsys: pytest.CaptureFixture[str],
):
    repo, good, broken = user_repo
    scenario = tmp_path / "own-build.yaml"
    scenario.write_text(SCENARIO.replace("FROM}", rig_rtpengine + "}"))
    args = BisectArgs(repo, good, broken, scenario)
    verdicts = {}
    for sha in (good, broken):
        git(repo, "checkout", "-q", sha)
        verdicts[sha] = run_at(run_scenario, args, repo, tmp_path / "runs")
    assert verdicts[good][0] == "pass", verdicts[good]
    verdict, folder, detail = verdicts[broken]
    assert verdict == "skip" and folder is None
    assert "rtpengine: image build failed" in detail and "returned a non-zero code: 7" in detail

    code = main(["run", str(scenario), "--repo", str(repo), "--out", str(tmp_path / "broken"),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "image build failed" in err.splitlines()[0]
    assert "daemon/main.c:42: error: expected ;" in err  # the build log's last lines

    git(repo, "checkout", "-q", good)
    outcome = run_scenario(RunRequest(scenario_path=scenario, repo=repo, progress=False,
                                      out=tmp_path / "again"))
    assert outcome.summary.sut.versions["rtpengine"].startswith("10.5.")
    built = [line for line in (outcome.folder / "logs" / "build.log").read_text().splitlines()
             if line.startswith("building")]
    assert built == []  # the same content's image was built once, by the first run
