"""YAML a user hands the rig (scenario files, `--set` values), read with limits.

PyYAML composes nested collections recursively (10,000 `[` end in a RecursionError) and
shares the node of an anchor between its aliases, so a few hundred bytes of aliases can
stand for 10^8 values that validation, error messages and summary.json would expand. So the
text is bounded in size, the composer in depth, and the document, with every alias expanded,
in depth and in number of values; all of it is checked before any Python object is built.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_VALUES = 100_000


class YamlRefused(Exception):
    """The text is not YAML, or is YAML past a limit; the message is one line."""


def load_bounded(text: str) -> Any:
    """The Python value of one YAML document, or YamlRefused naming the problem."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise YamlRefused(f"{size} bytes is too large (allowed: at most {MAX_BYTES} bytes)")
    try:
        loader = _DepthBoundLoader(text)  # refuses unprintable characters already
    except yaml.YAMLError as err:
        raise YamlRefused(yaml_problem(err)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, 1, {})
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise YamlRefused(yaml_problem(err)) from None
    except (ValueError, OverflowError) as err:
        # PyYAML's constructors let these through for scalars that match a tag's pattern
        # but not its range: 2026-13-45 (a timestamp), an int past Python's digit limit.
        raise YamlRefused(f"invalid YAML value: {str(err)[:100]}") from None
    finally:
        loader.dispose()


def yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{where(mark)}invalid YAML: {problem}"


def where(mark: Any) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""


def too_deep(mark: Any) -> YamlRefused:
    return YamlRefused(f"{where(mark)}nested too deep (allowed: at most {MAX_DEPTH} levels)")


class _DepthBoundLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses to go deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self._depth >= MAX_DEPTH:
            raise too_deep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


# YAML 1.1 (PyYAML) reads 5e-05 and 1e3 as strings: it wants a dot in the mantissa and a
# sign on the exponent. A user who writes `jitter: 5e-05` or `--set bursts.jitter=5e-05`
# means a number, as YAML 1.2 and every other parser do.
_DepthBoundLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _measure(node: Node, level: int, seen: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, height) of `node` with its aliases expanded; refuses past the limits.

    Memoised per node, so shared (aliased) nodes cost one visit; `level` bounds the
    recursion, which also stops a recursive anchor (`&a [*a]`)."""
    known = seen.get(id(node))
    if known is not None:
        if level + known[1] - 1 > MAX_DEPTH:
            raise too_deep(node.start_mark)
        return known
    if level > MAX_DEPTH:
        raise too_deep(node.start_mark)
    if isinstance(node, SequenceNode):
        children: list[Node] = list(node.value)
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    values, height = 1, 0
    for child in children:
        child_values, child_height = _measure(child, level + 1, seen)
        values += child_values
        height = max(height, child_height)
        if values > MAX_VALUES:
            raise YamlRefused(f"{where(node.start_mark)}more than {MAX_VALUES} values with aliases "
                              f"expanded (allowed: at most {MAX_VALUES})")
    seen[id(node)] = (values, height + 1)
    return values, height + 1
