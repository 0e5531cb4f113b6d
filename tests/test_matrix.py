"""The matrix on plain values and a fake runner, plus the pure parts of topology wiring that
the matrix varies (scenario keys, the stack plan, where the rig's calls go)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rig.cli import main
from rig.errors import ScenarioError, UsageError
from rig.matrix import (
    Axis,
    Cell,
    all_passed,
    cell_result,
    cells,
    matrix_table,
    parse_axis,
    run_matrix,
)
from rig.plan import StackPlan, before_later_samples, stack_plan, targets_for
from rig.probes.media import MediaSessionsProbe, call_ids
from rig.runner import RunRequest
from rig.scenario import load_scenario
from rig.services import Site, service
from rig.summary import Summary
from rig.topology import Endpoints

REPO = Path(__file__).resolve().parents[1]
SESSION_LEAK = REPO / "scenarios" / "session-leak.yaml"
PIN_RACE = REPO / "scenarios" / "pin-race.yaml"

# -- axes and cells ----------------------------------------------------------------------


def test_parse_axis():
    assert parse_axis("services.kamailio.shm_manager=qm,fm,tlsf") == Axis(
        "services.kamailio.shm_manager", ("qm", "fm", "tlsf"))


@pytest.mark.parametrize("text, fragment", [
    ("services.kamailio.shm_manager", "expected KEY.PATH=V1,V2"),
    ("=qm", "expected KEY.PATH=V1,V2"),
    ("load.cps=10,,20", "empty value"),
    ("load.cps=10,10", "listed twice"),
])
def test_bad_axes_are_usage_errors(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_axis(text)


def test_cells_are_the_product_first_axis_slowest():
    got = cells([Axis("services.kamailio.shm_manager", ("qm", "tlsf")),
                 Axis("load.cps", ("10", "20"))])
    assert [c.name for c in got] == ["shm_manager-qm_cps-10", "shm_manager-qm_cps-20",
                                     "shm_manager-tlsf_cps-10", "shm_manager-tlsf_cps-20"]
    assert got[1].overrides == ("services.kamailio.shm_manager=qm", "load.cps=20")


def test_keys_with_the_same_last_segment_are_named_by_as_many_as_tell_them_apart():
    got = cells([Axis("services.rtpengine.suite", ("bookworm", "sid")),
                 Axis("services.kamailio.suite", ("trixie",)), Axis("load.cps", ("5",))])
    assert [c.name for c in got] == ["rtpengine.suite-bookworm_kamailio.suite-trixie_cps-5",
                                     "rtpengine.suite-sid_kamailio.suite-trixie_cps-5"]
    deep = cells([Axis("a.b.c", ("1",)), Axis("x.b.c", ("2",)), Axis("b.c", ("3",))])
    assert deep[0].name == "a.b.c-1_x.b.c-2_b.c-3"


def test_cells_need_an_axis_and_distinct_keys():
    with pytest.raises(UsageError, match="at least one"):
        cells([])
    with pytest.raises(UsageError, match="twice"):
        cells([Axis("load.cps", ("1",)), Axis("load.cps", ("2",))])


def summary(verdict: str, cps: float, shm: list[float], passed: bool = True) -> dict[str, Any]:
    return {
        "schema_version": 2,
        "run_id": "cell",
        "verdict": verdict,
        "load": {"cps": cps, "calls_completed": 100},
        "counters": {"kamailio.shm_used": {"first": shm[0], "peak": shm[1], "last": shm[2]}},
        "checks": [{"name": "no_orphan_sessions", "passed": passed,
                    "observed": 0 if passed else 4, "limit": 0}],
    }


def test_cell_result_and_table():
    cell = Cell("shm_manager-fm", ("services.kamailio.shm_manager=fm",))
    result = cell_result(cell, Summary.model_validate(
        summary("fail", 19.5, [2048, 4096, 3072], passed=False)))
    assert result.cps == 19.5
    assert result.counters == (("media.sessions", None, None), ("kamailio.shm_used", 4096, 3072))
    assert result.checks == (("no_orphan_sessions", False, 4),)
    text = matrix_table([result])
    assert "shm_manager-fm" in text and "FAIL (4)" in text
    assert " 4 " in text and " 3 " in text  # KiB
    assert not all_passed([result]) and not all_passed([])


def test_a_cell_without_kamailio_shows_dashes():
    result = cell_result(Cell("x", ()), Summary(run_id="x", verdict="pass"))
    assert result.counters == (("media.sessions", None, None), ("kamailio.shm_used", None, None))
    assert "-" in matrix_table([result])
    assert "versions" not in matrix_table([result])  # no service reported one


def test_a_matrix_over_the_suite_shows_each_cells_versions():
    def cell(suite: str, rtpengine: str, sessions: tuple[float, float, float]) -> Any:
        data = summary("pass", 20.0, [1.0, 2.0, 1.0])
        data["sut"] = {"versions": {"rtpengine": rtpengine, "kamailio": "5.6.3"}}
        first, peak, last = sessions
        data["counters"]["media.sessions"] = {"first": first, "peak": peak, "last": last}
        return cell_result(Cell(f"suite-{suite}", (f"services.rtpengine.suite={suite}",)),
                           Summary.model_validate(data))

    results = [cell("bookworm", "10.5.3.5-1+deb12u1", (0, 31, 0)),
               cell("sid", "26.0.1.26+0~mr26.0.1.26", (0, 29, 2))]
    assert results[1].versions == (("rtpengine", "26.0.1.26+0~mr26.0.1.26"),
                                   ("kamailio", "5.6.3"))
    lines = matrix_table(results).splitlines()
    assert "versions" in lines[0] and "sessions peak" in lines[0]
    sid = next(line for line in lines if line.startswith("suite-sid"))
    assert "rtpengine 26.0.1.26+0~mr26.0.1.26, kamailio 5.6.3" in sid
    assert sid.split()[-5:-3] == ["29", "2"]  # sessions peak, last, then shm peak, last, check


@dataclass
class FakeOutcome:
    folder: Path
    summary: Summary


def fake_runs(verdicts: dict[str, str]):
    """A run function that writes a minimal run folder; the verdict is chosen per manager."""
    seen: list[RunRequest] = []

    def run(request: RunRequest) -> FakeOutcome:
        seen.append(request)
        manager = request.overrides[-1].split("=")[1]
        data = summary(verdicts[manager], 20.0, [1.0, 2.0, 1.0], verdicts[manager] == "pass")
        data.update(run_id=request.out.name, scenario={"name": "session-leak"},
                    sut={"commit": "x", "patches": []}, bursts={}, timing={}, environment={})
        request.out.mkdir(parents=True)
        (request.out / "summary.json").write_text(json.dumps(data))
        return FakeOutcome(request.out, Summary.model_validate(data))

    return run, seen


def test_run_matrix_runs_each_cell_and_writes_one_report(tmp_path: Path):
    run, seen = fake_runs({"qm": "pass", "fm": "pass", "tlsf": "fail"})
    request = RunRequest(SESSION_LEAK, overrides=("load.cps=5",))
    outcome = run_matrix(request, [parse_axis("services.kamailio.shm_manager=qm,fm,tlsf")],
                         tmp_path / "m", run=run)
    assert [r.overrides for r in seen] == [
        ("load.cps=5", f"services.kamailio.shm_manager={m}") for m in ("qm", "fm", "tlsf")]
    assert [r.verdict for r in outcome.results] == ["pass", "pass", "fail"]
    assert outcome.exit_code == 1
    assert outcome.report.is_file() and "shm_manager-tlsf" in outcome.report.read_text()
    saved = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert saved["status"] == "complete" and len(saved["cells"]) == 3


def test_a_matrix_stopped_midway_says_incomplete_and_keeps_the_cells_run(tmp_path: Path):
    run, _ = fake_runs({"qm": "pass", "fm": "pass"})  # tlsf: a KeyError, the matrix stops
    with pytest.raises(KeyError):
        run_matrix(RunRequest(SESSION_LEAK), [parse_axis(
            "services.kamailio.shm_manager=qm,fm,tlsf")], tmp_path / "m", run=run)
    saved = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert saved["status"] == "incomplete"
    assert saved["planned"] == [f"shm_manager-{m}" for m in ("qm", "fm", "tlsf")]
    assert [c["name"] for c in saved["cells"]] == ["shm_manager-qm", "shm_manager-fm"]
    assert not (tmp_path / "m" / "matrix.txt").exists()
    assert [p.name for p in (tmp_path / "m").glob(".*")] == []  # no temporary file left


def test_run_matrix_passes_when_every_cell_passes(tmp_path: Path):
    run, _ = fake_runs({"qm": "pass", "tlsf": "pass"})
    outcome = run_matrix(RunRequest(SESSION_LEAK), [parse_axis(
        "services.kamailio.shm_manager=qm,tlsf")], tmp_path / "m", run=run)
    assert outcome.exit_code == 0


def test_a_bad_cell_value_stops_the_matrix_before_any_run(tmp_path: Path):
    run, seen = fake_runs({})
    with pytest.raises(ScenarioError, match="services.kamailio.shm_manager: 'dl' is not allowed"):
        run_matrix(RunRequest(SESSION_LEAK), [parse_axis(
            "services.kamailio.shm_manager=qm,dl")], tmp_path / "m", run=run)
    assert seen == []


def test_cli_matrix_bad_axis_exits_2(capsys):
    assert main(["matrix", str(SESSION_LEAK), "--axis", "nonsense"]) == 2
    assert "expected KEY.PATH=V1,V2" in capsys.readouterr().err


# -- the scenario keys and the stack they make --------------------------------------------


def test_session_leak_goes_through_kamailio_to_rtpengine():
    scenario = load_scenario(SESSION_LEAK)
    plan = stack_plan(scenario)
    assert plan.services == ("rtpengine", "kamailio")
    assert stack_plan(load_scenario(SESSION_LEAK, ["services.media=relay"])).services == (
        "kmod", "relay", "kamailio")
    assert stack_plan(load_scenario(PIN_RACE)).services == ("kmod", "relay")


@pytest.mark.parametrize("override, fragment", [
    ("topology=sbc", "topology: 'sbc' is not allowed (allowed: 'model' or 'kamailio')"),
    ("services.media=freeswitch", "services.media: 'freeswitch' is not allowed"),
    ("services.kamailio.shm_mb=4", "services.kamailio.shm_mb: 4 is out of range"),
    ("services.kamailio.bogus=1", "services.kamailio.bogus: unknown key"),
])
def test_bad_topology_keys_are_one_line_errors(override, fragment):
    with pytest.raises(ScenarioError) as err:
        load_scenario(SESSION_LEAK, [override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_through_kamailio_the_rig_sends_no_ng():
    endpoints = Endpoints("127.0.0.9")
    proxied = targets_for(endpoints, StackPlan(topology="kamailio", media="rtpengine"))
    assert proxied.proxy == ("127.0.0.9", 5070) and proxied.ng is None
    direct = targets_for(endpoints, StackPlan())
    assert direct.proxy is None and direct.ng == ("127.0.0.9", 2223)


def test_specs_follow_the_plan(tmp_path: Path):
    site = Site(Endpoints("127.0.0.9"), tmp_path / "run")
    plan = StackPlan(topology="kamailio", media="relay")
    sources = {name: tmp_path / name for name in plan.services}
    specs = [service(name).local_spec(plan.settings_of(name), site, sources[name])
             for name in plan.services]
    assert [s.name for s in specs] == ["kmod", "relay", "kamailio"]
    assert str(tmp_path / "kamailio" / "kamailio.cfg") in specs[2].argv
    assert str(site.state) in specs[1].argv  # the relay pins through kmod's folder
    images = {name: f"rig-{name}:x" for name in plan.services}
    assert [service(name).container_spec(plan.settings_of(name), site, images[name]).image
            for name in plan.services] == list(images.values())


def test_unknown_plan_values_are_usage_errors():
    with pytest.raises(UsageError, match="allowed: relay, rtpengine"):
        StackPlan(media="janus")


# -- orphan sessions: when the driver's word is final ------------------------------------


def test_call_ids_accepts_bytes_and_text():
    assert call_ids({"calls": [b"a@x", "b@x"]}) == {"a@x", "b@x"}
    assert call_ids({"result": "ok"}) == set()


def test_orphans_are_listed_sessions_of_calls_the_driver_saw_end(monkeypatch):
    import rig.probes.ng

    reply = {"result": "ok", "calls": [b"ended@x", b"live@x"]}
    monkeypatch.setattr(rig.probes.ng.NgRequester, "request", lambda self, message: reply)
    probe = MediaSessionsProbe("127.0.0.1", 2223, lambda: {"ended@x", "other@x"})
    assert probe.read() == {"media.sessions": 2.0, "media.orphan_sessions": 1.0}
    assert probe.orphan_ids == {"ended@x"}


@pytest.mark.parametrize("now", [0.0123456, 0.01235, 3.0, 7.99999, 12.00004])
def test_load_start_is_before_every_later_sample(now):
    start = before_later_samples(now)
    later = [now, now + 1e-7, now + 4e-5, now + 1e-3]
    assert all(round(t, 4) > start for t in later)
    assert now - start < 3e-4


@pytest.mark.parametrize("axis", ["load.cps=" + "5," * 5000, "x" * 5000, "load.cps=1,," * 2000])
def test_an_axis_error_quotes_a_long_value_short(axis: str):
    with pytest.raises(UsageError) as caught:
        parse_axis(axis)
    assert len(str(caught.value)) < 300
