"""Scenario files: valid ones load into frozen models; every kind of bad input is one line."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rig.checks import CHECKS
from rig.errors import ScenarioError
from rig.scenario import SCHEMA_PATH, json_schema, load_scenario, write_json_schema

MINIMAL = """\
name: tiny
duration: 5
checks:
  relay_alive: {}
"""

FULL = """\
name: pin-race
description: "bursts against the pool"
duration: 30
settle: 3
seed: 7
services:
  kmod: {source: containers/kmod}
  relay: {source: containers/relay, workers: 4, shard_size: 65536}
  patches: [relay-recheck-after-pin.patch]
load:
  cps: 10
  max_concurrent: 200
  hold: 2.0
  outcomes: {answered: 0.7, busy: 0.1, cancel: 0.1, no_answer: 0.1}
  no_answer_timeout: 2.0
  rtp: {codec: PCMA, ptime: 20}
bursts: {first_at: 1.0, every: 2.0, count: 10, workers: 8, streams_per_worker: 4, hold: 10.0}
probes: {interval: 0.1}
checks:
  pins_below_ceiling: {ceiling: 16}
  no_phantom_shards: {tolerance: 0, persist: 2}
  pins_flat_after_warmup: {warmup: 5.0, tolerance: 0}
  relay_alive: {}
  back_to_baseline: {counters: [relay.sessions, relay.live_allocations], within: 3.0}
"""

SHIPPED = Path(__file__).resolve().parents[1] / "scenarios"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, overrides)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


# -- valid files -------------------------------------------------------------------------


def test_full_scenario_loads_with_every_value(tmp_path):
    s = load_scenario(write(tmp_path, FULL))
    assert (s.name, s.duration, s.settle, s.seed) == ("pin-race", 30, 3, 7)
    assert s.services.relay.shard_size == 65536
    assert s.services.patches == ("relay-recheck-after-pin.patch",)
    assert dict(s.load.outcomes) == {"answered": 0.7, "busy": 0.1, "cancel": 0.1,
                                     "no_answer": 0.1, "vanish": 0.0}
    assert s.load.rtp is not None and s.load.rtp.codec == "PCMA"
    assert s.bursts is not None and s.bursts.count == 10
    assert dict(s.checks.items())["pins_below_ceiling"] == {"ceiling": 16, "counter": "kmod.pins"}


def test_minimal_scenario_gets_defaults(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL))
    assert s.bursts is None
    assert s.services.relay.workers == 4
    assert s.checks.names() == ["calls_completed", "relay_alive", "services_alive"]
    assert dict(s.checks.items())["calls_completed"] == {"min_ratio": 0.95}
    assert dict(s.checks.items())["services_alive"] == {}


@pytest.mark.parametrize(("overrides", "expected"), [
    ((), {"min_ratio": 0.95}),
    (("checks.calls_completed.min_ratio=0.5",), {"min_ratio": 0.5}),
    (("checks.calls_completed=off",), None),
    (("checks.calls_completed=null",), None),
    (("load.cps=0",), None),  # places no call: nothing to complete
    (("load.cps=0", "bursts={}"), {"min_ratio": 0.95}),
])
def test_every_scenario_that_places_calls_checks_that_they_complete(tmp_path, overrides,
                                                                    expected):
    s = load_scenario(write(tmp_path, MINIMAL), overrides)
    assert dict(s.checks.items()).get("calls_completed") == expected


def test_calls_completed_off_in_a_file(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL + "  calls_completed: off\n"))
    assert s.checks.names() == ["relay_alive", "services_alive"]
    s = load_scenario(write(tmp_path, MINIMAL + "  services_alive: off\n"))
    assert s.checks.names() == ["calls_completed", "relay_alive"]


def test_scenario_models_are_frozen(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        s.duration = 10  # type: ignore[misc]


def test_to_dict_is_json_ready_and_leaves_out_checks_that_are_off(tmp_path):
    s = load_scenario(write(tmp_path, FULL), ["checks.relay_alive=null"])
    data = json.loads(json.dumps(s.to_dict()))
    assert data["name"] == "pin-race"
    assert "relay_alive" not in data["checks"]
    assert data["checks"]["back_to_baseline"]["counters"] == ["relay.sessions",
                                                              "relay.live_allocations"]


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    assert load_scenario(path).name == path.stem


# -- overrides ---------------------------------------------------------------------------


def test_overrides_are_applied_before_validation(tmp_path):
    s = load_scenario(write(tmp_path, FULL), [
        "load.cps=50",
        "checks.pins_below_ceiling.ceiling=32",
        "services.patches=[a.patch, b.patch]",
        "load.rtp=null",
        "bursts.count=",
    ])
    assert s.load.cps == 50
    assert dict(s.checks.items())["pins_below_ceiling"]["ceiling"] == 32
    assert s.services.patches == ("a.patch", "b.patch")
    assert s.load.rtp is None
    assert s.bursts is not None and s.bursts.count is None


def test_override_can_create_a_missing_section(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL), ["bursts.workers=16"])
    assert s.bursts is not None and s.bursts.workers == 16


def test_override_can_turn_on_a_check(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL), ["checks.calls_completed.min_ratio=0.9"])
    assert s.checks.names() == ["calls_completed", "relay_alive", "services_alive"]


@pytest.mark.parametrize("override", ["load.cps", "=5", "load..cps=5", ".cps=1"])
def test_bad_override_syntax(tmp_path, override):
    message = error_of(write(tmp_path, MINIMAL), (override,))
    assert "expected KEY.PATH=VALUE" in message


def test_override_into_a_scalar(tmp_path):
    assert error_of(write(tmp_path, FULL), ("load.cps.x=1",)) == (
        "--set load.cps.x: load.cps is not a mapping")


def test_override_value_that_is_not_yaml(tmp_path):
    message = error_of(write(tmp_path, MINIMAL), ("services.patches=[a, b",))
    assert message.startswith("--set services.patches: ")
    assert "invalid YAML" in message


# -- files that do not load --------------------------------------------------------------


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == "no such file"


def test_yaml_syntax_error_names_the_line(tmp_path):
    message = error_of(write(tmp_path, "name: x\nduration: [5\nchecks: {}\n"))
    assert message.startswith("line ")
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path):
    message = error_of(write(tmp_path, "- a\n- b\n"))
    assert message.startswith("(top level): must be a mapping")
    assert "allowed: name, description, duration" in message


def test_empty_file_says_what_is_required(tmp_path):
    message = error_of(write(tmp_path, ""))
    assert message.startswith("name: required key is missing")
    assert "more error(s)" in message


# -- one line per kind of bad value ------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("load.cpx=5", "load.cpx: unknown key (allowed: cps, max_concurrent, hold, outcomes, "
                       "no_answer_timeout, rtp, processes)"),
        ("load.processes=0", "load.processes: 0 is not a process count (allowed: 1..16 or "
                             "auto)"),
        ("load.cps=abc", "load.cps: expected a valid number, got 'abc' "
                         "(allowed: 0 <= value <= 5000)"),
        ("load.cps=6000", "load.cps: 6000 is out of range (allowed: 0 <= value <= 5000)"),
        ("duration=0", "duration: 0 is out of range (allowed: 0 < value <= 3600)"),
        ("duration=true", "duration: expected a valid number, got True "
                          "(allowed: 0 < value <= 3600)"),
        ("services.relay.workers=65", "services.relay.workers: 65 is out of range "
                                      "(allowed: 1 <= value <= 64)"),
        ("services.relay.shard_size=5000", "services.relay.shard_size: 5000 is out of range "
                                           "(allowed: 4096 <= value <= 16777216, "
                                           "a multiple of 4096)"),
        ("name=Pin_Race", "name: 'Pin_Race' is not allowed (allowed: text matching "
                          "^[a-z0-9-]+$)"),
        ("load.rtp.codec=G729", "load.rtp.codec: 'G729' is not allowed "
                                "(allowed: 'PCMU' or 'PCMA')"),
        ("load.outcomes.busy=0.5", "load.outcomes: shares sum to 1.4 "
                                   "(allowed: shares that sum to 1)"),
        ("load=5", "load: expected a mapping, got 5"),
        ("checks.nope={}", "checks.nope: unknown key (allowed: " + ", ".join(sorted(CHECKS))
                           + ")"),
        ("checks.pins_below_ceiling.ceiling=high",
         "checks.pins_below_ceiling.ceiling: expected a valid number, got 'high' "
         "(allowed: 0 < value)"),
        ("checks.relay_alive.colour=red", "checks.relay_alive.colour: unknown key "
                                          "(allowed: service)"),
        ("checks.back_to_baseline={counters: [], within: 1}",
         "checks.back_to_baseline.counters: [] is out of range (allowed: 1 <= length)"),
        ("checks={relay_alive: null, calls_completed: off, services_alive: off}",
         "checks: no check is on; a run that checks nothing cannot pass"),
        ("netns.udp_timeout=0", "netns.udp_timeout: 0 is out of range "
                                "(allowed: 1 <= value <= 3600)"),
        ("netns.rules=x", "netns.rules: unknown key (allowed: ruleset, udp_timeout)"),
        ("probes.slab=[nf conntrack]", "probes.slab.0: 'nf conntrack' is not allowed "
                                       "(allowed: text matching ^[A-Za-z0-9_.:-]{1,64}$)"),
    ],
)
def test_bad_values_give_one_line_naming_key_and_allowed(tmp_path, override, expected):
    assert error_of(write(tmp_path, FULL if "outcomes" in override else MINIMAL),
                    (override,)) == expected


def test_targets_allow_takes_addresses_and_networks_only(tmp_path):
    path = write(tmp_path, MINIMAL)
    allowed = load_scenario(path, ("targets.allow=[192.0.2.10, 198.51.100.0/24]",))
    assert allowed.targets.allow == ("192.0.2.10", "198.51.100.0/24")
    assert load_scenario(path).targets.allow == ()
    assert error_of(path, ("targets.allow=[10.0.0.1, sut.example.com]",)) == (
        "targets.allow: 'sut.example.com' is not an IP address or network")


def test_allow_destinations_is_the_old_name_of_targets_allow(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_scenario(path, ("allow_destinations=[192.0.2.10]",)).targets.allow == (
        "192.0.2.10",)
    assert error_of(path, ("allow_destinations=[192.0.2.10]", "targets.allow=[192.0.2.11]")
                    ) == ("(top level): allow_destinations and targets.allow both given (allowed: "
                          "targets.allow only; allow_destinations is its old name)")


def test_targets_host_must_be_an_allowed_address(tmp_path):
    path = write(tmp_path, MINIMAL)
    sut = load_scenario(path, ("targets.host=198.18.0.1", "targets.allow=[198.18.0.0/24]"))
    assert sut.targets.host == "198.18.0.1"
    assert load_scenario(path, ("targets.host=127.0.0.5",)).targets.host == "127.0.0.5"
    assert error_of(path, ("targets.host=198.18.0.1",)) == (
        "targets: host 198.18.0.1 is neither loopback nor in targets.allow (allowed: list "
        "it, e.g. allow: [198.18.0.1])")
    assert error_of(path, ("targets.host=sut.example.com",)) == (
        "targets: host 'sut.example.com' is not an IP address (the rig does no DNS lookups)")
    assert error_of(path, ("targets.host=198.18.0.1", "targets.allow=[198.18.0.1]",
                           "netns={}")) == (
        "(top level): targets.host 198.18.0.1 with netns: the run's namespace holds only loopback "
        "(allowed: one of the two)")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("hostile={target: proxy}", "(top level): hostile.target: proxy needs topology: "
                                    "kamailio (allowed: uas, or null)"),
        ("hostile.malformed.kinds=[truncated, poison]",
         "hostile.malformed.kinds.1: 'poison' is not allowed (allowed: 'truncated', "),
        ("hostile.svwar={extensions: 1-5000}", "hostile: svwar.extensions names 5000 values "
                                               "(allowed: at most 1000 per run)"),
        ("hostile.svcrack={passwords: abc}", "hostile.svcrack.passwords: 'abc' is not allowed "
                                             "(allowed: text matching "),
        ("hostile.malformed.rate=0", "hostile.malformed.rate: 0 is out of range "
                                     "(allowed: 0 < value <= 1000)"),
    ],
)
def test_bad_hostile_sections_give_one_line(tmp_path, override, expected):
    assert error_of(write(tmp_path, MINIMAL), (override,)).startswith(expected)


def test_a_hostile_section_gets_every_malformed_kind_and_no_tool_by_default(tmp_path):
    from rig.wire.malformed import KINDS

    hostile = load_scenario(write(tmp_path, MINIMAL), ("hostile={}",)).hostile
    assert hostile is not None and hostile.malformed is not None
    assert hostile.malformed.kinds == KINDS
    assert (hostile.target, hostile.svmap, hostile.svwar, hostile.svcrack) == (
        None, None, None, None)

def test_a_namespace_and_slab_caches_are_off_unless_asked_for(tmp_path):
    plain = load_scenario(write(tmp_path, MINIMAL))
    assert plain.netns is None and plain.probes.slab == ()
    asked = load_scenario(write(tmp_path, MINIMAL), ("netns={}", "probes.slab=[nf_conntrack]"))
    assert asked.netns is not None
    assert asked.netns.ruleset == "containers/relay/conntrack.nft"
    assert asked.netns.udp_timeout is None and asked.probes.slab == ("nf_conntrack",)


def test_missing_check_parameter(tmp_path):
    message = error_of(write(tmp_path, MINIMAL), ("checks.pins_below_ceiling={}",))
    assert message == "checks.pins_below_ceiling.ceiling: required key is missing " \
                      "(allowed: 0 < value)"


# -- the JSON Schema ---------------------------------------------------------------------


def test_committed_schema_matches_the_models(tmp_path):
    fresh = write_json_schema(tmp_path / "scenario.schema.json")
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(fresh.read_text()), (
        "rig/scenario.schema.json is stale: run `python -m rig.scenario`")


def test_schema_takes_off_for_the_checks_that_are_on_by_default():
    checks = json_schema()["$defs"]["Checks"]["properties"]
    for name in ("calls_completed", "services_alive"):
        assert {"const": "off"} in checks[name]["anyOf"]
        assert {"const": False} in checks[name]["anyOf"]
    assert {"const": "off"} not in checks["relay_alive"]["anyOf"]


def test_schema_knows_every_check_and_forbids_unknown_keys():
    schema = json_schema()
    assert schema["additionalProperties"] is False
    checks_ref = schema["properties"]["checks"]["$ref"].split("/")[-1]
    assert set(schema["$defs"][checks_ref]["properties"]) == set(CHECKS)


# -- hostile input: bounded, and quoted short ---------------------------------------------


def test_ten_thousand_nested_brackets_in_a_file(tmp_path):
    message = error_of(write(tmp_path, MINIMAL + "description: " + "[" * 10_000 + "\n"))
    assert message == "line 5 column 45: nested too deep (allowed: at most 32 levels)"


def test_ten_thousand_nested_brackets_in_a_set_value(tmp_path):
    message = error_of(write(tmp_path, MINIMAL), ("description=" + "[" * 10_000,))
    assert message.startswith("--set description: line 1 column ")
    assert "nested too deep" in message


def test_the_anchor_bomb_in_a_scenario(tmp_path):
    bomb = "\n".join(
        ["description:", "  - &a0 [" + ",".join(["lol"] * 10) + "]"]
        + [f"  - &a{n} [" + ",".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)])
    message = error_of(write(tmp_path, MINIMAL + bomb + "\n"))
    assert "values with aliases expanded" in message and len(message) < 200


def test_a_file_past_the_size_limit(tmp_path):
    message = error_of(write(tmp_path, MINIMAL + "#" * 300_000 + "\n"))
    assert message.startswith("larger than ") and "bytes" in message


def test_a_set_key_nested_too_deep(tmp_path):
    message = error_of(write(tmp_path, MINIMAL), (".".join(["a"] * 1000) + "=1",))
    assert "nested too deep" in message and len(message) < 200


@pytest.mark.parametrize(
    "override",
    ["name=" + "X" * 5000,
     "description=[" + ", ".join(str(n) for n in range(5000)) + "]",
     "load.rtp.codec=" + "G" * 5000,
     "load=" + "q" * 5000,
     "load." + "k" * 5000 + "=1"],
)
def test_errors_quote_at_most_about_a_hundred_characters_of_a_value(tmp_path, override):
    message = error_of(write(tmp_path, MINIMAL), (override,))
    assert len(message) < 300, message
