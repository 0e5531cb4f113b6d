"""Fuzzing the scenario loader and `--set`: whatever the text, the only error is a one-line
ScenarioError (hypothesis, bounded and derandomized by the `rig` profile in conftest.py)."""

from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from rig.errors import ScenarioError
from rig.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
PIN_RACE = (ROOT / "scenarios" / "pin-race.yaml").read_text()
KEYS = ["name", "duration", "settle", "seed", "topology", "target", "services", "load",
        "bursts", "probes", "projection", "capture", "checks", "targets",
        "relay", "kmod", "rtpengine", "kamailio", "media", "patches", "source", "port_range",
        "cps", "max_concurrent", "hold", "outcomes", "answered", "vanish", "rtp", "codec",
        "ptime", "workers", "every", "count", "calls_completed", "min_ratio", "relay_alive",
        "pins_below_ceiling", "ceiling", "back_to_baseline", "counters", "within", "off"]
SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(KEYS + ["off", "on", "../x", "/tmp"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
                      max_leaves=30)
MAPPINGS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)


def loads_or_refuses(path: Path, overrides: tuple[str, ...] = ()) -> None:
    try:
        load_scenario(path, overrides)
    except ScenarioError as err:
        message = str(err)
        assert "\n" not in message and len(message) < 1000, message


@given(MAPPINGS)
def test_any_mapping_of_scenario_keys(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    loads_or_refuses(path)


@given(st.text(max_size=300))
@example("[" * 10_000)
@example("a: &a [*a]")
@example("checks: !!python/object:os.system {}")
@example("duration: 2026-13-45\n")
@example("\x00\ufeff: \udcff")
def test_any_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(text, errors="surrogateescape")
    loads_or_refuses(path)


@given(st.integers(0, len(PIN_RACE)), st.text(max_size=8), st.integers(0, 8))
def test_the_shipped_scenario_with_a_few_characters_changed(tmp_path_factory, at, insert,
                                                            cut):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(PIN_RACE[:at] + insert + PIN_RACE[at + cut:])
    loads_or_refuses(path)


OVERRIDE_KEYS = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4).map(".".join)


@given(st.lists(st.one_of(
    st.tuples(OVERRIDE_KEYS, VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True)
                                        .strip().removesuffix("..."))).map("=".join),
    st.text(max_size=40)), max_size=4))
@example(["description=" + "[" * 10_000])
@example(["load=" + "q" * 5000, ".=.", "=", "a..b=1"])
def test_any_set_values(tmp_path_factory, overrides):
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(PIN_RACE)
    loads_or_refuses(path, tuple(overrides))
