"""summary.json as a typed model: version 1 run folders still open, a summary round-trips,
and a malformed one is one clear line with exit 2."""

import json
import shutil
from pathlib import Path

import pytest

from rig.cli import main
from rig.errors import UsageError
from rig.results import RunFolder, read_summary
from rig.summary import SCHEMA_VERSION, Summary, parse_summary

# A run folder written by the rig before summary.json had version 2: the stock relay under
# pin-race (10 s, 4 burst workers, capture off), summary.json, series.csv, events.jsonl as
# that rig wrote them.
V1_RUN = Path(__file__).parent / "fixtures" / "run-v1-pin-race"


def v1_data() -> dict:
    return json.loads((V1_RUN / "summary.json").read_text())


@pytest.fixture
def v1_folder(tmp_path: Path) -> Path:
    folder = tmp_path / V1_RUN.name
    shutil.copytree(V1_RUN, folder)
    return folder


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_fixture_is_a_version_1_summary():
    assert v1_data()["schema_version"] == 1
    assert "diagnosis" not in v1_data()["checks"][0]  # v1 left the key out


def test_a_version_1_summary_reads_as_the_current_model():
    raw = v1_data()
    summary = read_summary(V1_RUN)
    assert summary.schema_version == SCHEMA_VERSION == 2
    assert (summary.run_id, summary.verdict) == (raw["run_id"], raw["verdict"])
    assert [(c.name, c.passed, c.observed, c.limit, c.diagnosis) for c in summary.checks] == [
        (c["name"], c["passed"], c["observed"], c["limit"], c.get("diagnosis"))
        for c in raw["checks"]]
    assert summary.peaks() == {k: v["peak"] for k, v in raw["counters"].items()}
    assert summary.load.calls_completed == raw["load"]["calls_completed"]
    assert summary.load.outcomes == raw["load"]["outcomes"]
    assert summary.sut.services == raw["sut"]["services"]
    assert summary.capture is not None and summary.capture.enabled is False
    assert summary.diagnosis is not None and summary.diagnosis.make_shard is not None
    assert summary.diagnosis.make_shard.verdict == raw["diagnosis"]["make_shard"]["verdict"]
    assert summary.diagnosis.projection is not None
    assert summary.diagnosis.projection.text == raw["diagnosis"]["projection"]["text"]


def test_a_version_1_folder_opens_in_rig_report(capsys, v1_folder: Path):
    code, out, err = run_cli(capsys, "report", str(v1_folder))
    assert (code, err) == (0, "")
    assert "make_shard_race" in out and "FAIL (3, race)" in out
    page = (v1_folder / "report.html").read_text()
    assert "make_shard: <b>race</b>" in page
    assert "time to the ceiling:" in page
    assert {p.name for p in (v1_folder / "plots").glob("*.png")} == {
        "pins.png", "make_shard.png", "sites.png", "load.png"}


def test_an_unfinished_version_1_run_reads_as_incomplete():
    summary = parse_summary({"schema_version": 1, "run_id": "r", "verdict": "incomplete"}, "x")
    assert (summary.verdict, summary.checks, summary.diagnosis) == ("incomplete", [], None)


def test_a_summary_round_trips_through_the_run_folder(tmp_path: Path):
    original = read_summary(V1_RUN)
    folder = RunFolder.create(tmp_path, "again")
    folder.finish(original)
    again = read_summary(folder.path)
    assert again == original
    on_disk = json.loads((folder.path / "summary.json").read_text())
    assert on_disk == original.to_json()
    assert on_disk["schema_version"] == 2 and on_disk["checks"][0]["diagnosis"] is None
    # the field names a user reads in summary.json are those of version 1
    assert set(v1_data()) <= set(on_disk)
    assert set(v1_data()["diagnosis"]["projection"]) == set(on_disk["diagnosis"]["projection"])


def test_the_model_rejects_a_key_no_writer_makes():
    with pytest.raises(UsageError, match="colour"):
        parse_summary({**read_summary(V1_RUN).to_json(), "colour": "red"}, "summary.json")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d["checks"][0].update(passed="maybe"), "checks.0.passed: Input should be"),
        (lambda d: d.update(verdict="maybe"), "verdict: Input should be"),
        (lambda d: d.update(schema_version=3), "schema_version 3: this rig reads summaries of "
                                               "version 1 to 2"),
        (lambda d: d.pop("schema_version"), "schema_version None"),
        (lambda d: d["counters"]["kmod.pins"].pop("peak"), "counters.kmod.pins.peak: Field"),
    ],
)
def test_a_malformed_summary_is_one_line_and_exit_2(capsys, v1_folder: Path, change, fragment):
    data = v1_data()
    change(data)
    (v1_folder / "summary.json").write_text(json.dumps(data))
    code, out, err = run_cli(capsys, "report", str(v1_folder))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"rig: error: {v1_folder / 'summary.json'}: ")
    assert fragment in err


@pytest.mark.parametrize(("text", "fragment"), [("{nope", "not JSON"), ("[1, 2]", "not a JSON "
                                                                                 "object")])
def test_a_summary_that_is_not_an_object_is_one_line_and_exit_2(capsys, v1_folder: Path,
                                                                 text, fragment):
    (v1_folder / "summary.json").write_text(text)
    code, _, err = run_cli(capsys, "report", str(v1_folder))
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


def test_the_typed_helpers():
    summary = Summary.model_validate(read_summary(V1_RUN).to_json())
    race = summary.check("make_shard_race")
    assert race is not None and race.diagnosis == "race"
    assert summary.check("no_such_check") is None
    assert {c.name for c in summary.failed_checks} == {
        c["name"] for c in v1_data()["checks"] if not c["passed"]}
    assert summary.name == "pin-race"
