"""The watch notes each service's death once, with its pid, signal and the moment seen."""

from dataclasses import dataclass
from pathlib import Path

from rig.topology.watch import Death, Watch


@dataclass
class FakeService:
    name: str
    pid: int
    code: int | None = None
    log_path: Path = Path("/dev/null")

    def exit_code(self) -> int | None:
        return self.code


class FakeNow:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_each_death_is_noted_once_at_the_moment_it_was_first_seen():
    kmod, relay = FakeService("kmod", 40), FakeService("relay", 41)
    now = FakeNow()
    watch = Watch({"kmod": kmod, "relay": relay}, now)
    assert watch.poll() == [] and watch.first_exit_code() is None
    now.t, relay.code = 2.5, -9
    watch.poll()
    now.t, kmod.code = 3.0, 0
    watch.poll()
    now.t = 9.0
    assert watch.poll() == [Death("relay", 41, -9, 2.5), Death("kmod", 40, 0, 3.0)]
    assert watch.first_exit_code() == -9


def test_the_pid_is_the_one_read_while_the_service_ran():
    """A stopped container reports pid 0; the cause must name the pid it had."""
    relay = FakeService("relay", 41)
    watch = Watch({"relay": relay}, FakeNow())
    relay.pid, relay.code = 0, -9
    assert watch.poll()[0].pid == 41


def test_the_cause_names_service_pid_signal_and_time():
    assert Death("relay", 41, -9, 12.34).cause() == "relay (pid 41) died with SIGKILL at t=12.34 s"
    assert Death("kmod", 40, 3, 1.0).cause() == "kmod (pid 40) exited with code 3 at t=1.00 s"
    assert Death("kmod", 40, -6, 1.0).signal == "SIGABRT"
    assert Death("kmod", 40, 0, 1.0).signal is None


def test_stop_ends_the_thread_and_takes_a_last_look():
    relay = FakeService("relay", 41)
    watch = Watch({"relay": relay}, FakeNow(), interval=0.01)
    watch.start()
    relay.code = -11
    deaths = watch.stop()
    assert [d.signal for d in deaths] == ["SIGSEGV"]
    assert watch._thread is None
