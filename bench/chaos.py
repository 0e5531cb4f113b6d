"""Kills at random points: `rig run` (or one of its SUT processes) SIGKILLed at a random
moment, then `rig gc`, N times.

Each round starts `rig run` of a short scenario with a runtime folder and a temporary
folder of its own, SIGKILLs the rig process (only it: what it started is left to gc) at a
moment drawn uniformly from [0, --window] seconds, runs `rig gc`, and counts what is left:
processes started by that rig, containers of its runtime, network namespaces of its runs,
git worktrees and temporary folders under its temporary folder. The run folder must say
`incomplete` or hold a whole summary (a verdict and the checks); no folder at all is fine
(killed before it was made), anything else is broken.

With `--kill sut` the victim is a service instead, taken in turn from relay, kmod and
kamailio (pin-race, and pin-race-kamailio for kamailio, both with the fixed relay so that
the victim is the only service that dies): its pid from the run record, the
moment uniform in [0, --window] seconds after the pid is recorded. The rig must then end
by itself, with verdict fail and `services_alive` naming that pid and SIGKILL (or exit 3
and verdict error when the service died before it was ready), and leave nothing for
`rig gc`.

    python bench/chaos.py                  # 50 rounds
    python bench/chaos.py --rounds 10      # a quick look
    python bench/chaos.py --kill sut --rounds 20 --window 5

Prints a table and saves results/bench/chaos.json (chaos-sut.json with --kill sut).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.atomic import write_json_atomic  # noqa: E402
from rig.topology.netns import namespace_name  # noqa: E402

OUT = ROOT / "results" / "bench"
SCENARIO = ROOT / "scenarios" / "pin-race.yaml"
SUT_SCENARIOS = {"relay": SCENARIO, "kmod": SCENARIO,
                 "kamailio": ROOT / "scenarios" / "pin-race-kamailio.yaml"}
# with a service killed, the fixed relay: the stock one may abort by itself first
SUT_FIX = ROOT / "scenarios" / "patches" / "relay-reserve-slot-first.patch"
SHORT = ("duration=3", "settle=1", "bursts.every=1.0")
RUN_TIMEOUT_S = 120  # a rig that outlives its kill this long is a finding, not a hang
GC_TIMEOUT_S = 60


@dataclass(frozen=True)
class Round:
    """What one kill left behind after `rig gc`."""

    index: int
    killed_at_s: float
    exited_before_kill: bool
    processes: int
    containers: int | None  # None: no container engine to ask
    namespaces: int | None  # None: no `ip` command
    worktrees: int
    temp_folders: int
    run_folder: str  # incomplete | whole | none | broken
    gc_exit: int
    victim: str = "rig"  # rig, or the service killed
    rig_exit: int | None = None  # with a service killed: how the rig ended by itself
    verdict: str | None = None  # the run folder's verdict
    cause_named: bool | None = None  # services_alive names the victim's pid and SIGKILL
    alive_detail: str | None = None  # services_alive's detail


def run_folder_state(folder: Path) -> str:
    """`incomplete`, `whole` (a verdict and its checks), `none` (never made) or `broken`."""
    summary = folder / "summary.json"
    if not folder.exists():
        return "none"
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return "broken"
    if data.get("verdict") == "incomplete":
        return "incomplete"
    whole = data.get("verdict") in ("pass", "fail", "error") and isinstance(
        data.get("checks"), list)
    return "whole" if whole else "broken"


def processes_of(runtime: Path) -> int:
    """Live processes started under this runtime folder (the rig's children, labelled or not)."""
    count = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("RIG_RUNTIME_DIR") == str(runtime):
                count += 1
        except psutil.Error:
            continue
    return count


def containers_of(runtime: Path) -> int | None:
    try:
        from rig.errors import InfraError
        from rig.topology.docker import RUNTIME_LABEL, connect

        client = connect(None)
    except (ImportError, InfraError):
        return None
    label = f"{RUNTIME_LABEL}={runtime}"
    return len(client.containers.list(all=True, filters={"label": label}))


def namespaces_of(run_ids: set[str]) -> int | None:
    if shutil.which("ip") is None:
        return None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout.split()
    ours = {namespace_name(run_id) for run_id in run_ids}
    return sum(1 for name in listed if name in ours)


def worktrees_under(folder: Path) -> int:
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
                            capture_output=True, text=True, check=False).stdout
    paths = [line.split(" ", 1)[1] for line in listed.splitlines()
             if line.startswith("worktree ")]
    return sum(1 for path in paths if Path(path).resolve().is_relative_to(folder.resolve()))


def run_ids_of(runtime: Path, folder: Path) -> set[str]:
    """The run ids of a round: from its run records (read before gc) and its run folder."""
    ids = {path.stem for path in (runtime / "runs").glob("*.json")}
    try:
        ids.add(str(json.loads((folder / "summary.json").read_text())["run_id"]))
    except (OSError, ValueError, KeyError):
        pass
    return ids


def recorded_process(runtime: Path, service: str) -> tuple[int, float] | None:
    """(pid, start time) of a service in the round's run record, once it is listed."""
    for path in (runtime / "runs").glob("*.json"):
        try:
            entries = json.loads(path.read_text())["processes"]
        except (OSError, ValueError, KeyError):
            continue  # being replaced
        for entry in entries:
            if entry["name"] == service:
                return int(entry["pid"]), float(entry["started"])
    return None


def kill_service(rig: subprocess.Popen[bytes], runtime: Path, victim: str,
                 delay: float) -> tuple[bool, int | None]:
    """SIGKILL the victim `delay` s after its pid is recorded, unless the run ended first
    (or the pid is no longer that process). Returns (ended before the kill, pid)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    found = None
    while found is None and rig.poll() is None and time.monotonic() < deadline:
        found = recorded_process(runtime, victim)
        time.sleep(0.02)
    if found is None or _wait(rig, delay):
        return True, None
    pid, started = found
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) >= 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return True, pid
        proc.send_signal(signal.SIGKILL)
    except psutil.Error:
        return True, pid
    return False, pid


def verdict_of(folder: Path, victim: str,
               pid: int | None) -> tuple[str | None, bool | None, str | None]:
    """The verdict, whether services_alive names the victim's death, and its detail."""
    try:
        data = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None, None, None
    alive = next((c for c in data.get("checks", []) if c.get("name") == "services_alive"), None)
    detail = None if alive is None else str(alive.get("detail", ""))
    if pid is None or detail is None:
        return data.get("verdict"), None, detail
    named = detail.startswith(f"{victim} (pid {pid}) died with SIGKILL")
    return data.get("verdict"), named, detail


def one_round(index: int, base: Path, delay: float, victim: str = "rig") -> Round:
    runtime, tmp, out = base / f"runtime-{index}", base / f"tmp-{index}", base / f"out-{index}"
    tmp.mkdir(parents=True)
    env = {**os.environ, "RIG_RUNTIME_DIR": str(runtime), "TMPDIR": str(tmp)}
    sets = [arg for value in SHORT for arg in ("--set", value)]
    scenario = SUT_SCENARIOS.get(victim, SCENARIO)
    if victim != "rig":
        sets += ["--patch", str(SUT_FIX)]
    rig = subprocess.Popen(
        [sys.executable, "-m", "rig.cli", "run", str(scenario), "--out", str(out / "run"),
         "--no-progress", *sets],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    try:
        if victim == "rig":
            exited = _wait(rig, delay)
            if not exited:
                rig.send_signal(signal.SIGKILL)
        else:
            exited, pid = kill_service(rig, runtime, victim, delay)
        rig.wait(RUN_TIMEOUT_S)
    finally:
        if rig.poll() is None:
            rig.kill()
            rig.wait()
    run_ids = run_ids_of(runtime, out / "run")
    gc = subprocess.run([sys.executable, "-m", "rig.cli", "gc"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=GC_TIMEOUT_S, check=False)
    verdict, named, detail = verdict_of(out / "run", victim, None if exited else pid)
    return Round(
        index=index, killed_at_s=round(delay, 3), exited_before_kill=exited,
        processes=processes_of(runtime), containers=containers_of(runtime),
        namespaces=namespaces_of(run_ids), worktrees=worktrees_under(tmp),
        temp_folders=len(list(tmp.iterdir())), run_folder=run_folder_state(out / "run"),
        gc_exit=gc.returncode, victim=victim,
        rig_exit=None if victim == "rig" else rig.returncode, verdict=verdict,
        cause_named=named, alive_detail=detail)


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """True if the process ended by itself within `seconds`."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


@dataclass(frozen=True)
class Totals:
    rounds: int
    killed_mid_run: int
    processes: int
    containers: int | None
    namespaces: int | None
    worktrees: int
    temp_folders: int
    incomplete: int
    whole: int
    no_folder: int
    broken: int
    gc_failures: int
    verdicts: dict[str, int]  # verdict (or "none") -> rounds
    rig_exits: dict[str, int]  # with a service killed: the rig's exit code -> rounds
    cause_named: int  # rounds killed mid-run whose services_alive named the victim
    checked: int  # rounds killed mid-run that got to their checks (not exit 3)


def _sum_known(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def totals(rounds: list[Round]) -> Totals:
    states = [r.run_folder for r in rounds]
    return Totals(
        rounds=len(rounds), killed_mid_run=sum(not r.exited_before_kill for r in rounds),
        processes=sum(r.processes for r in rounds),
        containers=_sum_known([r.containers for r in rounds]),
        namespaces=_sum_known([r.namespaces for r in rounds]),
        worktrees=sum(r.worktrees for r in rounds),
        temp_folders=sum(r.temp_folders for r in rounds),
        incomplete=states.count("incomplete"), whole=states.count("whole"),
        no_folder=states.count("none"), broken=states.count("broken"),
        gc_failures=sum(r.gc_exit != 0 for r in rounds),
        verdicts=dict(Counter(str(r.verdict or "none") for r in rounds)),
        rig_exits=dict(Counter(str(r.rig_exit) for r in rounds if r.rig_exit is not None)),
        cause_named=sum(bool(r.cause_named) for r in rounds),
        checked=sum(r.cause_named is not None for r in rounds))


def table(total: Totals) -> str:
    def shown(value: int | None) -> str:
        return "n/a" if value is None else str(value)

    rows = [
        ("rounds (killed mid-run)", f"{total.rounds} ({total.killed_mid_run})"),
        ("processes left", str(total.processes)),
        ("containers left", shown(total.containers)),
        ("network namespaces left", shown(total.namespaces)),
        ("worktrees left", str(total.worktrees)),
        ("temporary folders left", str(total.temp_folders)),
        ("run folders: incomplete / whole / none / broken",
         f"{total.incomplete} / {total.whole} / {total.no_folder} / {total.broken}"),
        ("rig gc failures", str(total.gc_failures)),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in sorted(total.verdicts.items()))),
    ]
    if total.rig_exits:
        rows += [("rig exit codes (the rig was not killed)",
                  ", ".join(f"{k}: {v}" for k, v in sorted(total.rig_exits.items()))),
                 ("services_alive names the victim's pid and SIGKILL (of the runs that "
                  "got to their checks)", f"{total.cause_named} of {total.checked}")]
    lines = ["| after SIGKILL and rig gc | count |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--window", type=float, default=12.0,
                        help="kill at a moment uniform in [0, WINDOW] seconds after the start")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--kill", choices=("rig", "sut"), default="rig",
                        help="SIGKILL `rig run` itself, or one of its services in turn "
                             f"({', '.join(SUT_SCENARIOS)})")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.window <= 0:
        parser.error("--rounds must be >= 1 and --window > 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    started = time.monotonic()
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="rig-chaos-") as base:
        victims = list(SUT_SCENARIOS) if args.kill == "sut" else ["rig"]
        for index in range(args.rounds):
            victim = victims[index % len(victims)]
            result = one_round(index, Path(base), rng.uniform(0.0, args.window), victim)
            rounds.append(result)
            print(f"  round {index}: {victim} killed at {result.killed_at_s:.2f} s"
                  f"{' (ended before)' if result.exited_before_kill else ''}, "
                  f"folder {result.run_folder}, verdict {result.verdict}, "
                  f"rig exit {result.rig_exit}, named {result.cause_named}, "
                  f"processes {result.processes}, temp folders {result.temp_folders}",
                  file=sys.stderr, flush=True)
    total = totals(rounds)
    machine = {"cpus": os.cpu_count(), "loadavg_before": list(load_before),
               "loadavg_after": list(os.getloadavg())}
    what = ("`rig run`" if args.kill == "rig"
            else f"a service of `rig run` ({', '.join(SUT_SCENARIOS)} in turn)")
    text = (f"Chaos: {args.rounds} SIGKILLs of {what} ({SCENARIO.name}, "
            f"{', '.join(SHORT)}) at a moment uniform in [0, {args.window:g}] s "
            f"{'after the start' if args.kill == 'rig' else 'after its pid is recorded'}, "
            f"then rig gc; "
            f"{time.monotonic() - started:.0f} s, load average {load_before[0]:.1f} before, "
            f"{machine['loadavg_after'][0]:.1f} after\n\n" + table(total))
    print(text)
    save("chaos.json" if args.kill == "rig" else "chaos-sut.json", {
          "schema_version": 2, "kill": args.kill, "scenario": SCENARIO.name,
          "overrides": list(SHORT),
          "window_s": args.window, "seed": args.seed, "machine": machine,
          "totals": asdict(total), "rounds": [asdict(r) for r in rounds]})
    return 0


def save(name: str, payload: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_json_atomic(OUT / name, payload)
    print(f"saved: {OUT / name}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
