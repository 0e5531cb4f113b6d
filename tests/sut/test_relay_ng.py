"""The relay as a process: NG commands, RTP relaying, cleanup, bad input, signals, start-up."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import bencodepy
import pytest
from kmod_helpers import CONTAINERS, KmodProcess, running_kmod
from relay_helpers import (
    RELAY_DIR,
    NgClient,
    RelayProcess,
    answer_sdp,
    free_udp_port,
    media_target,
    offer_sdp,
    pick_host,
    relay_argv,
    rtp_endpoints,
    rtp_packet,
    running_relay,
    set_up_call,
)

pytestmark = pytest.mark.e2e

CONTRACT_POOL_KEYS = {
    "shard_size",
    "shards_total",
    "shards_active",
    "shards_full",
    "shards_free",
    "pins",
    "pinned_bytes",
    "live_allocations",
    "live_bytes",
    "make_shard_calls",
}


@pytest.fixture(scope="module")
def kmod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmodProcess]:
    state = tmp_path_factory.mktemp("relay-kmod") / "kmod"
    with running_kmod(CONTAINERS / "kmod" / "kmod.py", state) as process:
        yield process


@pytest.fixture(scope="module")
def relay(kmod: KmodProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    log = tmp_path_factory.mktemp("relay") / "relay.log"
    with running_relay(kmod.dir, log, workers=2, shard_size=8192) as process:
        yield process


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def test_ping(relay: RelayProcess) -> None:
    assert relay.ng.request({"command": "ping"}) == {"result": "pong"}


def test_offer_and_answer_point_c_and_m_at_the_relay(relay: RelayProcess) -> None:
    offer = relay.ng.request(
        {"command": "offer", "call-id": "rw", "from-tag": "a", "sdp": offer_sdp("127.0.2.11", 5000)}
    )
    answer = relay.ng.request(
        {
            "command": "answer",
            "call-id": "rw",
            "from-tag": "a",
            "to-tag": "b",
            "sdp": answer_sdp("127.0.2.12", 5002),
        }
    )
    try:
        lo, hi = relay.rtp_ports
        for reply, codecs in ((offer, "RTP/AVP 0 8 101"), (answer, "RTP/AVP 0")):
            assert reply["result"] == "ok"
            address, port = media_target(reply["sdp"])
            assert address == relay.host
            assert lo <= port <= hi and port % 2 == 0
            assert codecs in reply["sdp"]
            assert f"a=rtcp:{port + 1}" in reply["sdp"]
        assert media_target(offer["sdp"])[1] != media_target(answer["sdp"])[1]
        assert "a=fmtp:101 0-16" in offer["sdp"]
    finally:
        relay.ng.request({"command": "delete", "call-id": "rw", "from-tag": "a"})


def test_an_offer_naming_a_host_name_gets_an_error_and_no_session(relay: RelayProcess) -> None:
    sdp = offer_sdp("127.0.2.11", 5000).replace("127.0.2.11", "rtp.example.com")
    reply = relay.ng.request({"command": "offer", "call-id": "dns", "from-tag": "a", "sdp": sdp})
    assert reply["result"] == "error"
    assert "c= address 'rtp.example.com' is not an IP address" in reply["error-reason"]
    listed = relay.ng.request({"command": "list"})
    assert "dns" not in [c.decode() if isinstance(c, bytes) else c for c in listed["calls"]]


def test_reoffer_keeps_the_ports(relay: RelayProcess) -> None:
    offer = {"command": "offer", "call-id": "re", "from-tag": "a",
             "sdp": offer_sdp("127.0.2.11", 5000)}
    try:
        first = relay.ng.request(offer)
        again = relay.ng.request({**offer, "sdp": offer_sdp("127.0.2.11", 5004, session=2)})
        assert media_target(first["sdp"]) == media_target(again["sdp"])
        assert "o=- 2 1" in again["sdp"]
    finally:
        relay.ng.request({"command": "delete", "call-id": "re"})


def test_list_and_query_show_the_call(relay: RelayProcess) -> None:
    with rtp_endpoints(relay.host, 2) as (caller, callee):
        set_up_call(relay.ng, "lq", caller, callee)
        try:
            assert "lq" in relay.ng.request({"command": "list"})["calls"]
            query = relay.ng.request({"command": "query", "call-id": "lq"})
            assert query["result"] == "ok"
            assert set(query["tags"]) == {"lq-a", "lq-b"}
            assert {"created", "last signal", "totals", "SSRC"} <= set(query)
        finally:
            relay.ng.request({"command": "delete", "call-id": "lq"})
    assert "lq" not in relay.ng.request({"command": "list"})["calls"]
    assert relay.ng.request({"command": "query", "call-id": "lq"}) == {
        "result": "error",
        "error-reason": "Unknown call-id",
    }


def test_retransmitted_offer_gets_the_same_reply_and_runs_once(relay: RelayProcess) -> None:
    before = relay.statistics()["sessions"]
    message = {
        "command": "offer",
        "call-id": "rt",
        "from-tag": "a",
        "sdp": offer_sdp("127.0.2.11", 5000),
    }
    first = relay.ng.raw(b"rt-1 " + encode(message))
    again = relay.ng.raw(b"rt-1 " + encode(message))
    try:
        assert first is not None and first == again
        assert relay.statistics()["sessions"] == before + 1
        assert relay.ng.request({"command": "list"})["calls"].count("rt") == 1
    finally:
        relay.ng.request({"command": "delete", "call-id": "rt"})


def test_rtp_is_relayed_both_ways_with_payloads_intact(relay: RelayProcess) -> None:
    with rtp_endpoints(relay.host, 2) as (caller, callee):
        ports = set_up_call(relay.ng, "rtp", caller, callee)
        try:
            for seq in range(5):
                sent = rtp_packet(seq, 0xA1, bytes([seq]) * 160)
                caller.send(sent, ports.for_caller)
                got = callee.receive()
                assert got is not None, "caller->callee packet lost"
                assert got == (sent, ports.for_callee)  # from the relay's port of the callee leg
                back = rtp_packet(seq, 0xB2, bytes([255 - seq]) * 160)
                callee.send(back, ports.for_callee)
                got = caller.receive()
                assert got is not None, "callee->caller packet lost"
                assert got == (back, ports.for_caller)
            query = relay.ng.request({"command": "query", "call-id": "rtp"})
            assert query["totals"]["RTP"]["packets"] == 10
            for tag in ("rtp-a", "rtp-b"):
                stream = query["tags"][tag]["medias"][0]["streams"][0]
                assert stream["stats"]["packets"] == 5
            assert set(query["SSRC"]) == {str(0xA1), str(0xB2)}
        finally:
            relay.ng.request({"command": "delete", "call-id": "rtp"})


def test_source_address_is_learned_on_the_first_packet(relay: RelayProcess) -> None:
    with rtp_endpoints(relay.host, 3) as (caller, callee, moved_caller):
        ports = set_up_call(relay.ng, "learn", caller, callee)
        try:
            moved_caller.send(rtp_packet(1, 7, b"x" * 20), ports.for_caller)
            assert callee.receive() is not None
            callee.send(rtp_packet(1, 8, b"y" * 20), ports.for_callee)
            got = moved_caller.receive()
            assert got is not None and got[0].endswith(b"y" * 20)
        finally:
            relay.ng.request({"command": "delete", "call-id": "learn"})


def test_delete_frees_ports_and_allocations(relay: RelayProcess) -> None:
    with rtp_endpoints(relay.host, 4) as endpoints:
        calls = [
            set_up_call(relay.ng, f"del{i}", endpoints[2 * i], endpoints[2 * i + 1])
            for i in range(2)
        ]
        for i, ports in enumerate(calls):
            endpoints[2 * i].send(rtp_packet(1, 1, b"a" * 20), ports.for_caller)
            endpoints[2 * i + 1].send(rtp_packet(1, 2, b"b" * 20), ports.for_callee)
        live = wait_for(lambda: relay.statistics()["bufferpool"]["live_allocations"] == 12)
        assert live, relay.statistics()
        assert relay.statistics()["streams"] == 4
        replies = [
            relay.ng.request({"command": "delete", "call-id": f"del{i}", "from-tag": f"del{i}-a"})
            for i in range(2)
        ]
    for reply in replies:
        assert reply["result"] == "ok"
        assert reply["totals"]["RTP"]["packets"] >= 1
        assert {"created", "last signal", "tags", "SSRC"} <= set(reply)
    stats = relay.statistics()
    assert stats["bufferpool"]["live_allocations"] == 0
    assert stats["sessions"] == 0 and stats["streams"] == 0
    assert all(site["count"] == 0 for site in stats["allocation_sites"].values())
    for ports in calls:
        for address in (ports.for_caller, ports.for_callee):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(address)  # raises if the relay still holds the port


def test_statistics_has_the_contract_keys(relay: RelayProcess) -> None:
    stats = relay.statistics()
    assert stats["result"] == "ok"
    current = stats["statistics"]["currentstatistics"]
    assert {"sessionsown", "sessionsforeign", "sessionstotal", "packetrate", "byterate"} <= set(
        current
    )
    assert CONTRACT_POOL_KEYS <= set(stats["bufferpool"])
    assert set(stats["allocation_sites"]) >= {"stream_stats", "ssrc_entry", "payload_type"}
    assert {"sessions", "streams", "packets_relayed", "bytes_relayed", "packets_dropped"} <= set(
        stats
    )


def test_delete_of_an_unknown_call_warns(relay: RelayProcess) -> None:
    reply = relay.ng.request({"command": "delete", "call-id": "never", "from-tag": "x"})
    assert reply["result"] == "ok"
    assert "not found" in reply["warning"]


@pytest.mark.parametrize(
    "datagram, reason",
    [
        (b"c1 d7:command5:offer7:call-id1:x", b"Could not decode bencode dictionary"),
        (b"c2 d7:command5:offer7:call-id1:x8:from-tag1:a3:sdpi5ee", b'Wrong type for key "sdp"'),
        (b"c3 d7:command5:dancee", b"Unrecognized command"),
        (b"c4 d7:command6:answer7:call-id4:nonee", b"No from-tag in message"),
        (b"c5 \x00\xff\x13\x37garbage", b"Could not decode bencode dictionary"),
    ],
)
def test_bad_input_gets_an_error_and_the_relay_lives_on(
    relay: RelayProcess, datagram: bytes, reason: bytes
) -> None:
    reply = relay.ng.raw(datagram)
    assert reply is not None
    cookie = datagram.split(b" ")[0]
    assert reply.startswith(cookie + b" d12:error-reason")
    assert reason in reply
    assert relay.ng.request({"command": "ping"})["result"] == "pong"


RANDOM_BYTES = random.Random(1).randbytes(300).replace(b" ", b"_")


@pytest.mark.parametrize("datagram", [b"no-space-at-all", RANDOM_BYTES], ids=["text", "random"])
def test_datagrams_without_a_cookie_are_dropped(relay: RelayProcess, datagram: bytes) -> None:
    assert relay.ng.raw(datagram, timeout=0.3) is None
    assert relay.ng.request({"command": "ping"})["result"] == "pong"


def test_sigusr1_dumps_statistics_and_sites(relay: RelayProcess) -> None:
    relay.process.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: "alloc_site site=payload_type" in relay.log())
    lines = [
        line
        for line in relay.log().splitlines()
        if "statistics sessions=" in line or "alloc_site" in line
    ]
    assert lines[0].split("] ", 2)[2].startswith("statistics sessions=")
    assert {line.split("site=")[1].split()[0] for line in lines[1:4]} == {
        "stream_stats",
        "ssrc_entry",
        "payload_type",
    }


def encode(message: Mapping[str, object]) -> bytes:
    return bytes(bencodepy.encode(message))


# --- lifecycle: each test starts its own relay --------------------------------------------


def test_sigterm_shuts_down_and_kmod_releases_the_pins(
    kmod_process: KmodProcess, tmp_path: Path
) -> None:
    with (
        running_relay(
            kmod_process.dir, tmp_path / "relay.log", shard_size=4096, table="7"
        ) as relay,
        rtp_endpoints(relay.host, 2) as (caller, callee),
    ):
        ports = set_up_call(relay.ng, "pins", caller, callee)
        caller.send(rtp_packet(1, 1, b"z" * 20), ports.for_caller)
        assert wait_for(lambda: relay.statistics()["bufferpool"]["pins"] >= 1)
        assert kmod_process.status("7")["Memory pins"] >= 1
        relay.process.send_signal(signal.SIGTERM)
        assert relay.wait_exit(5) == 0, relay.log()
        status = kmod_process.wait_for_status("7", "Opencount", 0)
        assert status["Memory pins"] == 0
        assert "relay stopped" in relay.log()


def start_relay_expecting_failure(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def test_ng_port_in_use_is_one_line_and_exit_1(kmod_process: KmodProcess) -> None:
    host = pick_host()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((host, 0))
        port = taken.getsockname()[1]
        done = start_relay_expecting_failure(
            relay_argv(RELAY_DIR / "relay.py", host, port, (40000, 40099), kmod_process.dir)
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen for NG" in lines[0], done.stderr


def test_unreachable_kmod_is_one_line_and_exit_1(tmp_path: Path) -> None:
    host = pick_host()
    done = start_relay_expecting_failure(
        relay_argv(
            RELAY_DIR / "relay.py",
            host,
            free_udp_port(host),
            (40000, 40099),
            tmp_path / "no-kmod-here",
        )
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open kmod table" in lines[0], done.stderr


@pytest.mark.parametrize(
    "flag, value",
    [("--rtp-ports", "9-3"), ("--shard-size", "1000"), ("--workers", "0"), ("--ng", "nohost")],
)
def test_bad_arguments_are_refused(tmp_path: Path, flag: str, value: str) -> None:
    argv = relay_argv(RELAY_DIR / "relay.py", "127.0.2.9", 1, (40000, 40099), tmp_path)
    argv[argv.index(flag) + 1] = value
    done = start_relay_expecting_failure(argv)
    assert done.returncode == 2
    assert flag in done.stderr


def test_relay_source_needs_no_third_party_package_but_bencode() -> None:
    imports = set()
    for path in RELAY_DIR.glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                imports.add(line.split()[1].split(".")[0])
    local = {path.stem for path in RELAY_DIR.glob("*.py")}
    third_party = imports - local - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"bencodepy"}, third_party


def test_ng_client_helper_sees_a_silent_port(relay: RelayProcess) -> None:
    # guards the "dropped" assertions above: a port nobody answers on gives None
    silent = NgClient(relay.host, free_udp_port(relay.host))
    assert silent.raw(b"x d7:command4:pinge", timeout=0.2) is None
