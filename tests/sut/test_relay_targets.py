"""The relay's forwarding targets in kmod: one per relayed stream, gone with the stream on
every path (delete, timeout, shutdown); the patch that forgets them on the timeout path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kmod_helpers import CONTAINERS, KmodProcess, running_kmod
from relay_helpers import (
    RelayProcess,
    RtpEndpoint,
    rtp_endpoints,
    rtp_packet,
    running_relay,
    set_up_call,
)

TIMEOUT = "1.0"  # the relay's call timeout in these tests, seconds


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


@pytest.fixture
def kmod(tmp_path: Path) -> Iterator[KmodProcess]:
    with running_kmod(CONTAINERS / "kmod" / "kmod.py", tmp_path / "kmod",
                      ("--max-targets", "6")) as process:
        yield process


def relay_from(tree: Path, kmod: KmodProcess, log: Path) -> Iterator[RelayProcess]:
    return running_relay(kmod.dir, log, tree / "containers" / "relay" / "relay.py",
                         extra_args=("--timeout", TIMEOUT))


def targets(kmod: KmodProcess) -> int:
    return kmod.status(0)["Targets"]


def start_media(relay: RelayProcess, call_id: str, ends: list[RtpEndpoint]) -> None:
    """A call with a packet from each party: both streams get state and a target."""
    ports = set_up_call(relay.ng, call_id, ends[0], ends[1])
    ends[0].send(rtp_packet(1, 1, b"a" * 20), ports.for_caller)
    ends[1].send(rtp_packet(1, 2, b"b" * 20), ports.for_callee)


def test_each_relayed_stream_has_a_target_until_its_call_is_deleted(
    kmod: KmodProcess, tmp_path: Path
) -> None:
    with running_relay(kmod.dir, tmp_path / "relay.log") as relay, \
            rtp_endpoints(relay.host, 4) as ends:
        assert targets(kmod) == 0
        start_media(relay, "t1", ends[:2])
        assert wait_for(lambda: targets(kmod) == 2), kmod.status(0)
        start_media(relay, "t2", ends[2:])
        assert wait_for(lambda: targets(kmod) == 4), kmod.status(0)
        stats = relay.statistics()
        assert stats["streams"] == stats["kernel_streams"] == 4
        relay.ng.request({"command": "delete", "call-id": "t1", "from-tag": "t1-a"})
        assert targets(kmod) == 2, "the delete reply comes after the targets are gone"
        relay.ng.request({"command": "delete", "call-id": "t2", "from-tag": "t2-a"})
        assert targets(kmod) == 0
    assert f"local={relay.host}:" in kmod.log()


def test_past_the_module_limit_streams_stay_in_userspace(
    kmod: KmodProcess, tmp_path: Path
) -> None:
    with running_relay(kmod.dir, tmp_path / "relay.log") as relay, \
            rtp_endpoints(relay.host, 8) as ends:
        for i in range(4):
            start_media(relay, f"lim{i}", ends[2 * i: 2 * i + 2])
        assert wait_for(lambda: relay.statistics()["streams"] == 8), relay.statistics()
        assert targets(kmod) == 6
        assert relay.statistics()["kernel_streams"] == 6
        assert wait_for(lambda: relay.log().count(
            "Failed to push relay stream to kernel: Cannot allocate memory (ENOMEM)") == 2)
        ports = set_up_call(relay.ng, "late", ends[0], ends[1])
        assert ports.for_caller, "the relay lives on and takes new calls"
        assert relay.process.poll() is None


def test_a_call_that_times_out_takes_its_targets_along(
    kmod: KmodProcess, tmp_path: Path, patched_tree: Callable[..., Path]
) -> None:
    with relay_from(patched_tree(), kmod, tmp_path / "relay.log") as relay, \
            rtp_endpoints(relay.host, 2) as ends:
        start_media(relay, "quiet", ends)
        assert wait_for(lambda: targets(kmod) == 2)
        assert wait_for(lambda: relay.statistics()["sessions"] == 0), "no timeout"
        assert targets(kmod) == 0
        assert "[quiet] Closing call due to timeout" in relay.log()
        total = relay.statistics()["statistics"]["totalstatistics"]
        assert total["timeoutsessions"] == 1


def test_the_patch_leaves_the_targets_of_timed_out_calls_behind(
    kmod: KmodProcess, tmp_path: Path, patched_tree: Callable[..., Path]
) -> None:
    tree = patched_tree("relay-keep-target-on-timeout.patch")
    with relay_from(tree, kmod, tmp_path / "relay.log") as relay, \
            rtp_endpoints(relay.host, 4) as ends:
        start_media(relay, "quiet", ends[:2])
        start_media(relay, "deleted", ends[2:])
        assert wait_for(lambda: targets(kmod) == 4)
        relay.ng.request({"command": "delete", "call-id": "deleted", "from-tag": "deleted-a"})
        assert targets(kmod) == 2, "the delete path still removes its targets"
        assert wait_for(lambda: relay.statistics()["sessions"] == 0), "no timeout"
        stats = relay.statistics()
        assert stats["streams"] == 0 and stats["kernel_streams"] == 0
        assert targets(kmod) == 2, "the timed-out call's targets stay in the module"
