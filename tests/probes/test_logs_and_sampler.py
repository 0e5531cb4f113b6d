from pathlib import Path

from rig.clock import FakeClock
from rig.probes import ProbeError
from rig.probes.logs import LogFollower, parse_relay_line
from rig.probes.sampler import Sampler
from rig.series import Event

START = 1_700_000_000.0


def test_make_shard_line_becomes_an_event_in_run_seconds():
    line = "[1700000002.500000] INFO: [worker-1] make_shard num=4 full=2 space=1 thread=worker-1"
    event = parse_relay_line(line, START)
    assert event == Event(t=2.5, kind="make_shard",
                          data={"num": 4, "full": 2, "space": 1, "thread": "worker-1"})


def test_crit_line_is_kept_whole():
    line = ("[1700000003.000000] CRIT: [worker-0] Failed to pin shared kernel memory: "
            "Argument list too long (E2BIG)")
    event = parse_relay_line(line, START)
    assert event is not None and event.kind == "crit"
    assert event.data["line"] == line
    assert event.t == 3.0


def test_a_refused_target_is_an_event_with_the_reason():
    line = ("[1700000004.250000] ERR: [worker-1] Failed to push relay stream to kernel: "
            "error ENOMEM table holds 20 targets")
    event = parse_relay_line(line, START)
    assert event == Event(t=4.25, kind="kernel_refused", data={
        "reason": "error ENOMEM table holds 20 targets", "thread": "worker-1"})


def test_other_lines_are_not_events():
    assert parse_relay_line("[1700000003.0] INFO: [ng] offer call-id=x", START) is None
    assert parse_relay_line("garbage", START) is None


def test_follower_reads_only_complete_new_lines(tmp_path: Path):
    log = tmp_path / "relay.log"
    events: list[Event] = []
    follower = LogFollower(log, lambda line: parse_relay_line(line, START), events.append)
    log.write_text("[1700000001.0] INFO: [w] make_shard num=1 full=0 space=0 thread=w\n"
                   "[1700000002.0] INFO: [w] make_shard num=2 full=1 spa")
    follower.poll()
    assert [e.data["num"] for e in events] == [1]
    with open(log, "a") as handle:
        handle.write("ce=0 thread=w\n")
    follower.poll()
    assert [e.data["num"] for e in events] == [1, 2]


class Counter:
    name = "c"

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> dict[str, float]:
        self.n += 1
        return {"c.n": float(self.n)}


class Broken:
    name = "broken"

    def read(self) -> dict[str, float]:
        raise ProbeError("no status file")


def test_sample_once_merges_probes_and_reports_a_failing_probe_once():
    clock = FakeClock(start=10.0)
    samples, errors = [], []
    sampler = Sampler([Counter(), Broken()], 0.1, clock, started_at=10.0,
                      on_sample=samples.append,
                      on_probe_error=lambda name, msg: errors.append((name, msg)))
    clock.advance(0.5)
    sampler.sample_once()
    sampler.sample_once()
    assert [s.t for s in samples] == [0.5, 0.5]
    assert [s.values for s in samples] == [{"c.n": 1.0}, {"c.n": 2.0}]
    assert errors == [("broken", "no status file")]
