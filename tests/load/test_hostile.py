"""Hostile traffic's I/O against a scripted SIP peer and stand-in sipvicious commands, and
its pure parts (command lines, ranges, the loopback rule) on plain values."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from rig.errors import UnsafeTargetError
from rig.load.hostile import (
    HostilePlan,
    HostileTraffic,
    ToolPlan,
    answers_in,
    check_target,
    missing_tools,
    range_size,
    tool_argv,
)
from rig.topology.loopback import block_host
from rig.wire.malformed import status_of

HOST = block_host("14.1")


def test_range_size_counts_sipvicious_ranges() -> None:
    assert range_size("100") == 1
    assert range_size("100-199") == 100
    assert range_size("100-109,300,400-401") == 13


def test_tool_argv_binds_to_the_target_address_and_bounds_the_run() -> None:
    war = ToolPlan("svwar", 2.0, ("-e", "100-109", "-m", "INVITE"), 10)
    argv = tool_argv(war, ("127.0.9.1", 5070), 40001, 3.7)
    assert argv[0] == "svwar" and argv[-1] == "127.0.9.1"
    assert argv[argv.index("-p") + 1] == "5070" and argv[argv.index("-b") + 1] == "127.0.9.1"
    assert argv[argv.index("-P") + 1] == "40001"
    assert argv[argv.index("--maximumtime") + 1] == "3"
    assert {"--force", "-e", "100-109"} <= set(argv)
    crack = tool_argv(ToolPlan("svcrack", 1, ("-u", "100", "-r", "1-9"), 9),
                      ("127.0.9.1", 5070), 1, 0.2)
    assert crack[0] == "svcrack" and crack[crack.index("--maximumtime") + 1] == "1"
    assert tool_argv(ToolPlan("svmap", 1, (), 1), ("127.0.9.1", 5070), 1, 1)[0] == "svmap"
    with pytest.raises(ValueError, match="allowed: svmap"):
        tool_argv(ToolPlan("nmap", 1, (), 1), ("127.0.9.1", 5070), 1, 1)


def test_answers_in_reads_the_status_lines_a_tool_printed() -> None:
    out = b"b'SIP/2.0 403 Forbidden\\r\\nVia: x'\nb'SIP/2.0 404 Not Found\\r\\n'\nSIP/2.0 403 x"
    assert answers_in(out) == {"403": 2, "404": 1}


def test_hostile_traffic_refuses_a_target_off_loopback() -> None:
    for host in ("10.0.0.1", "sip.example.com"):
        with pytest.raises(UnsafeTargetError, match="hostile traffic goes to loopback only"):
            check_target(HostilePlan(target=(host, 5060), target_name="uas"))


def test_missing_tools_names_what_is_not_installed() -> None:
    plan = HostilePlan((HOST, 1), "uas", tools=(ToolPlan("svmap", 1, (), 1),
                                               ToolPlan("svwar", 1, (), 1)))
    assert missing_tools(plan, lambda name: None if name == "svwar" else "/bin/x") == ["svwar"]


class Responder(asyncio.DatagramProtocol):
    """Answers each INVITE 488 and anything else 403; records what comes (ACKs too)."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append(data)
        if data.startswith(b"ACK ") or b"\r\n\r\n" not in data:
            return  # ACKs, and what no parser could read, get no answer
        call_id = next(line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                       if line.lower().startswith(b"call-id:"))
        status = b"488 Not Acceptable Here" if data.startswith(b"INVITE ") else b"403 Forbidden"
        self.transport.sendto(b"SIP/2.0 " + status + b"\r\nTo: <sip:x>;tag=t\r\nCall-ID: "
                              + call_id + b"\r\nCSeq: 1 INVITE\r\n\r\n", addr)


async def against_responder(plan_for: Any, duration: float) -> tuple[HostileTraffic, Responder]:
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(Responder, local_addr=(HOST, 0))
    events: list[tuple[str, dict]] = []
    try:
        traffic = HostileTraffic(plan_for(transport.get_extra_info("sockname")),
                                 on_event=lambda kind, data: events.append((kind, data)))
        await traffic.run(duration)
    finally:
        transport.close()
    assert [kind for kind, _ in events] == ["hostile_start", "hostile_stop"]
    assert events[-1][1] == traffic.summary()
    return traffic, responder


def test_messages_go_at_the_rate_are_answered_by_kind_and_negative_finals_acked() -> None:
    kinds = ("truncated", "sdp_port_zero", "unknown_method")

    def plan(target: tuple[str, int]) -> HostilePlan:
        return HostilePlan(target, "uas", start=0.0, rate=30, kinds=kinds)

    traffic, responder = asyncio.run(against_responder(plan, 1.0))
    summary = traffic.summary()
    sent = summary["sent"]
    assert set(sent) == set(kinds) and 25 <= summary["messages"] <= 35  # 30/s for 1 s
    assert max(sent.values()) - min(sent.values()) <= 1  # in turn
    assert summary["answers"]["truncated"] == {"none": sent["truncated"]}
    assert summary["answers"]["sdp_port_zero"] == {"488": sent["sdp_port_zero"]}
    assert summary["answers"]["unknown_method"] == {"403": sent["unknown_method"]}
    acks = [d for d in responder.seen if d.startswith(b"ACK ")]
    assert len(acks) == sent["sdp_port_zero"]  # INVITEs only, each final once
    assert len(traffic.invite_call_ids()) == sent["truncated"] + sent["sdp_port_zero"]
    assert status_of(b"SIP/2.0 488 x\r\n\r\n") == (488, "")


def fake_tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_tools_run_one_at_a_time_every_so_often_and_are_killed_past_their_time(
    tmp_path: Path,
) -> None:
    fake_tool(tmp_path, "svmap", "echo \"b'SIP/2.0 403 Forbidden\\r\\n'\"")
    fake_tool(tmp_path, "svwar", "echo $$ >> \"$RIG_TEST_PIDS\"; echo 'SIP/2.0 404 x'; sleep 30")
    pids = tmp_path / "pids"
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "RIG_TEST_PIDS": str(pids)}
    started: list[tuple[str, int]] = []

    async def go() -> HostileTraffic:
        traffic = HostileTraffic(
            HostilePlan((HOST, 9), "uas", start=0.0, run_timeout=0.4,
                        tools=(ToolPlan("svmap", 0.3, (), 1), ToolPlan("svwar", 0.3, (), 10))),
            env=env, on_process=lambda name, pid: started.append((name, pid)))
        await traffic.run(1.0)
        return traffic

    tools = asyncio.run(go()).summary()["tools"]
    assert 3 <= tools["svmap"]["runs"] <= 4 and tools["svmap"]["exit_codes"] == {
        "0": tools["svmap"]["runs"]}
    assert tools["svmap"]["answers"] == {"403": tools["svmap"]["runs"]}
    war = tools["svwar"]
    assert 2 <= war["runs"] <= 3 and war["killed"] == war["runs"]  # each cut at 0.4 s
    assert war["requests"] == 10 * war["runs"]
    assert war["answers"] == {"404": war["runs"]}  # printed before each kill: counted
    assert {name for name, _ in started} == {"svmap", "svwar"}
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed, nothing left behind


def test_a_free_port_is_bound_on_the_target_host() -> None:
    from rig.load.hostile import free_udp_port

    port = free_udp_port(HOST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, port))
