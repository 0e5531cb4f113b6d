"""One run of one scenario: the data flow from scenario to report, start to end.

scenario -> topology up -> load + bursts while probes sample -> checks -> results -> report.
Everything started here is stopped here, on every exit path (ExitStack), Ctrl-C included.

The topology decides who drives the media relay: with `model` the rig sends NG itself
(it plays Kamailio's rtpengine module); with `kamailio` the rig's UAC calls through
Kamailio and Kamailio's rtpengine module sends the NG commands.
"""

from __future__ import annotations

import asyncio
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.capture import interface_of, run_filter, start_capture
from rig.clock import Clock, SystemClock
from rig.console import Progress
from rig.errors import InfraError, UsageError
from rig.interrupts import asyncio_sigint, raise_if_stopping
from rig.load.numbers import load_numbers
from rig.plan import (
    before_later_samples,
    burst_plan,
    calls_plan,
    check_recording,
    generator_shares,
    hostile_plan,
    load_processes,
    port_layout,
    stack_plan,
    targets_for,
)
from rig.probes import Probe
from rig.probes.logs import LogFollower
from rig.probes.media import LoadProbe, MediaSessionsProbe
from rig.probes.sampler import Sampler
from rig.series import Event, Sample, Series
from rig.services import LogParser, Site, role_of, service, service_ports
from rig.summary import Summary
from rig.topology import Endpoints, Stack, backend_class
from rig.topology.destinations import parse_networks
from rig.topology.runtime import (
    RunRecord,
    held_host,
    held_kernel_table,
    process_labels,
    reserved_host,
)
from rig.topology.source import apply_patches, check_sources, copy_file, copy_sources
from rig.topology.watch import Death, Watch

RIG_ROOT = Path(__file__).resolve().parents[1]
CRASH_POLL_S = 0.1
EXIT_PASS, EXIT_FAIL, EXIT_INFRA = 0, 1, 3


def run_ports(processes: int = 1) -> list[int]:
    """The fixed ports a run needs free on its host: the rig's UAC and UAS (one pair per
    generator process), the services'."""
    from rig.load.shares import extra_sip_ports

    rig = Endpoints("")
    return sorted({rig.uac_port, rig.uas_port, *extra_sip_ports(processes), *service_ports()})


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
    allow_outside_sources: bool = False  # a service `source` may be an absolute path
    cluster: str | None = None  # the generators as Ray actors there (`local`: on 127.0.0.1)


@dataclass(frozen=True)
class SourceTree:
    """The run's working folder: `src/` holds the patched copies of the service folders."""

    workdir: Path
    copies: dict[str, Path]


@dataclass(frozen=True)
class RunOutcome:
    folder: Path
    verdict: str
    summary: Summary

    @property
    def exit_code(self) -> int:
        if self.verdict == "error":  # the rig's own machinery failed (a generator died)
            return EXIT_INFRA
        return EXIT_PASS if self.verdict == "pass" else EXIT_FAIL


@dataclass
class Recorder:
    """Streams samples and events into the run folder. Samples are not kept in memory (a
    long run would grow by every one of them): the checks read series.csv back at the end.
    Events are few and are kept."""

    folder: Any  # rig.results.RunFolder
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, sample: Sample) -> None:
        with self.lock:
            self.folder.append_sample(sample)

    def series(self) -> Series:
        from rig.results import read_series

        with self.lock:
            return read_series(self.folder.path)

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
        self.backend_factory = backend_class(self.target)
        self.plan = stack_plan(self.scenario)
        self.ports = port_layout(self.scenario, self.plan)
        from rig.load.shares import usable_cpus

        self.processes = load_processes(self.scenario, self.plan, usable_cpus())
        self.load_error: str | None = None  # a generator process that died: verdict error
        for name in self.plan.services:
            self.plan.settings_of(name).check_target(name, self.target)
        check_sources(self.repo, self._sources(), allow_outside=request.allow_outside_sources)
        check_hostile_tools(self.scenario)
        self.recording = self._recording(request.scenario_path)
        self.hostile: Any = None  # rig.load.hostile.HostileTraffic, with a `hostile:` section
        self.stack_timing: dict[str, float] = {}
        self.crit_lines: dict[str, str] = {}  # service -> its last CRIT line
        self.versions: dict[str, str] = {}  # service -> the version it reports
        self.namespace: str | None = None
        self.addresses: dict[str, Any] | None = None  # summary.json sut.addresses
        self._check_netns()
        self._check_hosts()

    def _check_hosts(self) -> None:
        """Generators on other hosts call their own UAS; Kamailio would send every call to
        the SUT host's."""
        targets = self.scenario.targets
        if self.request.cluster is not None and targets.beyond_loopback and self.plan.proxy:
            raise UsageError(f"--cluster with targets.host {targets.host} needs topology: "
                             "model (Kamailio sends every call to its one callee, on the SUT "
                             "host)")

    def _check_netns(self) -> None:
        """A namespace needs local processes, its ruleset file, and a machine that can host
        it (root, ip, nft, conntrack); all known before anything starts."""
        from rig.topology import netns

        settings = self.scenario.netns
        if settings is None:
            return
        if self.target != "local":
            raise UsageError(f"netns: the run's namespace holds local processes only "
                             f"(target local, not {self.target})")
        if not (self.repo / settings.ruleset).resolve().is_relative_to(self.repo):
            raise UsageError(f"netns.ruleset: {settings.ruleset} leads out of the repository "
                             f"{self.repo} (allowed: a file inside it)")
        if not (self.repo / settings.ruleset).is_file():
            raise UsageError(f"netns.ruleset: no such file {settings.ruleset} in {self.repo}")
        why = netns.missing_capability()
        if why is not None:
            raise InfraError(f"network namespace for the run: {why}")

    def _recording(self, scenario_path: Path) -> Any:
        """load.rtp.pcap read before anything starts (rig.wire.rtpplay.Recording), or None."""
        rtp = self.scenario.load.rtp
        if rtp is None or rtp.pcap is None:
            return None
        from rig.load.rtpcapture import load_recording

        path = Path(rtp.pcap)
        if not path.is_absolute():
            path = scenario_path.resolve().parent / path
        recording = load_recording(path)
        check_recording(recording, rtp.codec, rtp.pcap)
        return recording

    # -- stages ---------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        from rig.results import RunFolder, error_summary, new_run_id

        run_id = new_run_id(self.scenario.name, self.clock.wall())
        out = self.request.out or self.request.results_root / run_id
        folder = RunFolder.create(out.parent, out.name)
        recorder = Recorder(folder)
        record = self.record = RunRecord.for_this_process(run_id)
        try:
            window, load = self._run_stack(folder, recorder, record, run_id)
        except InfraError as exc:  # the rig lived: the folder says why, not "incomplete"
            folder.finish(error_summary(run_id, str(exc)))
            raise
        return self._conclude(folder, recorder, window, load, run_id)

    def _run_stack(
        self, folder: Any, recorder: Recorder, record: RunRecord, run_id: str
    ) -> tuple[Any, dict[str, Any]]:
        """Everything that runs between the run folder and the checks, stopped on exit."""
        with ExitStack() as stack:
            stack.callback(record.remove)
            tree = self._prepare_sources(stack, record)
            # before the capture and the services, so that both live in the namespace
            self._enter_namespace(stack, record, run_id, tree)
            host = stack.enter_context(self._held_host())
            endpoints = Endpoints(host=host, relay_rtp_ports=self.ports.relay,
                                  rig_rtp_ports=self.ports.rig,
                                  allowed=parse_networks(self.scenario.targets.allow))
            for table in self._kernel_tables():
                stack.enter_context(held_kernel_table(table))
            self.addresses = self._addresses(endpoints)
            bpf = run_filter(endpoints, self.plan.sip_port, self._generator_sip_ports())
            self.capture = start_capture(self.scenario.capture, folder.path, bpf,
                                         record.add_process, process_labels(run_id),
                                         iface=interface_of(host))
            stack.callback(self.capture.stop)  # after the stack stops: registered before it
            services = self._start_services(stack, record, folder, endpoints, tree)
            self.started_mono = self.clock.monotonic()
            self.started_wall = self.clock.wall()
            for name, version in self.versions.items():
                recorder.event(Event(0.0, "service_version",
                                     {"service": name, "version": version}))
            window, load = self._drive_and_sample(services, endpoints, recorder, stack)
            services.close()
            self._note_exits(services, recorder)
        return window, load

    def _held_host(self) -> AbstractContextManager[str]:
        """The address the run's services and load bind on: `targets.host`, or a loopback
        address of the run's own."""
        ports = run_ports(self.processes)
        host = self.scenario.targets.host
        return reserved_host(ports) if host is None else held_host(host, ports)

    def _prepare_sources(self, stack: ExitStack, record: RunRecord) -> SourceTree:
        """The run's copy of the services' folders (and of the namespace's ruleset), with
        the patches applied to the copy."""
        workdir = Path(tempfile.mkdtemp(prefix="rig-"))
        record.add_folder(workdir)
        stack.callback(shutil.rmtree, workdir, True)
        copies = copy_sources(self.repo, self._sources(), workdir / "src", outside=(
            workdir / "outside" if self.request.allow_outside_sources else None))
        if self.scenario.netns is not None:
            copy_file(self.repo, self.scenario.netns.ruleset, workdir / "src")
        apply_patches(workdir / "src", self.patches)
        return SourceTree(workdir, copies)

    def _enter_namespace(
        self, stack: ExitStack, record: RunRecord, run_id: str, tree: SourceTree
    ) -> None:
        """With `netns:`, the rig's main thread (so every process, socket and thread the
        run makes from here on) moves into a namespace of the run's own, listed in the run
        record before it exists so that `rig gc` deletes it after a kill."""
        from rig.topology import netns

        settings = self.scenario.netns
        if settings is None:
            return
        defines = netns.port_defines(self.ports.relay, Endpoints("").ng_port, self.ports.rig)
        ruleset = (tree.workdir / "src" / settings.ruleset).read_text()
        plan = netns.NetnsPlan(netns.ruleset_text(ruleset, defines), settings.udp_timeout)
        name = netns.namespace_name(run_id)
        record.add_namespace(name)
        self.namespace = stack.enter_context(netns.run_namespace(name, plan))

    def _start_services(
        self, stack: ExitStack, record: RunRecord, folder: Any, endpoints: Endpoints,
        tree: SourceTree,
    ) -> Stack:
        plan = self.plan
        self.site = Site(endpoints, tree.workdir).make()
        backend = self.backend_factory(endpoints, folder.logs_dir, record)
        stack.callback(backend.close)
        recipes = {name: plan.settings_of(name).recipe() for name in plan.services}
        self.stack_timing.update(backend.prepare(tree.copies, recipes))
        specs = [backend.spec(service(name), plan.settings_of(name), self.site)
                 for name in plan.services]
        self.versions = service_versions(backend, specs)
        began = self.clock.monotonic()
        services = backend.start(specs)
        self.stack_timing["stack_start_s"] = round(self.clock.monotonic() - began, 3)
        stack.callback(services.close)
        return services

    def _kernel_tables(self) -> list[int]:
        """The machine's kernel forwarding tables the run opens (rtpengine's `table` >= 0);
        the kmod model's tables live in the run's own folder and need no hold."""
        tables = (getattr(self.plan.settings_of(name), "table", -1) for name in self.plan.services)
        return sorted({t for t in tables if isinstance(t, int) and t >= 0})

    def _sources(self) -> dict[str, str]:
        """The folder each service runs from: its source, or the context of a user's build."""
        return {name: self.plan.settings_of(name).folder() for name in self.plan.services}

    def _probes(self, services: Stack, endpoints: Endpoints, driver: Any) -> list[Probe]:
        """Each service's own probes, in start order, then the media relay's sessions
        (whichever relay it is) and the load's counters (with a cluster, per node too)."""
        probes: list[Probe] = []
        for name in self.plan.services:
            probes += service(name).probes(self.plan.settings_of(name), self.site,
                                           services.services[name])
        probes += self._kernel_probes(services)
        self.sessions_probe = MediaSessionsProbe(endpoints.host, endpoints.ng_port,
                                                 self._ended_call_ids(driver),
                                                 destinations=endpoints.guard())
        per_node = driver.node_snapshots if self.request.cluster is not None else None
        return [*probes, self.sessions_probe, LoadProbe(driver.snapshot, per_node=per_node)]

    def _ended_call_ids(self, driver: Any) -> Callable[[], set[str]]:
        """Calls whose media session must be gone: the ones the driver saw end, and every
        hostile INVITE (none of them is a call)."""
        hostile = self.hostile
        if hostile is None:
            return driver.ended_call_ids  # type: ignore[no-any-return]
        return lambda: driver.ended_call_ids() | hostile.invite_call_ids()

    def _hostile_traffic(self, endpoints: Endpoints, recorder: Recorder) -> Any:
        plan = hostile_plan(self.scenario, endpoints, self.plan)
        if plan is None:
            return None
        from rig.load.hostile import HostileTraffic

        return HostileTraffic(
            plan, on_event=lambda kind, data: recorder.event(Event(self._now(), kind, data)),
            on_process=self.record.add_process, env=process_labels(self.record.run_id))

    def _kernel_probes(self, services: Stack) -> list[Probe]:
        """Slab caches named in `probes.slab`; with `netns:`, the conntrack counters of the
        namespace the media relay runs in."""
        from rig.probes.kernel import NetnsProbe, SlabProbe

        probes: list[Probe] = []
        if self.scenario.probes.slab:
            probes.append(SlabProbe(self.scenario.probes.slab))
        if self.namespace is not None:
            probes.append(NetnsProbe(services.services[self.plan.media].pid))
        return probes

    def _drive_and_sample(
        self, services: Stack, endpoints: Endpoints, recorder: Recorder, stack: ExitStack
    ) -> tuple[Any, dict[str, Any]]:
        from rig.checks import RunWindow

        scenario = self.scenario
        driver = self._load_driver(endpoints, recorder)
        if self.request.cluster is not None:  # joins the cluster, places the actors
            stack.enter_context(driver)
        self.hostile = self._hostile_traffic(endpoints, recorder)
        followers = self._log_followers(services, recorder)
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
        for follower in followers:
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
        watch = Watch(services.services, self._now)
        watch.start()
        stack.callback(watch.stop)  # before the services stop: registered after them
        raise_if_stopping()  # before the load: a signal dropped while the services started
        with asyncio_sigint():
            report = asyncio.run(self._drive(driver, watch, progress, recorder))
        load_stop = self._now()
        self._settle(scenario.settle, progress)
        self._note_crash(watch.stop(), services, recorder)
        sampler.stop()
        for follower in followers:
            follower.stop()
        self._note_orphans(recorder)
        end = self._now()
        load = load_numbers(report, driver.snapshot(), load_stop - load_start)
        return RunWindow(load_start=load_start, load_stop=load_stop, end=end), load

    def _addresses(self, endpoints: Endpoints) -> dict[str, Any]:
        """summary.json's `sut.addresses`: where the run listened and sent from."""
        return {"host": endpoints.host, "ng_port": endpoints.ng_port,
                "sip_port": self.plan.sip_port, "uac_port": endpoints.uac_port,
                "uas_port": endpoints.uas_port,
                "generator_sip_ports": self._generator_sip_ports(),
                "relay_rtp_ports": list(endpoints.relay_rtp_ports),
                "rig_rtp_ports": list(endpoints.rig_rtp_ports)}

    def _generator_sip_ports(self) -> list[int]:
        """The SIP ports of generator processes 1.. (process 0 has the run's own)."""
        from rig.load.shares import extra_sip_ports

        return extra_sip_ports(self.processes)

    def _load_driver(self, endpoints: Endpoints, recorder: Recorder) -> Any:
        """The call generator: a LoadDriver in this process, or with `load.processes` > 1 a
        ProcessDriver running one LoadDriver per generator process, or with a cluster a
        RayDriver running one per Ray actor (the same face)."""
        scenario = self.scenario
        on_event = self._on_load_event(recorder)
        targets = targets_for(endpoints, self.plan)
        workers = scenario.bursts.workers if scenario.bursts is not None else None
        if self.request.cluster is not None:
            from rig.load.ray_driver import RayDriver

            return RayDriver(generator_shares(scenario, targets, self.processes, self.recording),
                             on_event, address=self.request.cluster,
                             run_id=self.record.run_id, workers=workers)
        if self.processes > 1:
            from rig.load.processes import ProcessDriver

            return ProcessDriver(
                generator_shares(scenario, targets, self.processes, self.recording), on_event,
                on_process=self.record.add_process, env=process_labels(self.record.run_id),
                workers=scenario.bursts.workers if scenario.bursts is not None else None)
        from rig.load.driver import LoadDriver

        return LoadDriver(
            calls_plan(scenario, self.recording), burst_plan(scenario), targets,
            on_event=on_event, seed=scenario.seed,
            destinations=endpoints.guard())

    def _on_load_event(self, recorder: Recorder) -> Callable[[str, dict], None]:
        return lambda kind, data: recorder.event(Event(self._now(), kind, data))

    async def _drive(self, driver: Any, watch: Watch, progress: Progress,
                     recorder: Recorder) -> Any:
        """The load's report (None after a crash); a generator process that died ends the
        load with verdict error (the event says which process and its exit code)."""
        from rig.load.processes import GeneratorError

        try:
            report, _ = await drive_until_crash(driver, self.scenario.duration,
                                                watch.first_exit_code, progress.update,
                                                self.hostile)
            return report
        except GeneratorError as exc:
            self.load_error = str(exc)
            recorder.event(Event(self._now(), "generator_error", {"message": str(exc)}))
            return None

    def _settle(self, seconds: float, progress: Progress) -> None:
        deadline = self.clock.monotonic() + seconds
        while (left := deadline - self.clock.monotonic()) > 0:
            raise_if_stopping()
            self.clock.sleep(min(0.25, left))
            progress.update()

    def _now(self) -> float:
        return round(self.clock.monotonic() - self.started_mono, 6)

    def _log_followers(self, services: Stack, recorder: Recorder) -> list[LogFollower]:
        """Lines of the services' logs that are events (the model relay's make_shard and
        CRIT lines); a service without a parser has none."""
        followers = []
        for name in self.plan.services:
            parse = service(name).parse_log
            if parse is None:
                continue
            followers.append(LogFollower(services.services[name].log_path,
                                         self._parser(parse), self._on_log_event(name, recorder)))
        return followers

    def _parser(self, parse: LogParser) -> Callable[[str], Event | None]:
        return lambda line: parse(line, self.started_wall)

    def _on_log_event(self, name: str, recorder: Recorder) -> Callable[[Event], None]:
        return lambda event: self._log_event(name, event, recorder)

    def _log_event(self, name: str, event: Event, recorder: Recorder) -> None:
        if event.kind == "crit":
            self.crit_lines[name] = str(event.data["line"])
        recorder.event(event)

    def _note_crash(self, deaths: list[Death], services: Stack, recorder: Recorder) -> None:
        """A `crash` event per service that stopped during the run, at the moment the
        watch saw it, naming its pid and signal and quoting its CRIT (or last) log line."""
        for death in deaths:
            name = death.service
            line = (self.crit_lines.get(name) or last_log_line(services.services[name].log_path)
                    or "(no line in the log)")
            recorder.event(Event(death.t, "crash", {
                "service": name, "role": role_of(name), "pid": death.pid,
                "exit_code": death.exit_code, "signal": death.signal, "cause": death.cause(),
                "line": line,
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

        series = recorder.series()
        verdicts = run_checks(self.scenario.checks, series, recorder.events, window)
        summary = build_summary(
            run_id=run_id,
            scenario=self.scenario,
            verdicts=verdicts,
            series=series,
            events=recorder.events,
            load=load,
            sut={
                "commit": source_commit(self.repo),
                "patches": [p.name for p in self.patches],
                "target": self.target,
                "topology": self.plan.topology,
                "media": self.plan.media,
                "services": list(self.plan.services),
                "versions": self.versions,
                **({"netns": self.namespace} if self.namespace is not None else {}),
                **({"addresses": self.addresses} if self.addresses is not None else {}),
            },
            timing={
                "started": self.started_wall,
                "finished": self.clock.wall(),
                "duration_s": round(window.end, 3),
                **self.stack_timing,
            },
            environment=environment(),
            window=window,
            capture=self.capture.summary(),
            error=self.load_error,
            hostile=self.hostile.summary() if self.hostile is not None else None,
        )
        folder.finish(summary)
        plot_run(folder.path)
        html_report([folder.path], folder.path / "report.html")
        return RunOutcome(folder.path, summary.verdict, summary)


async def drive_until_crash(
    driver: Any,
    duration: float,
    exit_code: Callable[[], int | None],
    tick: Callable[[str], None],
    hostile: Any = None,
) -> tuple[Any, bool]:
    """Run the load (and the hostile traffic beside it); stop both early if a service dies.
    Returns (report or None, crashed)."""
    task = asyncio.create_task(driver.run(duration))
    side = asyncio.create_task(hostile.run(duration)) if hostile is not None else None
    try:
        while not task.done():
            raise_if_stopping()  # a SIGTERM whose KeyboardInterrupt was dropped
            await asyncio.wait({task}, timeout=CRASH_POLL_S)
            snap = driver.snapshot()
            tick(f"calls {snap.get('load.calls_completed', 0):.0f} "
                 f"active {snap.get('load.calls_active', 0):.0f}")
            if exit_code() is not None and not task.done():
                await _cancel(task)
                return None, True
        if side is not None:
            await side  # it ends by itself, ANSWER_GRACE after `duration`
        return task.result(), exit_code() is not None
    finally:
        if side is not None and not side.done():
            await _cancel(side)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def check_hostile_tools(scenario: Any) -> None:
    """sipvicious's commands must be there before anything starts."""
    hostile = scenario.hostile
    if hostile is None:
        return
    missing = [tool for tool in ("svmap", "svwar", "svcrack")
               if getattr(hostile, tool) is not None and shutil.which(tool) is None]
    if missing:
        raise InfraError(f"hostile.{missing[0]} needs the {missing[0]} command "
                         "(Debian package sipvicious)")


def service_versions(backend: Any, specs: list[Any]) -> dict[str, str]:
    """The version each real service reports (`rtpengine --version`, `kamailio -v`);
    "unknown" when its answer has none. The model services have none to report."""
    versions = {}
    for spec in specs:
        svc = service(spec.name)
        if not svc.version_argv or svc.parse_version is None:
            continue
        versions[spec.name] = svc.parse_version(backend.version(spec, svc.version_argv)) \
            or "unknown"
    return versions


def last_log_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def run_scenario(request: RunRequest, clock: Clock | None = None) -> RunOutcome:
    """Run one scenario; raises ScenarioError/UsageError (bad input) or InfraError."""
    return Run(request, clock).execute()
