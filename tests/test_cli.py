"""Exit codes and one-line errors of the `rig` command (no services are started here)."""

from pathlib import Path

import pytest

from rig.cli import main

ROOT = Path(__file__).resolve().parents[1]
PIN_RACE = ROOT / "scenarios" / "pin-race.yaml"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits by itself
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_accepts_the_shipped_scenario(capsys):
    code, out, _ = run_cli(capsys, "check", str(PIN_RACE))
    assert code == 0
    assert "pin-race" in out


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--set", "load.cps=-3"], "load.cps"),
        (["--set", "nonsense"], "nonsense"),
        (["--set", "services.relay.colour=red"], "services.relay.colour"),
    ],
)
def test_bad_overrides_are_one_line_exit_2(capsys, extra, fragment):
    code, _, err = run_cli(capsys, "check", str(PIN_RACE), *extra)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_key_in_file_names_file_and_key(capsys, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(PIN_RACE.read_text().replace("seed: 1", "seed: 1\nsede: 2"))
    code, _, err = run_cli(capsys, "check", str(bad))
    assert code == 2
    assert "bad.yaml" in err and "sede" in err


def test_missing_scenario_file_is_bad_input(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "check", str(tmp_path / "none.yaml"))
    assert code == 2
    assert "none.yaml" in err


def test_run_with_a_missing_patch_fails_before_starting_anything(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "run", str(PIN_RACE), "--patch", str(tmp_path / "x.patch"),
                           "--out", str(tmp_path / "run"))
    assert code == 2
    assert "x.patch" in err
    assert not (tmp_path / "run").exists()


def test_report_of_a_folder_that_is_no_run(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2
    assert "not a run folder" in err


def test_usage_errors_exit_2(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and "scenario" in err


def test_gc_on_a_clean_machine(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path))
    code, out, _ = run_cli(capsys, "gc")
    assert code == 0
    assert out.startswith("removed 0 dead run(s)")


def test_images_of_an_unknown_service_names_it_and_the_known_ones(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, _, err = run_cli(capsys, "images", "kamailo")
    assert code == 2
    assert "kamailo" in err and "kamailio" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "set"])
def test_ten_thousand_nested_brackets_are_one_line_exit_2(capsys, tmp_path: Path, where):
    deep = "[" * 10_000
    scenario = tmp_path / "deep.yaml"
    scenario.write_text(PIN_RACE.read_text() + (f"\ndescription: {deep}\n" if where == "file"
                                                 else ""))
    extra = ["--set", f"description={deep}"] if where == "set" else []
    code, _, err = run_cli(capsys, "check", str(scenario), *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "nested too deep" in err
    assert len(err) < 300


CONNTRACK_RTP = ROOT / "scenarios" / "conntrack-rtp.yaml"


def test_a_namespace_run_without_root_or_netfilter_is_one_line_exit_3(
        capsys, tmp_path: Path, monkeypatch):
    from rig.topology import netns

    monkeypatch.setattr(netns, "missing_capability",
                        lambda: "needs root (network namespaces and nftables)")
    code, _, err = run_cli(capsys, "run", str(CONNTRACK_RTP), "--out", str(tmp_path / "run"))
    assert code == 3
    assert err.strip().splitlines() == [
        "rig: infrastructure error: network namespace for the run: needs root "
        "(network namespaces and nftables)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--target", "docker"], "netns: the run's namespace holds local processes only"),
    (["--set", "netns.ruleset=containers/relay/none.nft"],
     "netns.ruleset: no such file containers/relay/none.nft"),
    (["--set", "netns.ruleset=../../etc/nftables.conf"],
     "netns.ruleset: ../../etc/nftables.conf leads out of the repository"),
])
def test_a_namespace_run_it_cannot_make_is_bad_input(capsys, tmp_path: Path, extra, fragment):
    code, _, err = run_cli(capsys, "run", str(CONNTRACK_RTP), *extra,
                           "--out", str(tmp_path / "run"))
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_run_across_hosts_through_kamailio_is_refused_before_anything_starts(
        capsys, tmp_path: Path):
    code, _, err = run_cli(
        capsys, "run", str(ROOT / "scenarios" / "pin-race-kamailio.yaml"), "--out",
        str(tmp_path / "run"), "--cluster", "198.18.0.1:6379",
        "--set", "targets.host=198.18.0.1", "--set", "targets.allow=[198.18.0.0/24]")
    assert code == 2
    assert err.strip().splitlines() == [
        "rig: error: --cluster with targets.host 198.18.0.1 needs topology: model (Kamailio "
        "sends every call to its one callee, on the SUT host)"]
    assert not (tmp_path / "run").exists()
