"""hostile-mix end to end on the local backend: scanners and malformed SIP beside real calls
through Kamailio. The shipped config turns them away and nothing leaks; the config that
offers scanners' INVITEs to the relay before its 403 leaks one session per such INVITE, and
the leaked sessions are counted and named."""

import shutil
from pathlib import Path

import pytest

from rig.runner import RunOutcome, RunRequest, run_scenario
from rig.summary import CheckEntry, HostileNumbers

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_MIX = ROOT / "scenarios" / "hostile-mix.yaml"
OFFER_SCANNERS = ROOT / "scenarios" / "patches" / "kamailio-offer-scanner-invites.patch"
CALL_BEFORE_SDP = ROOT / "scenarios" / "patches" / "relay-call-before-sdp.patch"
SHORT = ("duration=4",)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in
                ("kamailio", "kamcmd", "rtpengine", "svmap", "svwar", "svcrack")),
        reason="needs kamailio, rtpengine and sipvicious (Debian packages)",
    ),
]


def run(tmp_path: Path, name: str, *overrides: str, broken: bool = False,
        patch: Path = OFFER_SCANNERS) -> RunOutcome:
    return run_scenario(RunRequest(
        scenario_path=HOSTILE_MIX,
        overrides=(*SHORT, *overrides),
        patches=(patch,) if broken else (),
        out=tmp_path / name,
        progress=False,
    ))


def check(outcome: RunOutcome, name: str) -> CheckEntry:
    found = outcome.summary.check(name)
    assert found is not None, name
    return found


def hostile_of(outcome: RunOutcome) -> HostileNumbers:
    assert outcome.summary.hostile is not None
    return outcome.summary.hostile


def test_the_shipped_config_turns_hostile_traffic_away_and_nothing_leaks(tmp_path: Path):
    outcome = run(tmp_path, "stock")
    failed = outcome.summary.failed_checks
    assert outcome.verdict == "pass", failed
    hostile = hostile_of(outcome)
    sent, answers = hostile.sent, hostile.answers
    assert hostile.target == "proxy" and len(sent) == 10 and min(sent.values()) > 0
    assert answers["scanner_invite"] == {"403": sent["scanner_invite"]}  # screened
    assert answers["bad_content_length"] == {"400": sent["bad_content_length"]}  # sanity
    assert answers["sdp_many_media"] == {"513": sent["sdp_many_media"]}  # too large
    assert answers["sdp_port_zero"] == {"488": sent["sdp_port_zero"]}  # the callee
    assert answers["truncated"] == {"none": sent["truncated"]}
    for tool in ("svmap", "svwar", "svcrack"):
        assert hostile.tools[tool].runs >= 1, tool
    war, scan = hostile.tools["svwar"].answers, hostile.tools["svmap"].answers
    assert set(war) <= {"403"} and set(scan) <= {"403"}
    assert sum(war.values()) + sum(scan.values()) > 0
    report = (outcome.folder / "report.html").read_text()
    assert "<h3>Hostile traffic</h3>" in report and "<td>scanner_invite</td>" in report
    events = (outcome.folder / "events.jsonl").read_text()
    assert '"hostile_start"' in events and '"hostile_stop"' in events


def test_offering_scanners_invites_to_the_relay_leaks_a_session_for_each(tmp_path: Path):
    outcome = run(tmp_path, "broken", broken=True)
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    leaked = hostile_of(outcome).sent["scanner_invite"]
    orphans = check(outcome, "no_orphan_sessions")
    assert not orphans.passed and orphans.observed == leaked
    assert "scanner-invite" in orphans.detail
    baseline = check(outcome, "back_to_baseline")
    assert not baseline.passed and baseline.observed == f"media.sessions {leaked}"
    assert check(outcome, "calls_completed").passed and check(outcome, "proxy_alive").passed


@pytest.mark.slow
def test_hostile_traffic_at_the_uas_beside_the_model_relay(tmp_path: Path):
    outcome = run(tmp_path, "uas", "topology=model", "services.media=relay",
                  "hostile.target=uas", "checks.proxy_alive=null",
                  "checks.back_to_baseline.counters=[media.sessions]")
    failed = outcome.summary.failed_checks
    assert outcome.verdict == "pass", failed
    answers = hostile_of(outcome).answers
    for kind in ("sdp_no_connection", "sdp_hostname", "sdp_port_zero", "sdp_many_media"):
        assert set(answers[kind]) == {"488"}, kind  # the rig's callee refuses them


@pytest.mark.slow
def test_the_model_relay_behind_kamailio_refuses_broken_offers_without_a_trace(tmp_path: Path):
    outcome = run(tmp_path, "relay", "services.media=relay")
    assert outcome.verdict == "pass", outcome.summary.failed_checks
    answers = hostile_of(outcome).answers
    assert set(answers["sdp_no_connection"]) == set(answers["sdp_hostname"]) == {"503"}


def test_a_relay_that_reserves_ports_before_parsing_leaks_the_offers_it_refuses(
        tmp_path: Path):
    outcome = run(tmp_path, "relay-broken", "services.media=relay", broken=True,
                  patch=CALL_BEFORE_SDP)
    assert outcome.verdict == "fail"
    sent = hostile_of(outcome).sent
    orphans = check(outcome, "no_orphan_sessions")
    # every offer the relay refuses in its parser: no c= line, a host name
    assert orphans.observed == sent["sdp_no_connection"] + sent["sdp_hostname"]
    assert "sdp-no-connection" in orphans.detail or "sdp-hostname" in orphans.detail
    assert check(outcome, "relay_alive").passed and check(outcome, "calls_completed").passed
