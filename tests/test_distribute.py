"""Many runs at once on plain values: the serial pool, the local pool of spawned processes
(stand-in run functions that must pickle, so they live at module level), the CLI flags."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from rig.cli import main
from rig.distribute import Dispatch, ProcessPool, SerialPool, open_pool
from rig.errors import InfraError, UsageError
from rig.runner import RunRequest

SLOTS_ENV = "RIG_TEST_SLOTS"


def requests(tmp_path: Path, n: int) -> list[RunRequest]:
    return [RunRequest(scenario_path=tmp_path / "s.yaml", overrides=(f"seed={i}",),
                       progress=True) for i in range(n)]


def echo(request: RunRequest) -> tuple[int, tuple[str, ...], bool]:
    return os.getpid(), request.overrides, request.progress


def counted(request: RunRequest) -> int:
    """Marks itself started, counts the runs going now, waits until a second one started
    (so two ran at once), then marks itself ended."""
    slots = Path(os.environ[SLOTS_ENV])
    name = request.overrides[0]
    (slots / f"started-{name}").touch()
    going = len(list(slots.glob("started-*"))) - len(list(slots.glob("ended-*")))
    deadline = time.monotonic() + 60
    while len(list(slots.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (slots / f"ended-{name}").touch()
    return going


def broken(request: RunRequest) -> None:
    raise InfraError("relay would not build", logs="make: *** [relay] Error 1")


def bad_input(request: RunRequest) -> None:
    raise UsageError("no such key")


def dies(request: RunRequest) -> None:
    os._exit(7)


def sleeps_until_stopped(request: RunRequest) -> None:
    """A run that only ends when stopped; it notes that it cleaned up, as runs do."""
    slots = Path(os.environ[SLOTS_ENV])
    name = request.overrides[0]
    (slots / f"started-{name}").touch()
    try:
        time.sleep(120)
    finally:
        (slots / f"cleaned-{name}").touch()


def test_the_serial_pool_runs_in_order_in_this_process(tmp_path: Path):
    done = list(SerialPool().each(echo, requests(tmp_path, 3)))
    assert [d.index for d in done] == [0, 1, 2]
    assert {d.outcome[0] for d in done} == {os.getpid()}
    assert [d.outcome[2] for d in done] == [True] * 3  # serial keeps the progress bar


def test_the_local_pool_runs_each_request_once_in_a_process_of_its_own(tmp_path: Path):
    with ProcessPool(2) as pool:
        done = sorted(pool.each(echo, requests(tmp_path, 4)), key=lambda d: d.index)
    assert [d.outcome[1] for d in done] == [(f"seed={i}",) for i in range(4)]
    pids = {d.outcome[0] for d in done}
    assert len(pids) == 4 and os.getpid() not in pids
    assert not any(d.outcome[2] for d in done)  # no progress bars from children


def test_the_local_pool_runs_jobs_at_once_and_never_more(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(SLOTS_ENV, str(tmp_path))
    with ProcessPool(2) as pool:
        going = [d.result() for d in pool.each(counted, requests(tmp_path, 5))]
    assert max(going) <= 2
    assert len(list(tmp_path.glob("ended-*"))) == 5


def test_errors_come_back_whole_and_the_pool_goes_on(tmp_path: Path):
    with ProcessPool(2) as pool:
        done = list(pool.each(broken, requests(tmp_path, 2)))
    assert [type(d.error) for d in done] == [InfraError, InfraError]
    assert done[0].error.logs == "make: *** [relay] Error 1"
    with pytest.raises(InfraError, match="would not build"):
        done[0].result()
    with ProcessPool(1) as pool:
        (usage,) = list(pool.each(bad_input, requests(tmp_path, 1)))
    assert isinstance(usage.error, UsageError)


def test_a_run_process_that_dies_is_an_infrastructure_error(tmp_path: Path):
    with ProcessPool(2) as pool:
        (done,) = list(pool.each(dies, requests(tmp_path, 1)))
    assert isinstance(done.error, InfraError)
    assert "exit code 7" in str(done.error)


def interrupt_when(folder: Path, started: int) -> None:
    """Ctrl-C to this process once `started` runs have begun (as the terminal sends it)."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(list(folder.glob("started-*"))) < started and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def test_ctrl_c_stops_every_run_still_going_and_waits_for_its_cleanup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(SLOTS_ENV, str(tmp_path))
    interrupt_when(tmp_path, started=2)
    with pytest.raises(KeyboardInterrupt), ProcessPool(2) as pool:
        list(pool.each(sleeps_until_stopped, requests(tmp_path, 3)))
    assert sorted(p.name for p in tmp_path.glob("cleaned-*")) == ["cleaned-seed=0",
                                                                 "cleaned-seed=1"]
    assert not list(tmp_path.glob("started-seed=2"))  # the third never started
    assert pool.running == {}


def test_infra_errors_pickle_with_their_logs():
    copy = pickle.loads(pickle.dumps(InfraError("no port", logs="tail")))
    assert (str(copy), copy.logs) == ("no port", "tail")


def test_dispatch_picks_the_pool_and_checks_its_numbers():
    assert isinstance(open_pool(Dispatch()), SerialPool)
    assert isinstance(open_pool(Dispatch(jobs=1)), SerialPool)
    assert isinstance(open_pool(Dispatch(jobs=3)), ProcessPool)
    assert Dispatch(jobs=3).width == 3 and Dispatch(cluster="local").width is None
    with pytest.raises(UsageError, match="at least 1"):
        Dispatch(jobs=0)


@pytest.mark.parametrize("argv", [
    ["matrix", "scenarios/pin-race.yaml", "--axis", "seed=1,2", "--jobs", "0"],
    ["gate", "scenarios/pin-race.yaml", "--jobs", "-1"],
    ["bisect", "scenarios/pin-race.yaml", "--repo", ".", "--good", "HEAD", "--bad", "HEAD",
     "--parallel", "0"],
])
def test_a_bad_job_count_is_a_one_line_usage_error(argv, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be at least 1" in err, err
