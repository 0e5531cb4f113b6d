"""The pin ceiling: a pool that keeps growing aborts like the daemon at kmod's MAX_SHM_AREAS.

Also: the patches apply with `git apply`, alone and in the allowed combinations.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

GROWER = """
import resource, sys, threading, time
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the abort must leave no core file
sys.path.insert(0, sys.argv[1])
from bufferpool import BufferPool
from kmodclient import KmodClient

def log(level, text):
    thread = threading.current_thread().name
    print(f"[{time.time():.6f}] {level}: [{thread}] {text}", file=sys.stderr, flush=True)

pool = BufferPool(4096, KmodClient(sys.argv[2], "ceiling"), log)
for _ in range(100):
    pool.alloc(4096, "stream_stats")
print("no abort after 100 shards", flush=True)
"""
CRIT = re.compile(
    r"^\[\d+\.\d{6}\] CRIT: \[MainThread\] Failed to pin shared kernel memory: "
    r"Argument list too long \(E2BIG\)$",
    re.MULTILINE,
)


def grow_until_abort(relay_dir: Path, kmod: Any) -> tuple[int, str]:
    """Run the growing pool as its own process; its exit status and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", GROWER, str(relay_dir), str(kmod.dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(("patches", "ceiling"), [((), 16), (("kmod-max-shm-areas-32.patch",), 32)])
def test_growing_pool_aborts_at_the_pin_ceiling(
    patches: tuple[str, ...], ceiling: int, patched_tree: Any, start_kmod: Any
) -> None:
    tree = patched_tree(*patches)
    kmod = start_kmod(tree)
    status, stderr = grow_until_abort(tree / "containers" / "relay", kmod)
    assert status == -signal.SIGABRT, stderr[-2000:]
    assert CRIT.search(stderr), stderr[-2000:]
    assert len(re.findall(r"INFO: \[MainThread\] make_shard num=\d+ ", stderr)) == ceiling
    assert f"make_shard num={ceiling} full={ceiling - 1} space=0" in stderr
    released = kmod.wait_for_status("ceiling", "Memory pins", 0)
    assert released["Memory"] == 0 and released["Opencount"] == 0


@pytest.mark.parametrize(
    "patches",
    [
        ("relay-recheck-after-pin.patch",),
        ("relay-reserve-slot-first.patch",),
        ("kmod-max-shm-areas-32.patch",),
        ("relay-recheck-after-pin.patch", "kmod-max-shm-areas-32.patch"),
        ("relay-reserve-slot-first.patch", "kmod-max-shm-areas-32.patch"),
    ],
)
def test_patches_apply_to_a_clean_tree(patches: tuple[str, ...], patched_tree: Any) -> None:
    stock, patched = patched_tree(), patched_tree(*patches)
    changed = {
        path.relative_to(patched)
        for path in patched.rglob("*.py")
        if path.read_bytes() != (stock / path.relative_to(patched)).read_bytes()
    }
    expected = set()
    for name in patches:
        folder = "kmod/kmod.py" if name.startswith("kmod") else "relay/bufferpool.py"
        expected.add(Path("containers") / folder)
    assert changed == expected
    if "kmod-max-shm-areas-32.patch" in patches:
        kmod_text = (patched / "containers" / "kmod" / "kmod.py").read_text()
        assert "\nMAX_SHM_AREAS = 32\n" in kmod_text


def test_fix_patches_are_alternatives(patched_tree: Any) -> None:
    root = patched_tree("relay-recheck-after-pin.patch")
    other = root / "scenarios" / "patches" / "relay-reserve-slot-first.patch"
    done = subprocess.run(
        ["git", "apply", "--check", str(other)], cwd=root, capture_output=True, text=True
    )
    assert done.returncode != 0, "both fixes rewrite the same lines: only one applies"
