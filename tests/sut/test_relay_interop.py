"""The model relay against Debian's real rtpengine: same requests, same shape of replies."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kmod_helpers import KmodProcess
from relay_helpers import (
    NgClient,
    answer_sdp,
    free_udp_port,
    offer_sdp,
    pick_host,
    pick_rtp_range,
    running_relay,
    stop,
)

pytestmark = pytest.mark.e2e

RTPENGINE = shutil.which("rtpengine")


class Peer:
    def __init__(self, ng: NgClient, host: str, ports: tuple[int, int]) -> None:
        self.ng, self.host, self.ports = ng, host, ports


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[Peer]:
    if RTPENGINE is None:
        pytest.skip("rtpengine is not installed (Debian package rtpengine-daemon)")
    host = pick_host()
    ng_port, (lo, hi) = free_udp_port(host), pick_rtp_range()
    argv = [
        RTPENGINE,
        "--config-file=none",
        "--table=-1",
        f"--interface={host}",
        f"--listen-ng={host}:{ng_port}",
        "--foreground",
        "--log-stderr",
        f"--port-min={lo}",
        f"--port-max={hi}",
    ]
    log_path = tmp_path / "rtpengine.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    ng = NgClient(host, ng_port)
    try:
        deadline = time.monotonic() + 10
        while ng.raw(b"r d7:command4:pinge", timeout=0.2) != b"r d6:result4:ponge":
            assert process.poll() is None, f"rtpengine exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"rtpengine not ready:\n{log_path.read_text()}"
        yield Peer(ng, host, (lo, hi))
    finally:
        stop(process)


@pytest.fixture
def model(kmod_process: KmodProcess, tmp_path: Path) -> Iterator[Peer]:
    with running_relay(kmod_process.dir, tmp_path / "relay.log") as relay:
        yield Peer(relay.ng, relay.host, relay.rtp_ports)


def normalised(sdp: str, peer: Peer) -> str:
    """The body with the peer's own address and ports replaced by placeholders."""
    lo, hi = peer.ports

    def port(match: re.Match[str]) -> str:
        value = int(match.group(2))
        return match.group(1) + ("PORT" if lo <= value <= hi + 1 else str(value))

    sdp = sdp.replace(peer.host, "RELAY")
    return re.sub(r"(m=\S+ |a=rtcp:)(\d+)", port, sdp)


def exchange(peer: Peer) -> dict[str, dict[str, Any]]:
    offer = {
        "command": "offer",
        "call-id": "interop",
        "from-tag": "a",
        "sdp": offer_sdp("127.0.2.11", 6000),
    }
    answer = {
        "command": "answer",
        "call-id": "interop",
        "from-tag": "a",
        "to-tag": "b",
        "sdp": answer_sdp("127.0.2.12", 6002),
    }
    replies = {
        "offer": peer.ng.request(offer),
        "answer": peer.ng.request(answer),
        "list": peer.ng.request({"command": "list"}),
        "query": peer.ng.request({"command": "query", "call-id": "interop"}),
        "delete": peer.ng.request({"command": "delete", "call-id": "interop", "from-tag": "a"}),
        "unknown": peer.ng.request({"command": "dance"}),
        "ping": peer.ng.request({"command": "ping"}),
    }
    return replies


def test_replies_have_the_same_keys_and_the_same_sdp_rewrite(rtpengine: Peer, model: Peer) -> None:
    real, ours = exchange(rtpengine), exchange(model)
    for command in real:
        assert set(ours[command]) == set(real[command]), command
    for command in ("offer", "answer"):
        assert ours[command]["result"] == real[command]["result"] == "ok"
        assert normalised(ours[command]["sdp"], model) == normalised(
            real[command]["sdp"], rtpengine
        ), command
        assert "c=IN IP4 RELAY" in normalised(ours[command]["sdp"], model)
    assert real["unknown"]["error-reason"] == ours["unknown"]["error-reason"]
    assert real["list"]["calls"] == ours["list"]["calls"] == ["interop"]
    assert set(ours["query"]["tags"]) == set(real["query"]["tags"]) == {"a", "b"}
    assert set(ours["query"]["totals"]) == set(real["query"]["totals"])


def test_statistics_share_rtpengine_session_counters(rtpengine: Peer, model: Peer) -> None:
    real = rtpengine.ng.request({"command": "statistics"})["statistics"]["currentstatistics"]
    ours = model.ng.request({"command": "statistics"})["statistics"]["currentstatistics"]
    assert set(ours) <= set(real)
    assert {"sessionsown", "sessionsforeign", "sessionstotal", "packetrate"} <= set(ours)
