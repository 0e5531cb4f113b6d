"""rig.wire stays pure: no module in it imports socket, asyncio, threads or processes."""

import ast
from pathlib import Path

import pytest

import rig.wire

IO_MODULES = {"socket", "asyncio", "threading", "multiprocessing", "selectors", "select",
              "subprocess", "concurrent", "time"}
WIRE = sorted(Path(rig.wire.__file__).parent.glob("*.py"))


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_imported_roots_sees_plain_from_and_nested_imports() -> None:
    source = "import socket\nfrom asyncio import sleep\ndef f():\n    import threading.local\n"
    assert imported_roots(source) == {"socket", "asyncio", "threading"}


@pytest.mark.parametrize("path", WIRE, ids=lambda p: p.name)
def test_wire_module_imports_no_io(path: Path) -> None:
    assert imported_roots(path.read_text()) & IO_MODULES == set()
