"""SIP calls per second: rig UAC -> rig UAS vs SIPp UAC -> SIPp UAS, back to back, no media.

Each side runs as two processes (caller, callee) on loopback, at each offered rate for a
fixed number of seconds with a concurrency cap; the numbers are completed calls per wall
second, the CPU time caller and callee spent per completed call, and the p50/p99 of
INVITE->200 and BYE->200 as the caller saw them (the rig's merged histograms; SIPp's
-trace_rtt, which has 1 ms resolution). The headline is the best rig rate over the best
SIPp rate, measured in the same run on the same (possibly shared, so noisy) machine, with
the load average. Saved to results/bench/calls.json.

    python bench/bench_calls.py [--seconds 8] [--rates 1000,2000,4000,8000] [--limit 200]
    python bench/bench_calls.py --profile   # one rig run under pyinstrument, if installed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_rtp import process_cpu  # noqa: E402  (this script's folder is on the path)

from rig.atomic import write_json_atomic  # noqa: E402
from rig.load.calls import Uas  # noqa: E402
from rig.load.driver import CallPlan, LoadDriver, Targets  # noqa: E402
from rig.load.histogram import Histogram  # noqa: E402
from rig.wire.transaction import SipTimers  # noqa: E402

OUT = ROOT / "results" / "bench" / "calls.json"
HOST = "127.0.3.11"  # caller and callee on one address, as the driver's Targets have it
STARTUP_S = 0.5
SOCKET_BUFFER = 4 * 1024 * 1024  # what the rig's SIP sockets ask for too


@dataclass(frozen=True)
class Measurement:
    tool: str
    offered_cps: int
    seconds: float
    completed: int
    failed: int
    cpu_s: float  # caller and callee together, from start to the end of the window
    invite_ms: tuple[float | None, float | None] = (None, None)  # INVITE->200 p50, p99
    bye_ms: tuple[float | None, float | None] = (None, None)  # BYE->200 p50, p99

    @property
    def cps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.completed * 1e6 if self.completed else 0.0


def run_loop(job: Any) -> Any:
    """asyncio, as `rig run` uses; RIG_BENCH_UVLOOP=1 tries uvloop (if installed) instead."""
    if os.environ.get("RIG_BENCH_UVLOOP", "0") == "1":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(job)
    return asyncio.run(job)


def loop_name() -> str:
    if os.environ.get("RIG_BENCH_UVLOOP", "0") != "1":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def background(argv: list[str], cwd: Path | None = None, verbose: bool = False) -> Any:
    """A callee process that is killed on the way out, whatever happened."""
    output = None if verbose else subprocess.DEVNULL
    process = subprocess.Popen(argv, cwd=cwd, stdout=output, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---- rig -------------------------------------------------------------------------------


async def serve_uas(host: str, port: int, seconds: float) -> dict[str, int]:
    async with Uas((host, port), SipTimers()) as uas:
        await asyncio.sleep(seconds)
        return {"completed": uas.counts.completed, "failed": uas.counts.failed,
                "cpu_s": round(time.process_time(), 3)}


def run_rig(rate: int, seconds: float, limit: int, profile: bool = False) -> Measurement:
    uas_port = free_port(HOST)
    callee = [sys.executable, __file__, "--serve-uas", f"{HOST}:{uas_port}",
              "--seconds", str(seconds + 15)]
    plan = CallPlan(cps=rate, max_concurrent=limit, hold=0.0, outcomes={"answered": 1.0},
                    no_answer_timeout=1.0, rtp=None)
    targets = Targets(HOST, free_port(HOST), uas_port, rtp_ports=(40000, 40001))
    with background(callee) as process:
        time.sleep(STARTUP_S)
        driver = LoadDriver(plan, None, targets, lambda kind, data: None, own_uas=False,
                            uas_hangup_share=0.0)
        job = lambda: run_loop(counted_at_end(driver, seconds))  # noqa: E731
        cpu_before = time.process_time() + process_cpu(process.pid)  # imports not counted
        completed, failed, latency = profiled(job) if profile else job()
        cpu = time.process_time() + process_cpu(process.pid) - cpu_before
    return Measurement("rig", rate, seconds, completed, failed, cpu,
                       percentiles_ms(latency.get("invite_200")),
                       percentiles_ms(latency.get("bye_200")))


async def counted_at_end(driver: LoadDriver, seconds: float
                         ) -> tuple[int, int, Mapping[str, Histogram]]:
    """Completed and failed calls at the end of the window (calls ending later not counted),
    and the run's latency histograms."""
    run = asyncio.ensure_future(driver.run(seconds))
    await asyncio.sleep(seconds)
    snapshot = driver.snapshot()
    report = await run
    return (int(snapshot["load.calls_completed"]), int(snapshot["load.calls_failed"]),
            report.latency)


def percentiles_ms(histogram: Histogram | None) -> tuple[float | None, float | None]:
    if histogram is None or not histogram.count:
        return None, None
    return tuple(round(histogram.percentile(q) * 1e3, 3)  # type: ignore[return-value]
                 for q in (50, 99))


def profiled(job: Any) -> Any:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed; running without the profiler")
        return job()
    profiler = Profiler()
    profiler.start()
    try:
        return job()
    finally:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))


# ---- SIPp ------------------------------------------------------------------------------


def rtt_scenario(sipp: str, folder: Path) -> Path:
    """SIPp's own default uac scenario, timing INVITE->200 and BYE->200 (-trace_rtt)."""
    text = subprocess.run([sipp, "-sd", "uac"], capture_output=True, text=True,
                          check=False).stdout
    send = '<send retrans="500">'
    if text.count(send) != 2 or '<recv response="200" rtd="true">' not in text:
        raise RuntimeError("SIPp's default uac scenario is not the one this bench knows")
    text = text.replace(send, '<send retrans="500" start_rtd="invite">', 1)
    text = text.replace(send, '<send retrans="500" start_rtd="bye">', 1)
    text = text.replace('<recv response="200" rtd="true">', '<recv response="200" rtd="invite">')
    text = text.replace('<recv response="200" crlf="true">',
                        '<recv response="200" crlf="true" rtd="bye">')
    path = folder / "uac_rtt.xml"
    path.write_text(text)
    return path


def sipp_rtts(folder: Path) -> dict[str, Histogram]:
    """SIPp's -trace_rtt samples (Date_ms;response_time_ms;rtd_no) as histograms by rtd."""
    out: dict[str, Histogram] = {}
    for path in folder.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[1].replace(".", "", 1).isdigit():
                out.setdefault(parts[2].strip(), Histogram()).record(float(parts[1]) / 1e3)
    return out


def run_sipp(sipp: str, rate: int, seconds: float, limit: int) -> Measurement:
    """SIPp's uac against SIPp's uas for `seconds`, counted from its per-second CSV stats."""
    uas_port, uac_port = free_port(HOST), free_port(HOST)
    with tempfile.TemporaryDirectory(prefix="rig-bench-sipp-") as tmp:
        folder = Path(tmp)
        common = ["-nostdin", "-buff_size", str(SOCKET_BUFFER)]
        callee = [sipp, "-sn", "uas", "-i", HOST, "-p", str(uas_port), *common,
                  "-timeout", f"{seconds + 15:.0f}s"]
        caller = [sipp, "-sf", str(rtt_scenario(sipp, folder)), "-i", HOST, "-p",
                  str(uac_port), f"{HOST}:{uas_port}", "-r", str(rate), "-l", str(limit),
                  *common, "-trace_stat", "-stf", str(folder / "stats.csv"), "-fd", "1",
                  "-trace_rtt", "-rtt_freq", "100"]
        with background(callee, folder) as uas, background(caller, folder) as uac:
            # SIPp waits for every call it started, and a lost datagram can hold its default
            # scenario for long: stop it at the end of the window and read its last stats
            time.sleep(STARTUP_S + seconds + 1.2)
            cpu = process_cpu(uas.pid) + process_cpu(uac.pid)
        completed, failed, elapsed = sipp_stats(folder / "stats.csv")
        rtts = sipp_rtts(folder)
    return Measurement("sipp", rate, elapsed, completed, failed, cpu,
                       percentiles_ms(rtts.get("invite")), percentiles_ms(rtts.get("bye")))


def sipp_stats(csv_path: Path) -> tuple[int, int, float]:
    """(successful, failed, seconds since start) from the last row of SIPp's -trace_stat."""
    rows = [line.split(";") for line in csv_path.read_text().splitlines() if line.strip()]
    if len(rows) < 2:
        raise RuntimeError(f"SIPp wrote no statistics to {csv_path}")
    header, last = rows[0], rows[-1]

    def epoch(column: str) -> float:
        return float(last[header.index(column)].split("\t")[-1])

    elapsed = epoch("CurrentTime") - epoch("StartTime")
    return (int(last[header.index("SuccessfulCall(C)")]),
            int(last[header.index("FailedCall(C)")]), elapsed)


# ---- table -----------------------------------------------------------------------------


def summarise(rows: list[Measurement]) -> dict[str, Any]:
    best = {tool: max((r.cps for r in rows if r.tool == tool), default=0.0)
            for tool in ("rig", "sipp")}
    ratio = best["rig"] / best["sipp"] if best["sipp"] else None
    cpu = {tool: min((r.cpu_us_per_call for r in rows if r.tool == tool and r.completed),
                     default=0.0) for tool in ("rig", "sipp")}
    cpu_ratio = cpu["rig"] / cpu["sipp"] if cpu["sipp"] else None
    return {"best_cps": best, "ratio_rig_over_sipp": ratio, "best_cpu_us_per_call": cpu,
            "cpu_ratio_rig_over_sipp": cpu_ratio}


def _ms(pair: tuple[float | None, float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.1f}" for v in pair)


def table(rows: list[Measurement], summary: dict[str, Any]) -> str:
    lines = [f"{'offered':>8} {'tool':>5} {'completed':>10} {'failed':>7} {'calls/s':>9} "
             f"{'CPU µs/call':>12} {'INVITE→200 p50/p99 ms':>22} {'BYE→200 p50/p99 ms':>19}"]
    for r in rows:
        lines.append(f"{r.offered_cps:>8} {r.tool:>5} {r.completed:>10} {r.failed:>7} "
                     f"{r.cps:>9.0f} {r.cpu_us_per_call:>12.0f} {_ms(r.invite_ms):>22} "
                     f"{_ms(r.bye_ms):>19}")
    best = summary["best_cps"]
    ratio = summary["ratio_rig_over_sipp"]
    if ratio is None:
        lines.append("best: no SIPp number")
        return "\n".join(lines)
    cpu = summary["best_cpu_us_per_call"]
    lines.append(f"best: rig {best['rig']:.0f}/s, SIPp {best['sipp']:.0f}/s, "
                 f"ratio rig/SIPp = {ratio:.2f}; CPU per call rig {cpu['rig']:.0f} µs, "
                 f"SIPp {cpu['sipp']:.0f} µs (ratio {summary['cpu_ratio_rig_over_sipp']:.2f})")
    return "\n".join(lines)


def uptime() -> str:
    """`uptime`'s line: the load the numbers were measured under."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False
                              ).stdout.strip()
    except OSError:
        return ""


def save(rows: list[Measurement], summary: dict[str, Any], args: argparse.Namespace) -> None:
    document = {
        "schema_version": 1,
        "benchmark": "calls_per_second",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "event_loop": loop_name(), "load_avg": os.getloadavg(),
                    "uptime": uptime()},
        "settings": {"seconds": args.seconds, "limit": args.limit, "hold": 0, "media": False},
        "rows": [{**asdict(r), "cps": round(r.cps, 1),
                  "cpu_us_per_call": round(r.cpu_us_per_call, 1)} for r in rows],
        **summary,
    }
    write_json_atomic(OUT, document)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rates", default="1000,2000,4000,8000")
    parser.add_argument("--limit", type=int, default=200, help="max concurrent calls")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--serve-uas", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_uas:
        host, port = args.serve_uas.rsplit(":", 1)
        print(json.dumps(run_loop(serve_uas(host, int(port), args.seconds))))
        return 0
    rates = [int(r) for r in args.rates.split(",")]
    if args.profile:
        print(run_rig(rates[-1], args.seconds, args.limit, profile=True))
        return 0
    sipp = shutil.which("sipp")
    rows: list[Measurement] = []
    for rate in rates:
        if sipp is not None:
            rows.append(run_sipp(sipp, rate, args.seconds, args.limit))
        rows.append(run_rig(rate, args.seconds, args.limit))
        print(table(rows[-2:], summarise(rows)).split("\nbest")[0], flush=True)
    summary = summarise(rows)
    print(table(rows, summary))
    print(f"machine: {os.cpu_count()} CPUs, {loop_name()}; {uptime()}")
    save(rows, summary, args)
    print(f"saved: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
