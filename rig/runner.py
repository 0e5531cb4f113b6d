"""One run of one scenario: the data flow from scenario to report, start to end.

scenario -> topology up -> load + bursts while probes sample -> checks -> results -> report.
Everything started here is stopped here, on every exit path (ExitStack), Ctrl-C included.

The topology decides who drives the media relay: with `model` the rig sends NG itself
(it plays Kamailio's rtpengine module); with `kamailio` the rig's UAC calls through
Kamailio and Kamailio's rtpengine module sends the NG commands.
"""

from __future__ import annotations

import asyncio
import math
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.capture import run_filter, start_capture
from rig.clock import Clock, SystemClock
from rig.errors import UsageError
from rig.probes import Probe
from rig.probes.kmod import KmodStatusProbe
from rig.probes.logs import LogFollower, parse_relay_line, parse_rtpengine_line
from rig.probes.proc import ProcessProbe
from rig.probes.relay import RelayStatsProbe
from rig.probes.sampler import Sampler
from rig.series import Event, Sample, Series
from rig.topology import Endpoints, ServiceSpec, Stack
from rig.topology.local import LocalBackend
from rig.topology.model import RelaySettings
from rig.topology.real import (
    KamailioSettings,
    RtpengineSettings,
    RunDirs,
    StackPlan,
    container_specs,
    local_specs,
)
from rig.topology.runtime import RunRecord, process_labels, reserved_host
from rig.topology.source import apply_patches, copy_sources

RIG_ROOT = Path(__file__).resolve().parents[1]
CRASH_POLL_S = 0.1
EXIT_PASS, EXIT_FAIL = 0, 1
# NG 2223, the rig's UAC 5060 and UAS 5080, Kamailio 5070, rtpengine's CLI 9900
RUN_PORTS = [2223, 5060, 5070, 5080, 9900]
ROLES = {"relay": "media", "rtpengine": "media", "kmod": "kernel", "kamailio": "proxy"}
NG_LIST_LIMIT = 100_000  # rtpengine lists 32 call-ids unless asked for more
LOG_PARSERS = {"relay": parse_relay_line, "rtpengine": parse_rtpengine_line}


@dataclass(frozen=True)
class RunRequest:
    """What `rig run` was asked to do."""

    scenario_path: Path
    overrides: tuple[str, ...] = ()
    patches: tuple[Path, ...] = ()
    out: Path | None = None
    results_root: Path = Path("results")
    repo: Path | None = None
    progress: bool = True
    target: str | None = None  # local | docker; None: the scenario's `target`


@dataclass(frozen=True)
class RunOutcome:
    folder: Path
    verdict: str
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.verdict == "pass" else EXIT_FAIL


@dataclass
class Recorder:
    """Collects samples and events in memory and streams them into the run folder."""

    folder: Any  # rig.results.RunFolder
    series: Series = field(default_factory=Series)
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, sample: Sample) -> None:
        with self.lock:
            self.series.append(sample)
            self.folder.append_sample(sample)

    def event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
            self.folder.append_event(event)


def resolve_patches(names: tuple[str, ...] | list[str], bases: list[Path]) -> list[Path]:
    """A scenario's patch names are looked up next to the scenario, then in the repository."""
    found = []
    for name in names:
        path = Path(name)
        candidates = [path] if path.is_absolute() else [base / path for base in bases]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise UsageError(f"patch not found: {name}")
        found.append(match.resolve())
    return found


def source_commit(repo: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def environment() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "hostname": platform.node(),
    }


class Run:
    """Carries one run through its stages; `execute()` returns the outcome."""

    def __init__(self, request: RunRequest, clock: Clock | None = None) -> None:
        from rig.scenario import load_scenario

        self.request = request
        self.clock = clock or SystemClock()
        self.scenario = load_scenario(request.scenario_path, request.overrides)
        self.repo = (request.repo or RIG_ROOT).resolve()
        bases = [request.scenario_path.resolve().parent, self.repo, Path.cwd()]
        self.patches = resolve_patches(list(self.scenario.services.patches), bases) + [
            p.resolve() for p in request.patches
        ]
        for patch in request.patches:
            if not patch.is_file():
                raise UsageError(f"patch not found: {patch}")
        self.started_mono = 0.0
        self.started_wall = 0.0
        self.target = request.target or self.scenario.target
        if self.target not in ("local", "docker"):
            raise UsageError(f"unknown target {self.target!r} (allowed: docker, local)")
        self.plan = stack_plan(self.scenario)
        self.stack_timing: dict[str, float] = {}
        self.exited: list[str] = []

    # -- stages ---------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        from rig.results import RunFolder, new_run_id

        run_id = new_run_id(self.scenario.name, self.clock.wall())
        out = self.request.out or self.request.results_root / run_id
        folder = RunFolder.create(out.parent, out.name)
        recorder = Recorder(folder)
        record = RunRecord.for_this_process(run_id)
        with ExitStack() as stack:
            stack.callback(record.remove)
            endpoints = Endpoints(host=stack.enter_context(reserved_host(RUN_PORTS)))
            self.capture = start_capture(
                self.scenario.capture, folder.path,
                run_filter(endpoints, self.plan.kamailio.sip_port if self.plan.with_kamailio
                           else None), record.add_process, process_labels(run_id))
            stack.callback(self.capture.stop)  # after the stack stops: registered before it
            services = self._start_services(stack, record, folder, endpoints)
            self.started_mono = self.clock.monotonic()
            self.started_wall = self.clock.wall()
            window, load = self._drive_and_sample(services, endpoints, recorder, stack)
            services.close()
            self._note_exits(services, recorder)
        return self._conclude(folder, recorder, window, load, run_id)

    def _start_services(
        self, stack: ExitStack, record: RunRecord, folder: Any, endpoints: Endpoints
    ) -> Stack:
        workdir = Path(tempfile.mkdtemp(prefix="rig-"))
        record.add_folder(workdir)
        stack.callback(shutil.rmtree, workdir, True)
        svc = self.scenario.services
        sources = {name: getattr(svc, name).source for name in self.plan.services}
        copies = copy_sources(self.repo, sources, workdir / "src")
        apply_patches(workdir / "src", self.patches)
        self.dirs = RunDirs(state=workdir / "proc", kamailio=workdir / "kamailio")
        self.dirs.state.mkdir()
        self.dirs.kamailio.mkdir()
        clock = self.clock
        if self.target == "docker":
            began = clock.monotonic()
            backend, specs = self._docker(stack, copies, endpoints, folder, record)
            self.stack_timing["images_s"] = round(clock.monotonic() - began, 3)
        else:
            backend = LocalBackend(endpoints, folder.logs_dir, record)
            specs = local_specs(self.plan, copies, self.dirs, endpoints)
        began = clock.monotonic()
        services = backend.start(specs)
        self.stack_timing["stack_start_s"] = round(clock.monotonic() - began, 3)
        stack.callback(services.close)
        return services

    def _docker(
        self, stack: ExitStack, copies: dict[str, Path], endpoints: Endpoints, folder: Any,
        record: RunRecord,
    ) -> tuple[Any, list[ServiceSpec]]:
        """Images of the (patched) copies, built unless their content hash exists."""
        from rig.topology.docker import DockerBackend, connect
        from rig.topology.images import build_images

        client = connect()
        stack.callback(client.close)
        with open(folder.logs_dir / "build.log", "a", encoding="utf-8") as log:
            images = build_images(client, copies, progress=lambda line: print(line, file=log))
        tags = {name: image.tag for name, image in images.items()}
        backend = DockerBackend(endpoints, folder.logs_dir, record, client=client)
        return backend, container_specs(self.plan, tags, self.dirs, endpoints)

    def _probes(self, services: Stack, endpoints: Endpoints, driver: Any) -> list[Probe]:
        from rig.probes.kamailio import KamailioProbe
        from rig.probes.rtpengine import RtpengineNgProbe
        from rig.topology.real import kamailio_ctl

        host, ng = endpoints.host, endpoints.ng_port
        media = self.plan.media
        probes: list[Probe] = []
        if media == "relay":
            probes += [KmodStatusProbe.for_table(self.dirs.state, endpoints.table),
                       RelayStatsProbe(host, ng)]
        else:
            probes.append(RtpengineNgProbe(host, ng))
        probes.append(ProcessProbe(services.services[media].pid, media))
        if self.plan.with_kamailio:
            probes.append(KamailioProbe(kamailio_ctl(self.dirs.kamailio), modules=False))
        self.sessions_probe = MediaSessionsProbe(host, ng, driver.ended_call_ids)
        return [*probes, self.sessions_probe, LoadProbe(driver.snapshot)]

    def _drive_and_sample(
        self, services: Stack, endpoints: Endpoints, recorder: Recorder, stack: ExitStack
    ) -> tuple[Any, dict[str, Any]]:
        from rig.checks import RunWindow
        from rig.load.driver import LoadDriver

        scenario = self.scenario
        driver = LoadDriver(
            calls_plan(scenario),
            burst_plan(scenario),
            targets_for(endpoints, self.plan),
            on_event=lambda kind, data: recorder.event(Event(self._now(), kind, data)),
            seed=scenario.seed,
        )
        follower = self._relay_log_follower(services, recorder)
        sampler = Sampler(
            self._probes(services, endpoints, driver),
            scenario.probes.interval,
            self.clock,
            self.started_mono,
            recorder.sample,
            on_probe_error=lambda name, msg: recorder.event(
                Event(self._now(), "probe_error", {"probe": name, "message": msg})
            ),
        )
        if follower is not None:
            follower.start()
            stack.callback(follower.stop)
        sampler.sample_once()  # the baseline, before any load
        # Every later sample reads after this instant, so none of them counts as the
        # baseline, even one whose probes were read while the first calls were set up.
        load_start = before_later_samples(self._now())
        sampler.start()
        stack.callback(sampler.stop)
        progress = Progress(self.request.progress, scenario.duration + scenario.settle)
        stack.callback(progress.close)
        report, crashed = asyncio.run(
            drive_until_crash(driver, scenario.duration, self._first_exit(services),
                              progress.update)
        )
        load_stop = self._now()
        self._settle(scenario.settle, progress)
        if crashed or self._first_exit(services)() is not None:
            self._note_crash(services, recorder)
        sampler.stop()
        if follower is not None:
            follower.stop()
        self._note_orphans(recorder)
        end = self._now()
        load = load_numbers(report, driver.snapshot(), load_stop - load_start)
        return RunWindow(load_start=load_start, load_stop=load_stop, end=end), load

    def _settle(self, seconds: float, progress: Progress) -> None:
        deadline = self.clock.monotonic() + seconds
        while (left := deadline - self.clock.monotonic()) > 0:
            self.clock.sleep(min(0.25, left))
            progress.update()

    def _now(self) -> float:
        return round(self.clock.monotonic() - self.started_mono, 6)

    def _relay_log_follower(self, services: Stack, recorder: Recorder) -> LogFollower | None:
        """make_shard and CRIT lines of the media relay become events (rtpengine logs
        make_shard only where a user's build has the instrumentation line)."""
        name = next((n for n in LOG_PARSERS if n in services.services), None)
        if name is None:
            return None
        parse = LOG_PARSERS[name]
        return LogFollower(
            services.services[name].log_path,
            lambda line: parse(line, self.started_wall),
            recorder.event,
        )

    def _first_exit(self, services: Stack) -> Callable[[], int | None]:
        """The exit code of the first service that stopped during the run, else None."""

        def exit_code() -> int | None:
            for name, service in services.services.items():
                code = service.exit_code()
                if code is not None:
                    if name not in self.exited:
                        self.exited.append(name)
                    return code
            return None

        return exit_code

    def _note_crash(self, services: Stack, recorder: Recorder) -> None:
        for name in self.exited:
            service = services.services[name]
            crit = [e for e in recorder.events if e.kind == "crit"]
            if name == "relay" and crit:
                line = crit[-1].data["line"]
            else:
                line = last_log_line(service.log_path) or "(no line in the log)"
            recorder.event(Event(self._now(), "crash", {
                "service": name, "role": ROLES.get(name, name),
                "exit_code": service.exit_code(), "line": line,
            }))

    def _note_orphans(self, recorder: Recorder) -> None:
        probe = getattr(self, "sessions_probe", None)
        if probe is not None and probe.orphan_ids is not None:
            recorder.event(Event(self._now(), "orphan_sessions", {
                "count": len(probe.orphan_ids), "call_ids": sorted(probe.orphan_ids)[:20],
            }))

    def _note_exits(self, services: Stack, recorder: Recorder) -> None:
        codes: dict[str, int] = getattr(services, "exit_codes", {})  # both backends keep them
        for name, code in codes.items():
            recorder.event(Event(self._now(), "service_exit", {"service": name, "code": code}))

    def _conclude(
        self, folder: Any, recorder: Recorder, window: Any, load: dict[str, Any], run_id: str
    ) -> RunOutcome:
        from rig.checks import run_checks
        from rig.report import html_report, plot_run
        from rig.results import build_summary

        verdicts = run_checks(self.scenario.checks, recorder.series, recorder.events, window)
        summary = build_summary(
            run_id=run_id,
            scenario=self.scenario,
            verdicts=verdicts,
            series=recorder.series,
            events=recorder.events,
            load=load,
            sut={
                "commit": source_commit(self.repo),
                "patches": [p.name for p in self.patches],
                "target": self.target,
                "topology": self.plan.topology,
                "media": self.plan.media,
                "services": list(self.plan.services),
            },
            timing={
                "started": self.started_wall,
                "finished": self.clock.wall(),
                "duration_s": round(window.end, 3),
                **self.stack_timing,
            },
            environment=environment(),
            window=window,
        )
        summary["capture"] = self.capture.summary()
        folder.finish(summary)
        plot_run(folder.path)
        html_report([folder.path], folder.path / "report.html")
        return RunOutcome(folder.path, summary["verdict"], summary)


def call_ids(reply: dict[str, Any]) -> set[str]:
    """Call-ids of an NG `list` reply (rtpengine sends bytes, the model relay text)."""
    calls = reply.get("calls") or []
    return {c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in calls}


@dataclass
class MediaSessionsProbe:
    """`media.sessions` (the relay's NG `list`, for either relay) and `media.orphan_sessions`:
    sessions of calls the rig saw end. Right after a call ends its delete may still be on the
    way, so only the readings after the load (settle) say whether a session leaked."""

    host: str
    port: int
    ended: Callable[[], set[str]]
    timeout: float = 0.5
    name: str = "media"
    orphan_ids: set[str] | None = None

    def read(self) -> dict[str, float]:
        from rig.load.ng import ng_request
        from rig.probes import ProbeError

        try:
            reply = ng_request(self.host, self.port, {"command": "list",
                                                      "limit": NG_LIST_LIMIT}, self.timeout)
        except Exception as exc:
            raise ProbeError(f"NG list: {exc}") from exc
        ids = call_ids(reply)
        self.orphan_ids = ids & self.ended()
        return {"media.sessions": float(len(ids)),
                "media.orphan_sessions": float(len(self.orphan_ids))}


@dataclass
class LoadProbe:
    snapshot: Callable[[], dict[str, float]]
    name: str = "load"

    def read(self) -> dict[str, float]:
        return dict(self.snapshot())


class Progress:
    """A tqdm bar over the planned seconds of the run (hidden when not wanted)."""

    def __init__(self, enabled: bool, total_s: float) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=round(total_s, 1), unit="s", desc="run", leave=False,
                            bar_format="{desc} {bar} {n:.0f}/{total:.0f} s {postfix}")
        self.clock = SystemClock()
        self.start = self.clock.monotonic()

    def update(self, postfix: str = "") -> None:
        if self.bar is None:
            return
        self.bar.n = min(self.bar.total, round(self.clock.monotonic() - self.start, 1))
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def drive_until_crash(
    driver: Any,
    duration: float,
    exit_code: Callable[[], int | None],
    tick: Callable[[str], None],
) -> tuple[Any, bool]:
    """Run the load; stop it early if the relay dies. Returns (report or None, crashed)."""
    task = asyncio.create_task(driver.run(duration))
    while not task.done():
        await asyncio.wait({task}, timeout=CRASH_POLL_S)
        snap = driver.snapshot()
        tick(f"calls {snap.get('load.calls_completed', 0):.0f} "
             f"active {snap.get('load.calls_active', 0):.0f}")
        if exit_code() is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            return None, True
    return task.result(), exit_code() is not None


def load_numbers(report: Any, snapshot: dict[str, float], seconds: float) -> dict[str, Any]:
    """The summary's load block, from the driver's report or, after a crash, its counters."""
    if report is not None:
        return {
            "calls_attempted": report.calls_attempted,
            "calls_completed": report.calls_completed,
            "calls_failed": report.calls_failed,
            "outcomes": dict(report.outcomes),
            "cps": round(report.cps_achieved, 2),
            "rtp_sent": report.rtp_sent,
            "rtp_received": report.rtp_received,
            "rtp_lost": report.rtp_lost,
            "jitter_ms_max": report.jitter_ms_max,
            "bursts": list(report.bursts),
        }
    completed = snapshot.get("load.calls_completed", 0.0)
    failed = snapshot.get("load.calls_failed", 0.0)
    active = snapshot.get("load.calls_active", 0.0)
    return {
        "calls_attempted": int(completed + failed + active),
        "calls_completed": int(completed),
        "calls_failed": int(failed),
        "outcomes": {},
        "cps": round((completed + failed) / seconds, 2) if seconds > 0 else 0.0,
        "rtp_sent": int(snapshot.get("load.rtp_sent", 0)),
        "rtp_received": int(snapshot.get("load.rtp_received", 0)),
        "rtp_lost": None,
        "jitter_ms_max": None,
        "bursts": [],
        "interrupted_by_crash": True,
    }


def calls_plan(scenario: Any) -> Any:
    from rig.load.driver import CallPlan, RtpPlan

    load = scenario.load
    rtp = None
    if load.rtp is not None:
        rtp = RtpPlan(payload_type=PAYLOAD_TYPES[load.rtp.codec], ptime_ms=load.rtp.ptime)
    return CallPlan(
        cps=load.cps,
        max_concurrent=load.max_concurrent,
        hold=load.hold,
        outcomes=dict(load.outcomes),
        no_answer_timeout=load.no_answer_timeout,
        rtp=rtp,
    )


def burst_plan(scenario: Any) -> Any:
    from rig.load.driver import BurstPlan

    bursts = scenario.bursts
    if bursts is None:
        return None
    return BurstPlan(
        first_at=bursts.first_at,
        every=bursts.every,
        count=bursts.count,
        workers=bursts.workers,
        streams_per_worker=bursts.streams_per_worker,
        hold=bursts.hold,
        lanes=bursts.lanes,
        processes=bursts.processes,
        jitter=bursts.jitter,
        sink=bursts.sink,
    )


def targets_for(endpoints: Endpoints, plan: StackPlan | None = None) -> Any:
    """Where the rig's calls go: straight to its UAS with the rig sending NG (model), or
    through Kamailio, which sends NG itself (kamailio)."""
    from rig.load.driver import Targets

    through_proxy = plan is not None and plan.with_kamailio
    return Targets(
        host=endpoints.host,
        uac_port=endpoints.uac_port,
        uas_port=endpoints.uas_port,
        rtp_ports=endpoints.rig_rtp_ports,
        proxy=(endpoints.host, plan.kamailio.sip_port) if through_proxy and plan else None,
        ng=None if through_proxy else (endpoints.host, endpoints.ng_port),
    )


def stack_plan(scenario: Any) -> StackPlan:
    svc = scenario.services
    kam = svc.kamailio
    return StackPlan(
        topology=scenario.topology,
        media=svc.media,
        relay=RelaySettings(workers=svc.relay.workers, shard_size=svc.relay.shard_size),
        kamailio=KamailioSettings(shm_manager=kam.shm_manager, pkg_manager=kam.pkg_manager,
                                  shm_mb=kam.shm_mb, pkg_mb=kam.pkg_mb, workers=kam.workers),
        rtpengine=RtpengineSettings(delete_delay=svc.rtpengine.delete_delay),
    )


SAMPLE_T_STEP = 1e-4  # the sampler rounds sample times to 4 decimals


def before_later_samples(now: float) -> float:
    """A load start strictly before the (rounded) time of any sample taken after `now`."""
    return math.floor(now / SAMPLE_T_STEP) * SAMPLE_T_STEP - SAMPLE_T_STEP


def last_log_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


def run_scenario(request: RunRequest, clock: Clock | None = None) -> RunOutcome:
    """Run one scenario; raises ScenarioError/UsageError (bad input) or InfraError."""
    return Run(request, clock).execute()
