"""Many runs at once: the same 2x2 matrix serially, with --jobs 2 (local pool) and with
--jobs 2 --cluster local (an embedded Ray), side by side in one go on this machine.

Per mode: wall time of the whole matrix, start-up (from the command's launch to the first
run's start), and the peak memory of the command's whole process tree (the rig, its run
processes, the services, and Ray's daemons and workers), sampled every 0.2 s. The ratio is
against the serial matrix. On 2 shared cores the runs compete with each other and with
whatever else runs: the load (`uptime`) is saved with the numbers. Saved to
results/bench/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rig.atomic import write_json_atomic  # noqa: E402

OUT = ROOT / "results" / "bench" / "jobs.json"
MATRIX = ["matrix", str(ROOT / "scenarios" / "pin-race.yaml"),
          "--patch", str(ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"),
          "--axis", "checks.pins_below_ceiling.ceiling=16,1",
          "--axis", "checks.pins_below_alert.alert=12,1",
          "--set", "duration=8", "--set", "settle=1",
          "--set", "checks.pins_flat_after_warmup.warmup=4",
          "--set", "checks.pins_flat_after_warmup.tolerance=50", "--no-progress"]
MODES = {"serial": [], "--jobs 2": ["--jobs", "2"],
         "--jobs 2 --cluster local": ["--jobs", "2", "--cluster", "local"]}
RAY_NAMES = ("gcs_server", "raylet", "ray::")


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """(bytes of the whole tree, bytes of its Ray processes)."""
    total = ray = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss = proc.memory_info().rss
            is_ray = proc.name().startswith(RAY_NAMES) or "ray" in " ".join(proc.cmdline()[:2])
        except psutil.Error:
            continue
        total += rss
        ray += rss if is_ray else 0
    return total, ray


def first_start(out: Path) -> float | None:
    starts = []
    for summary in out.glob("*/summary.json"):
        started = json.loads(summary.read_text()).get("timing", {}).get("started")
        if started:
            starts.append(float(started))
    return min(starts) if starts else None


def measure(mode: str, extra: list[str], folder: Path) -> dict[str, object]:
    out = folder / mode.replace(" ", "_").replace("-", "")
    launched_wall, launched = time.time(), time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "rig.cli", *MATRIX, *extra, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = peak_ray = 0
    while proc.poll() is None:
        total, ray = tree_rss(root)
        peak, peak_ray = max(peak, total), max(peak_ray, ray)
        time.sleep(0.2)
    wall = time.monotonic() - launched
    output = proc.stdout.read() if proc.stdout else ""
    saved = json.loads((out / "matrix.json").read_text())
    start = first_start(out)
    return {"mode": mode, "exit": proc.returncode, "wall_s": round(wall, 1),
            "startup_s": None if start is None else round(start - launched_wall, 2),
            "peak_tree_mib": round(peak / 2**20), "peak_ray_mib": round(peak_ray / 2**20),
            "verdicts": {c["name"]: c["verdict"] for c in saved["cells"]},
            "tail": output.splitlines()[-1:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rig-bench-jobs-") as folder:
        for mode, extra in MODES.items():
            rows.append(measure(mode, extra, Path(folder)))
            print(f"{mode}: {rows[-1]['wall_s']} s", file=sys.stderr, flush=True)
    serial = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    print(f"{'mode':<26} {'wall s':>7} {'vs serial':>9} {'start-up s':>10} "
          f"{'peak MiB':>9} {'Ray MiB':>8}  verdicts same")
    for row in rows:
        same = row["verdicts"] == rows[0]["verdicts"]
        print(f"{row['mode']:<26} {row['wall_s']:>7} {float(row['wall_s']) / serial:>9.2f} "
              f"{row['startup_s']!s:>10} {row['peak_tree_mib']:>9} {row['peak_ray_mib']:>8}  "
              f"{same}")
    document = {
        "schema_version": 1,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_before": load_before,
                    "load_after": os.getloadavg()},
        "rows": rows,
    }
    write_json_atomic(args.out, document)
    print(f"saved {args.out}; load before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
