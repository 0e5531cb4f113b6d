import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.cli import ArgumentParser
from rig.commits.cli import COMMANDS, add_parsers
from rig.commits.history import FIX_PATCH, RIG_ROOT
from rig.errors import InfraError, UsageError

from .conftest import GIT_ENV, FakeRun, git, make_repo, summary
from .test_bisect import FlakyOracle

FAILED = {"name": "pins_below_ceiling", "passed": False, "observed": 17, "limit": 16}


def parse(*argv: str) -> argparse.Namespace:
    parser = ArgumentParser(prog="rig")
    add_parsers(parser.add_subparsers(dest="command", required=True,
                                      parser_class=ArgumentParser))
    return parser.parse_args(argv)


def main(argv: list[str], run: FakeRun | None = None) -> int:
    args = parse(*argv)
    command = COMMANDS[args.command]
    return command(args) if run is None else command(args, run)  # type: ignore[operator]


def test_gate_writes_junit_and_markdown_and_fails(scenario, tmp_path, capsys):
    junit, md = tmp_path / "ci" / "junit.xml", tmp_path / "summary.md"
    md.write_text("earlier step\n")
    run = FakeRun(lambda r: summary("fail", [FAILED]))
    code = main(["gate", str(scenario), "--repeat", "2", "--junit", str(junit),
                 "--markdown", str(md), "--results", str(tmp_path / "res")], run)
    assert code == 1
    failure = next(ET.parse(junit).getroot().iter("failure"))
    assert "pins_below_ceiling" in (failure.text or "")
    assert md.read_text().startswith("earlier step\n### rig gate FAILED")
    out = capsys.readouterr()
    assert "| race[run 2] | fail |" in out.out
    assert "FAIL  race[run 1]" in out.err


def test_gate_update_then_compare_with_the_baseline(scenario, tmp_path):
    base = tmp_path / "baseline.json"
    peaks = iter([4, 4, 9])
    run = FakeRun(lambda r: summary("pass", peaks={"kmod.pins": next(peaks)}))
    assert main(["gate", str(scenario), "--baseline", str(base), "--update-baseline",
                 "--tolerance", "0.5"], run) == 0
    assert json.loads(base.read_text())["scenarios"] == {"race": {"kmod.pins": 4.0}}
    assert main(["gate", str(scenario), "--baseline", str(base)], run) == 0  # 4 <= 6
    assert main(["gate", str(scenario), "--baseline", str(base)], run) == 1  # 9 > 6


def test_gate_update_needs_a_baseline_path(scenario):
    with pytest.raises(UsageError, match="--update-baseline needs --baseline"):
        main(["gate", str(scenario), "--update-baseline"], FakeRun(lambda r: summary("pass")))


def test_bisect_prints_the_first_bad_commit(tmp_path, scenario, capsys):
    repo = make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(8)])
    out = tmp_path / "out"
    code = main(["bisect", str(scenario), "--repo", str(repo.root), "--good", "HEAD~7",
                 "--bad", "HEAD", "--out", str(out), "--no-progress"],
                FakeRun(FlakyOracle(culprit=5, p=0.6)))
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"first bad commit: {repo.shas[5]} commit 5"
    assert (out / "bisect.png").is_file() and (out / "bisect.json").is_file()


def test_bisect_needs_good_and_bad(scenario, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("bisect", str(scenario), "--repo", ".")
    assert exit_info.value.code == 2
    assert "--good" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("decide", "code"),
    [
        (lambda r: summary("pass"), 0),
        (lambda r: summary("fail"), 1),
        (lambda r: (_ for _ in ()).throw(InfraError("no relay")), 125),
    ],
)
def test_bisect_step_runs_the_current_checkout(tmp_path, scenario, monkeypatch, decide, code):
    monkeypatch.chdir(tmp_path)
    run = FakeRun(decide)
    assert main(["bisect-step", str(scenario)], run) == code
    assert run.requests[0].repo == tmp_path


def test_sweep_prints_a_line_per_commit(tmp_path, scenario, capsys):
    repo = make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(3)])
    run = FakeRun(lambda r: summary("pass", peaks={"kmod.pins": 2}))
    assert main(["sweep", "HEAD~2..HEAD", str(scenario), "--repo", str(repo.root),
                 "--out", str(tmp_path / "sw")], run) == 0
    out = capsys.readouterr().out
    assert f"{repo.shas[1][:10]} pass  kmod.pins=2.0  commit 1" in out
    assert "ceiling: none" in out


@pytest.mark.skipif(not (RIG_ROOT / FIX_PATCH).is_file(), reason="model SUT not in this tree")
def test_demo_history_command(tmp_path, capsys):
    assert main(["demo-history", str(tmp_path / "demo"), "--commits", "4",
                 "--culprit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split(maxsplit=2)[2].startswith("relay: grow the bufferpool")
    assert "(4 commits)" in out


def test_demo_history_named_errors(tmp_path):
    with pytest.raises(UsageError, match="--culprit must be in 1..3"):
        main(["demo-history", str(tmp_path / "demo"), "--commits", "4", "--culprit", "4"])
    assert not Path(tmp_path / "demo").exists()


STEP_SCRIPT = '''
import argparse, pathlib, sys
from rig.commits.cli import cmd_bisect_step
from rig.errors import InfraError
from rig.runner import RunOutcome

def run(request):
    version = int((request.repo / "v.txt").read_text())
    if version == 3:
        raise InfraError("relay would not build")
    verdict = "fail" if version >= 5 else "pass"
    return RunOutcome(request.results_root / "run", verdict, {"verdict": verdict})

args = argparse.Namespace(scenario=pathlib.Path(sys.argv[1]), overrides=[], patches=[],
                          results=pathlib.Path(sys.argv[2]), repo=None, target=None,
                          no_progress=True, allow_outside_sources=False)
sys.exit(cmd_bisect_step(args, run))
'''


def test_bisect_step_drives_plain_git_bisect_run(tmp_path, scenario):
    repo = make_repo(tmp_path / "repo", [{"v.txt": f"{i}\n"} for i in range(8)])
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(RIG_ROOT)}
    git(repo.root, "bisect", "start", "HEAD", "HEAD~7")
    done = subprocess.run(
        ["git", "bisect", "run", sys.executable, str(script), str(scenario),
         str(tmp_path / "results")],
        cwd=repo.root, env={**env, **GIT_ENV}, capture_output=True, text=True, timeout=60,
        check=False)
    assert f"{repo.shas[5]} is the first bad commit" in done.stdout, done.stdout + done.stderr
    # git starts at the middle, commit 3, which would not build: exit 125, git skips it
    assert "rig bisect-step: skip: InfraError: relay would not build" in done.stderr
    assert f"git bisect skip {repo.shas[3]}" in git(repo.root, "bisect", "log")
