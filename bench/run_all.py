"""`make bench`: every benchmark in one go, each printing its own table.

The combined output is saved to results/bench/latest.txt; each benchmark also saves its
own JSON next to it. Benchmarks measure; they do not pass or fail.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "results" / "bench"
BENCHES = [
    ("SIP calls per second, rig vs SIPp", ["bench_calls.py"]),
    ("SIP calls per second from 1 and 2 generator processes", ["bench_processes.py"]),
    ("RTP packets per second", ["bench_rtp.py"]),
    ("burst alignment where the packets land, old engine vs new vs the floor",
     ["bench_bursts.py"]),
    ("pin race against burst width and jitter", ["bench_race_curve.py", "--runs", "1"]),
    ("time to reproduce pin-race, old engine vs new", ["bench_reproduce.py", "--runs", "5"]),
    ("pin race: phantom shard rate, stock vs fixes", ["sut_race.py"]),
    ("flaky-aware bisect vs repeat-k and git-bayesect", ["bench_bisect.py"]),
    ("a 2x2 matrix serial, --jobs 2 and on an embedded Ray", ["bench_jobs.py"]),
    ("calls/s and RTP pps from 1 and 2 generator hosts (namespaces)",
     ["bench_cluster_hosts.py", "--cps", "300", "--hold", "1"]),
    ("SIGKILL of rig run at random moments, then rig gc: what is left", ["chaos.py"]),
]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    chunks = []
    for title, argv in BENCHES:
        script = HERE / argv[0]
        header = f"== {title} ({argv[0]})"
        print(header, flush=True)
        if not script.is_file():
            chunks.append(f"{header}\nmissing\n")
            continue
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script), *argv[1:]], cwd=HERE.parent,
                                capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
        text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.returncode else "")
        print(text, flush=True)
        chunks.append(f"{header} [{elapsed:.0f} s, exit {result.returncode}]\n{text}\n")
    (OUT / "latest.txt").write_text("\n".join(chunks))
    print(f"saved: {OUT / 'latest.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
