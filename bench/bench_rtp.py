"""RTP throughput of the rig's MediaEngine: packets per second sent + received, per core.

Paths:
- direct: the two endpoints of each call send straight to each other on loopback;
- rtpengine: every call is set up in Debian's rtpengine (userspace, --table=-1) over NG
  with NgMediaControl, and both directions go through the relay.

--processes P splits the calls over P processes, each with its own MediaEngine, which is
how the rig would use more than one core (the GIL caps one engine near one core).
Prints a table and saves results/bench/bench_rtp.json. The machine is shared: the load
average is saved with the numbers, which are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.load.media import MediaEngine  # noqa: E402
from rig.load.mediacontrol import NgMediaControl  # noqa: E402
from rig.load.ng import NgClient  # noqa: E402
from rig.probes.ng import ng_request  # noqa: E402
from rig.wire.ng import NgError  # noqa: E402

OUT = ROOT / "results" / "bench" / "bench_rtp.json"
HOST = "127.0.0.1"
RELAY_HOST = "127.0.4.2"
WARMUP_S = 1.0
SDP = ("v=0\r\no=- {port} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
MEDIA_LINE = re.compile(r"^m=audio (\d+) ", re.MULTILINE)
CONNECTION_LINE = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="250,1000", help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--paths", default="direct,rtpengine", help="direct and/or rtpengine")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        args.calls = [int(c) for c in args.calls.split(",")]
        args.processes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error("--calls and --processes take numbers like 250,1000")
    args.paths = [p for p in args.paths.split(",") if p]
    unknown = set(args.paths) - {"direct", "rtpengine"}
    if unknown:
        parser.error(f"unknown path {sorted(unknown)} (allowed: direct, rtpengine)")
    if "rtpengine" in args.paths and shutil.which("rtpengine") is None:
        print("rtpengine not installed: measuring the direct path only", file=sys.stderr)
        args.paths = [p for p in args.paths if p != "rtpengine"]
    if not (0 < args.seconds <= 120) or min(args.calls + args.processes) < 1:
        parser.error("--seconds must be in (0, 120], calls and processes at least 1")
    return args


# --- one worker process: an engine with its share of the calls ----------------------------

def relay_port(sdp: str) -> tuple[str, int]:
    media, connection = MEDIA_LINE.search(sdp), CONNECTION_LINE.search(sdp)
    if media is None or connection is None:
        raise NgError(f"relay SDP without c= or m=audio line: {sdp!r}")
    return connection.group(1), int(media.group(1))


async def set_up_relay_calls(ng: tuple[str, int], pairs: list[tuple[int, int]],
                             tag: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Offer/answer every call; returns (where a sends, where b sends) per call."""
    client = await NgClient.open(*ng, timeout=2.0)
    media = NgMediaControl(client)
    try:
        async def one(i: int, a: int, b: int) -> tuple[tuple[str, int], tuple[str, int]]:
            call_id = f"bench-{tag}-{i}"
            offered = await media.offer(call_id, "from", SDP.format(host=HOST, port=a))
            answered = await media.answer(call_id, "from", "to", SDP.format(host=HOST, port=b))
            return relay_port(answered), relay_port(offered)

        targets = []
        for start in range(0, len(pairs), 50):
            chunk = pairs[start:start + 50]
            targets += await asyncio.gather(
                *(one(start + i, a, b) for i, (a, b) in enumerate(chunk)))
        return targets
    finally:
        client.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_engine(calls: int, seconds: float, ports: tuple[int, int], ng: tuple[str, int] | None,
               tag: str, relay_pid: int | None) -> dict[str, float]:
    with MediaEngine(HOST, ports) as media:
        pairs = [(media.open_endpoint(), media.open_endpoint()) for _ in range(calls)]
        if ng is None:
            targets = [((HOST, b), (HOST, a)) for a, b in pairs]
        else:
            targets = asyncio.run(set_up_relay_calls(ng, pairs, tag))
        for (a, b), (to_a_side, to_b_side) in zip(pairs, targets, strict=True):
            media.prepare_stream(a, to_a_side)
            media.prepare_stream(b, to_b_side)
        start_spread_over_one_ptime(media, pairs)
        time.sleep(WARMUP_S)
        relay_before = process_cpu(relay_pid)
        before, cpu_before, t_before = media.totals(), cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        after, cpu_after, t_after = media.totals(), cpu_seconds(), time.monotonic()
        relay_after = process_cpu(relay_pid)
        return {
            "sent": after["rtp_sent"] - before["rtp_sent"],
            "received": after["rtp_received"] - before["rtp_received"],
            "lost_total": after["rtp_lost"],
            "jitter_ms_max": after["jitter_ms_max"],
            "cpu_s": cpu_after - cpu_before,
            "wall_s": t_after - t_before,
            "send_errors": float(media.send_errors),
            "relay_cpu_s": relay_after - relay_before,
        }


def start_spread_over_one_ptime(media: MediaEngine, pairs: list[tuple[int, int]]) -> None:
    """Real calls start at random moments: spread the streams' phases over one ptime."""
    slots = 20
    for slot in range(slots):
        for a, b in pairs[slot::slots]:
            media.start_streams([a, b])
        time.sleep(media.ptime_ms / 1000 / slots)


def worker(args: tuple) -> dict[str, float]:
    return run_engine(*args)


# --- the measurement --------------------------------------------------------------------

def measure(path: str, calls: int, processes: int, seconds: float,
            ng: tuple[str, int] | None, relay_pid: int | None) -> dict:
    share = [calls // processes + (1 if i < calls % processes else 0) for i in range(processes)]
    jobs = [(n, seconds, (40000 + i * 5000, 40000 + i * 5000 + 4999), ng, f"{calls}-{i}",
             relay_pid) for i, n in enumerate(share)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        parts = pool.map(worker, jobs)
    if ng is not None:
        delete_all(ng)
    wall = max(p["wall_s"] for p in parts)
    sent, received = sum(p["sent"] for p in parts), sum(p["received"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    nominal = calls * 2 * 50.0
    return {
        "path": path, "calls": calls, "processes": processes, "seconds": wall,
        "nominal_pps": nominal,
        "sent_pps": sent / wall, "received_pps": received / wall,
        "loss_fraction": max(0.0, 1 - received / sent) if sent else 0.0,
        "rig_cpu_cores": cpu / wall,
        "pps_per_rig_core": (sent + received) / cpu if cpu else 0.0,
        # the windows of the processes overlap closely: the first one's view of the relay
        "relay_cpu_cores": parts[0]["relay_cpu_s"] / parts[0]["wall_s"] if relay_pid else None,
        "jitter_ms_max": max(p["jitter_ms_max"] for p in parts),
        "send_errors": sum(p["send_errors"] for p in parts),
    }


def process_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def delete_all(ng: tuple[str, int]) -> None:
    """rtpengine keeps calls until told otherwise: end every session between runs."""
    listing = ng_request(*ng, {"command": "list", "limit": 100000}, timeout=5.0)
    for call_id in listing.get("calls", []):
        try:
            ng_request(*ng, {"command": "delete", "call-id": call_id, "delete-delay": 0})
        except NgError:
            pass  # already gone


@contextmanager
def running_rtpengine() -> Iterator[tuple[tuple[str, int], int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((RELAY_HOST, 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", f"--interface={RELAY_HOST}",
             f"--listen-ng={RELAY_HOST}:{port}", "--foreground", "--log-stderr",
             "--log-level=3", "--delete-delay=0", "--port-min=20000", "--port-max=29999",
             "--num-threads=2"],
            stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    ng_request(RELAY_HOST, port, {"command": "ping"}, timeout=0.2)
                    break
                except NgError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        tail = log.read()[-500:]
                        raise SystemExit(f"rtpengine did not start: {tail!r}") from None
                    time.sleep(0.05)
            yield (RELAY_HOST, port), proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def table(rows: list[dict]) -> str:
    lines = [f"{'path':>9} {'calls':>5} {'procs':>5} {'nominal':>8} {'sent/s':>8} "
             f"{'recv/s':>8} {'loss':>6} {'rig cores':>9} {'pps/core':>8} {'relay cores':>11}"]
    for r in rows:
        relay = f"{r['relay_cpu_cores']:.2f}" if r["relay_cpu_cores"] is not None else "-"
        lines.append(
            f"{r['path']:>9} {r['calls']:>5} {r['processes']:>5} {r['nominal_pps']:>8.0f} "
            f"{r['sent_pps']:>8.0f} {r['received_pps']:>8.0f} {r['loss_fraction']:>6.1%} "
            f"{r['rig_cpu_cores']:>9.2f} {r['pps_per_rig_core']:>8.0f} {relay:>11}")
    lines.append("pps/core = (sent + received) packets per CPU second of the rig's processes")
    return "\n".join(lines)


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(data, f, indent=2)
    os.replace(f.name, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    rows = []
    for path in args.paths:
        with running_rtpengine() if path == "rtpengine" else nullcontext_relay() as (ng, pid):
            for calls in args.calls:
                for processes in args.processes:
                    rows.append(measure(path, calls, processes, args.seconds, ng, pid))
    report = {
        "schema_version": 1,
        "benchmark": "rtp",
        "time": time.time(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "target": {"calls": 1000, "pps": 100000, "cores": 2},
        "rows": rows,
    }
    print(table(rows))
    print(f"load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cpus (shared machine: numbers are noisy)")
    write_json_atomically(args.out, report)
    print(f"saved: {args.out}")
    return 0


@contextmanager
def nullcontext_relay() -> Iterator[tuple[None, None]]:
    yield None, None


if __name__ == "__main__":
    sys.exit(main())
