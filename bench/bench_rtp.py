"""RTP throughput of the rig's MediaEngine: packets per second sent + received, per core.

Paths:
- floor: the system calls the engine cannot avoid (one sendto from each stream's own socket,
  one recv_into per packet) in a bare loop without pacing or statistics, the same number of
  sockets: what Python on this machine can do at best, measured in the same run;
- floor-mmsg: sendmmsg of the same datagrams from one socket (burstio.Mmsg, the burst
  floor), received the same way: the kernel's own cost, out of reach for per-stream ports;
- direct: the two endpoints of each call send straight to each other on loopback;
- relay: every call is set up in the model relay (containers/relay, with the kmod model)
  over NG, and both directions go through it;
- rtpengine: the same through Debian's rtpengine (userspace, --table=-1).

--processes P splits the calls over P processes, each with its own MediaEngine, which is
how the rig would use more than one core (the GIL caps one engine near one core).
Prints a table and saves results/bench/bench_rtp.json. The machine is shared: the load
average is saved with the numbers, which are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.atomic import write_json_atomic  # noqa: E402
from rig.load.burstio import Mmsg  # noqa: E402
from rig.load.media import MediaEngine  # noqa: E402
from rig.load.mediacontrol import NgMediaControl  # noqa: E402
from rig.load.ng import NgClient  # noqa: E402
from rig.probes.ng import ng_request  # noqa: E402
from rig.topology.loopback import block_host  # noqa: E402
from rig.wire.ng import NgError  # noqa: E402
from rig.wire.rtp import packet_template, stamp  # noqa: E402
from rig.wire.rtpstats import RtpStats  # noqa: E402

OUT = ROOT / "results" / "bench" / "bench_rtp.json"
PATHS = ("floor", "floor-mmsg", "direct", "relay", "rtpengine")
WARMUP_S = 1.0
SDP = ("v=0\r\no=- {port} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
MEDIA_LINE = re.compile(r"^m=audio (\d+) ", re.MULTILINE)
CONNECTION_LINE = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="250,1000", help="comma-separated call counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"some of {', '.join(PATHS)}")
    # one: the model relay's workers are Python threads sharing a GIL, and on 2 cores one
    # worker relayed the most packets per CPU second (158k, against 138k with 2 and 143k
    # with 4, 500 calls, same run)
    parser.add_argument("--relay-workers", type=int, default=1,
                        help="worker threads of the model relay")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        args.calls = [int(c) for c in args.calls.split(",")]
        args.processes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error("--calls and --processes take numbers like 250,1000")
    args.paths = [p for p in args.paths.split(",") if p]
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown path {sorted(unknown)} (allowed: {', '.join(PATHS)})")
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


async def set_up_relay_calls(ng: tuple[str, int], host: str, pairs: list[tuple[int, int]],
                             tag: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Offer/answer every call; returns (where a sends, where b sends) per call."""
    client = await NgClient.open(*ng, timeout=2.0)
    media = NgMediaControl(client)
    try:
        async def one(i: int, a: int, b: int) -> tuple[tuple[str, int], tuple[str, int]]:
            call_id = f"bench-{tag}-{i}"
            offered = await media.offer(call_id, "from", SDP.format(host=host, port=a))
            answered = await media.answer(call_id, "from", "to", SDP.format(host=host, port=b))
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


def run_engine(calls: int, seconds: float, host: str, ports: tuple[int, int],
               ng: tuple[str, int] | None, tag: str, relay_pid: int | None) -> dict:
    with MediaEngine(host, ports) as media:
        pairs = [(media.open_endpoint(), media.open_endpoint()) for _ in range(calls)]
        if ng is None:
            targets = [((host, b), (host, a)) for a, b in pairs]
        else:
            targets = asyncio.run(set_up_relay_calls(ng, host, pairs, tag))
        for (a, b), (to_a_side, to_b_side) in zip(pairs, targets, strict=True):
            media.prepare_stream(a, to_a_side)
            media.prepare_stream(b, to_b_side)
        start_spread_over_one_ptime(media, pairs)
        time.sleep(WARMUP_S)
        relay_before = process_cpu(relay_pid)
        before, cpu_before, t_before = media.stats(), cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        after, cpu_after, t_after = media.stats(), cpu_seconds(), time.monotonic()
        relay_after = process_cpu(relay_pid)
        return {
            "sent": after.sent - before.sent,
            "received": after.received - before.received,
            "stats": after,  # the whole run, warm-up included: loss from sequence numbers
            "cpu_s": cpu_after - cpu_before,
            "wall_s": t_after - t_before,
            "relay_cpu_s": relay_after - relay_before,
        }


def start_spread_over_one_ptime(media: MediaEngine, pairs: list[tuple[int, int]]) -> None:
    """Real calls start at random moments: spread the streams' phases over one ptime."""
    slots = 20
    for slot in range(slots):
        for a, b in pairs[slot::slots]:
            media.start_streams([a, b])
        time.sleep(media.ptime_ms / 1000 / slots)


def worker(args: tuple) -> dict:
    return run_engine(*args)


# --- the floors: the same datagrams without the engine ----------------------------------

def bound_sockets(host: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        socks.append(sock)
    return socks


def floor_worker(args: tuple[str, int, float, bool]) -> dict:
    """Every socket sends one packet to its partner per round, as fast as it goes; each
    ready socket is read once per round (as the engine does). With `mmsg`, one socket
    sends the round in one sendmmsg instead."""
    host, calls, seconds, mmsg = args
    socks = bound_sockets(host, 2 * calls)
    targets = [socks[i ^ 1].getsockname() for i in range(len(socks))]
    packet = packet_template(0, 0x12345678, b"\xff" * 160)
    poller = select.epoll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    batch = Mmsg(socks[0], [bytes(packet)] * len(socks), targets) if mmsg else None
    buffer = bytearray(2048)
    sent = received = 0
    cpu_before, t_before = cpu_seconds(), time.monotonic()
    while time.monotonic() - t_before < seconds:
        if batch is not None:
            sent += batch.send()
        else:
            for sock, target in zip(socks, targets, strict=True):
                stamp(packet, sent, sent * 160)
                sock.sendto(packet, target)
                sent += 1
        for fd, _ in poller.poll(0, len(socks)):
            try:
                by_fd[fd].recv_into(buffer)
            except BlockingIOError:
                continue
            received += 1
    cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - t_before
    for sock in socks:
        sock.close()
    poller.close()
    return {"sent": sent, "received": received, "cpu_s": cpu, "wall_s": wall}


def measure_floor(path: str, host: str, calls: int, seconds: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        part = pool.map(floor_worker, [(host, calls, seconds, path == "floor-mmsg")])[0]
    wall, cpu = part["wall_s"], part["cpu_s"]
    return {
        "path": path, "calls": calls, "processes": 1, "seconds": wall, "nominal_pps": None,
        "sent_pps": part["sent"] / wall, "received_pps": part["received"] / wall,
        "loss_fraction": None, "seq_loss_fraction": None, "duplicates": None, "reordered": None,
        "rig_cpu_cores": cpu / wall,
        "pps_per_rig_core": (part["sent"] + part["received"]) / cpu if cpu else 0.0,
        "relay_cpu_cores": None, "jitter_ms_mean": None, "jitter_ms_max": None,
        "send_errors": 0,
    }


# --- the measurement --------------------------------------------------------------------

def measure(path: str, host: str, calls: int, processes: int, seconds: float,
            ng: tuple[str, int] | None, relay_pid: int | None) -> dict:
    share = [calls // processes + (1 if i < calls % processes else 0) for i in range(processes)]
    jobs = [(n, seconds, host, (40000 + i * 5000, 40000 + i * 5000 + 4999), ng,
             f"{path}-{calls}-{processes}-{i}", relay_pid) for i, n in enumerate(share)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        parts = pool.map(worker, jobs)
    if ng is not None:
        delete_all(ng)
    wall = max(p["wall_s"] for p in parts)
    sent, received = sum(p["sent"] for p in parts), sum(p["received"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    stats = RtpStats.merged(p["stats"] for p in parts)
    return {
        "path": path, "calls": calls, "processes": processes, "seconds": wall,
        "nominal_pps": calls * 2 * 50.0,
        "sent_pps": sent / wall, "received_pps": received / wall,
        # in the window: what was sent and did not come back (a relay that drops whole
        # streams, or lags behind, shows here and not in the sequence numbers)
        "loss_fraction": max(0.0, 1 - received / sent) if sent else 0.0,
        "seq_loss_fraction": stats.loss_fraction,
        "duplicates": stats.duplicates, "reordered": stats.reordered,
        "rig_cpu_cores": cpu / wall,
        "pps_per_rig_core": (sent + received) / cpu if cpu else 0.0,
        # the windows of the processes overlap closely: the first one's view of the relay
        "relay_cpu_cores": parts[0]["relay_cpu_s"] / parts[0]["wall_s"] if relay_pid else None,
        "jitter_ms_mean": stats.jitter_ms_mean, "jitter_ms_max": stats.jitter_ms_max,
        "send_errors": stats.send_errors,
    }


def process_cpu(pid: int | None) -> float:
    """CPU seconds of a relay process and its threads (children: none)."""
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def delete_all(ng: tuple[str, int]) -> None:
    """Relays keep calls until told otherwise: end every session between runs."""
    listing = ng_request(*ng, {"command": "list", "limit": 100000}, timeout=5.0)
    for call_id in listing.get("calls", []):
        try:
            ng_request(*ng, {"command": "delete", "call-id": call_id, "delete-delay": 0})
        except NgError:
            pass  # already gone


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_ng(proc: subprocess.Popen, ng: tuple[str, int], log: IO[bytes], name: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            ng_request(*ng, {"command": "ping"}, timeout=0.2)
            return
        except NgError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read()[-500:]
                raise SystemExit(f"{name} did not start: {tail!r}") from None
            time.sleep(0.05)


@contextmanager
def started(argv: list[str], log: IO[bytes]) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_rtpengine(host: str) -> Iterator[tuple[tuple[str, int], int]]:
    ng = (host, free_udp_port(host))
    argv = ["rtpengine", "--config-file=none", "--table=-1", f"--interface={host}",
            f"--listen-ng={host}:{ng[1]}", "--foreground", "--log-stderr",
            "--log-level=3", "--delete-delay=0", "--port-min=20000", "--port-max=29999",
            "--num-threads=2"]
    with tempfile.TemporaryFile() as log, started(argv, log) as proc:
        wait_for_ng(proc, ng, log, "rtpengine")
        yield ng, proc.pid


@contextmanager
def running_model_relay(host: str, workers: int) -> Iterator[tuple[tuple[str, int], int]]:
    """kmod and the relay as the rig's local backend starts them (rig/services)."""
    ng = (host, free_udp_port(host))
    source = ROOT / "containers"
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryFile() as log:
        kmod_argv = [sys.executable, str(source / "kmod" / "kmod.py"), "--dir", state]
        with started(kmod_argv, log):
            deadline = time.monotonic() + 10
            while not (Path(state) / "control.sock").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("kmod did not start")
                time.sleep(0.02)
            relay_argv = [sys.executable, str(source / "relay" / "relay.py"),
                          "--ng", f"{host}:{ng[1]}", "--rtp-addr", host,
                          "--rtp-ports", "20000-29999", "--workers", str(workers),
                          "--kmod", state, "--table", "0", "--timeout", "0"]
            with started(relay_argv, log) as relay:
                wait_for_ng(relay, ng, log, "the model relay")
                yield ng, relay.pid


def table(rows: list[dict]) -> str:
    floor = next((r["pps_per_rig_core"] for r in rows if r["path"] == "floor"), None)
    lines = [f"{'path':>10} {'calls':>5} {'procs':>5} {'nominal':>7} {'sent/s':>7} "
             f"{'recv/s':>7} {'loss':>7} {'seq loss':>8} {'dup':>4} {'reord':>5} {'jitter ms':>10} "
             f"{'rig cores':>9} {'pps/core':>8} {'/floor':>6} {'relay cores':>11} "
             f"{'relay pps/core':>14}"]
    for r in rows:
        relay = f"{r['relay_cpu_cores']:.2f}" if r["relay_cpu_cores"] is not None else "-"
        # what the rig received, the relay took in and sent on; what it dropped from full
        # socket buffers cost the sender's CPU, not its own
        relay_rate = (f"{2 * r['received_pps'] / r['relay_cpu_cores']:.0f}"
                      if r["relay_cpu_cores"] else "-")
        nominal = f"{r['nominal_pps']:.0f}" if r["nominal_pps"] is not None else "-"
        loss = f"{r['loss_fraction']:.3%}" if r["loss_fraction"] is not None else "-"
        seq = f"{r['seq_loss_fraction']:.3%}" if r["seq_loss_fraction"] is not None else "-"
        jitter = (f"{r['jitter_ms_mean']:.2f}/{r['jitter_ms_max']:.1f}"
                  if r["jitter_ms_max"] is not None else "-")
        ratio = f"{r['pps_per_rig_core'] / floor:.2f}" if floor else "-"
        lines.append(
            f"{r['path']:>10} {r['calls']:>5} {r['processes']:>5} {nominal:>7} "
            f"{r['sent_pps']:>7.0f} {r['received_pps']:>7.0f} {loss:>7} {seq:>8} "
            f"{_dash(r['duplicates']):>4} {_dash(r['reordered']):>5} {jitter:>10} "
            f"{r['rig_cpu_cores']:>9.2f} {r['pps_per_rig_core']:>8.0f} {ratio:>6} {relay:>11} "
            f"{relay_rate:>14}")
    lines += [
        "pps/core = (sent + received) packets per CPU second of the rig's processes;",
        "/floor = pps/core over the floor row's (the same system calls in a bare loop);",
        "loss = 1 - received/sent in the window; seq loss = lost/expected from the receivers'",
        "sequence numbers over the whole run (RtpStats: only what arrived shows gaps);",
        "jitter ms = RFC 3550 interarrival jitter, mean/max over the streams;",
        "relay pps/core = 2 x received (in and out) per CPU second of the relay",
    ]
    return "\n".join(lines)


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def uptime() -> str:
    try:
        done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def relay_for(path: str, host: str, workers: int) -> AbstractContextManager:
    if path == "rtpengine":
        return running_rtpengine(host)
    if path == "relay":
        return running_model_relay(host, workers)
    return nullcontext((None, None))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    host, relay_host = block_host("9.1"), block_host("9.2")
    load_before, uptime_before = os.getloadavg(), uptime()
    rows = []
    for path in args.paths:
        if path.startswith("floor"):
            rows += [measure_floor(path, host, calls, args.seconds) for calls in args.calls]
            continue
        with relay_for(path, relay_host, args.relay_workers) as (ng, pid):
            for calls in args.calls:
                for processes in args.processes:
                    rows.append(measure(path, host, calls, processes, args.seconds, ng, pid))
    report = {
        "schema_version": 2,
        "benchmark": "rtp",
        "time": time.time(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "uptime_before": uptime_before, "uptime_after": uptime()},
        "target": {"calls": 1000, "pps": 100000, "cores": 2, "loss_below": 0.001,
                   "pps_per_core": 150000},
        "relay_workers": args.relay_workers,
        "rows": rows,
    }
    print(table(rows))
    print(f"uptime before: {uptime_before}")
    print(f"uptime after:  {report['machine']['uptime_after']}")
    print(f"on {os.cpu_count()} cpus, a shared machine: the numbers are noisy")
    write_json_atomic(args.out, report)
    print(f"saved: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
