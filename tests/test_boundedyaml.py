"""Hostile YAML is refused with one line, quickly and in little memory, before validation."""

import tracemalloc

import pytest

from rig.boundedyaml import MAX_BYTES, MAX_DEPTH, MAX_VALUES, YamlRefused, load_bounded


def anchor_bomb(levels: int = 8, fanout: int = 10) -> str:
    """The issue's case: anchors nested `levels` deep, `fanout` aliases each (~450 bytes)."""
    lines = ["- &a0 [" + ",".join(["lol"] * fanout) + "]"]
    for n in range(1, levels + 1):
        lines.append(f"- &a{n} [" + ",".join([f"*a{n - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def refusal(text: str) -> str:
    tracemalloc.start()
    try:
        with pytest.raises(YamlRefused) as caught:
            load_bounded(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200, message
    assert peak < 20 * 2**20, f"refusing took {peak / 2**20:.0f} MiB"
    return message


@pytest.mark.timeout(20)
def test_ten_thousand_open_brackets_are_too_deep_not_a_recursion_error():
    assert refusal("[" * 10_000) == (
        f"line 1 column {MAX_DEPTH + 1}: nested too deep (allowed: at most {MAX_DEPTH} levels)")


@pytest.mark.timeout(20)
def test_deep_block_mappings_are_too_deep():
    text = "".join(" " * (2 * n) + f"k{n}:\n" for n in range(200))
    assert "nested too deep" in refusal(text)


@pytest.mark.timeout(20)
def test_the_anchor_bomb_is_refused_by_its_expanded_size():
    text = anchor_bomb()
    assert len(text) < 500
    # a4 is the first to stand for 10^5 values
    assert refusal(text) == (f"line 5 column 3: more than {MAX_VALUES} values with aliases "
                             f"expanded (allowed: at most {MAX_VALUES})")


def test_aliases_that_stay_small_are_expanded():
    assert load_bounded(anchor_bomb(levels=2, fanout=3)) == [
        ["lol"] * 3, [["lol"] * 3] * 3, [[["lol"] * 3] * 3] * 3]


def test_aliases_that_nest_past_the_depth_are_too_deep():
    # each anchor is shallow, but every alias puts the previous one a level lower
    lines = ["- &a0 [x]"] + [f"- &a{n} [*a{n - 1}]" for n in range(1, MAX_DEPTH + 2)]
    assert "nested too deep" in refusal("\n".join(lines))


def test_a_recursive_anchor_is_too_deep():
    assert "nested too deep" in refusal("&a [*a]")


def test_merge_keys_count_what_they_merge():
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    for n in range(1, 8):
        lines.append(f"a{n}: &a{n} {{<<: [" + ", ".join([f"*a{n - 1}"] * 10) + "]}")
    assert "values with aliases expanded" in refusal("\n".join(lines))


def test_nesting_at_the_limit_loads():
    value = load_bounded("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []


def test_text_past_the_size_limit_is_refused_before_parsing():
    text = "#" * MAX_BYTES + "\n[" + "[" * 10_000
    assert refusal(text) == (f"{MAX_BYTES + 2 + 10_000} bytes is too large "
                             f"(allowed: at most {MAX_BYTES} bytes)")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("when: 2026-13-45", "invalid YAML value: month must be in 1..12"),
     ("n: " + "1" * 5000, "invalid YAML value: Exceeds the limit"),
     ("a: [1, 2", "invalid YAML"),
     ("a: *nowhere", "invalid YAML: found undefined alias"),
     ("\x1f", "invalid YAML: unacceptable character #x001f")],  # found by the fuzz test
)
def test_values_pyyaml_cannot_build_are_refused(text, fragment):
    assert fragment in refusal(text)


@pytest.mark.parametrize(("text", "value"),
                         [("5e-05", 5e-05), ("1e3", 1000.0), ("-2.5E+2", -250.0),
                          ("1.0", 1.0), ("10", 10), ("e5", "e5"), ("1e", "1e")])
def test_numbers_with_an_exponent_are_numbers_as_in_yaml_1_2(text, value):
    loaded = load_bounded(text)
    assert loaded == value and type(loaded) is type(value)
