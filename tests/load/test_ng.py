import asyncio
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from rig.load.media import MediaEngine
from rig.load.mediacontrol import NgMediaControl
from rig.load.ng import NgClient
from rig.probes.ng import NgRequester, ng_request
from rig.topology.loopback import block_host
from rig.wire.ng import NgError, NgTimeout, decode_ng, encode_ng

Handler = Callable[[dict], dict | None]


class FakeNgServer:
    """A tiny NG responder: the handler's reply, or silence when it returns None.

    Like rtpengine it answers a repeated cookie from its cache without running the
    handler again; `executed` counts handler runs per command, `seen` datagrams per cookie.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.seen: Counter[str] = Counter()
        self.executed: Counter[str] = Counter()
        self.peers: set[tuple[str, int]] = set()
        self._cache: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            cookie, message = decode_ng(data)
            self.seen[cookie] += 1
            self.peers.add(peer)
            if cookie not in self._cache:
                reply = self.handler(message)
                if reply is None:
                    continue
                self.executed[message["command"]] += 1
                self._cache[cookie] = encode_ng(cookie, reply)
            self.sock.sendto(self._cache[cookie], peer)

    def __enter__(self) -> "FakeNgServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def echo_pong(message: dict) -> dict:
    if message["command"] == "ping":
        return {"result": "pong"}
    if message["command"] == "offer":
        return {"result": "ok", "sdp": message["sdp"].replace("40000", "30000")}
    return {"result": "error", "error-reason": "Unknown call-id"}


def drop_first(n: int, handler: Handler) -> Handler:
    dropped = Counter[str]()

    def handle(message: dict) -> dict | None:
        if dropped["n"] < n:
            dropped["n"] += 1
            return None
        return handler(message)

    return handle


def test_ng_request_returns_reply() -> None:
    with FakeNgServer(echo_pong) as server:
        assert ng_request(*server.address, {"command": "ping"}) == {"result": "pong"}


def test_ng_request_raises_error_reason() -> None:
    with FakeNgServer(echo_pong) as server:
        with pytest.raises(NgError, match="Unknown call-id") as info:
            ng_request(*server.address, {"command": "query", "call-id": "nope"})
    assert info.value.reason == "Unknown call-id"


def test_ng_request_times_out() -> None:
    with FakeNgServer(lambda m: None) as server:
        with pytest.raises(NgTimeout, match="no reply"):
            ng_request(*server.address, {"command": "ping"}, timeout=0.1)


def test_a_requester_asks_from_one_source_port_and_skips_a_late_reply() -> None:
    calls = Counter[str]()

    def slow_first(message: dict) -> dict | None:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.5)  # answered long after the requester gave up
        return echo_pong(message)

    with FakeNgServer(slow_first) as server:
        requester = NgRequester(*server.address, timeout=0.1)
        with pytest.raises(NgTimeout, match="no reply in 0.1 s"):
            requester.request({"command": "ping"})
        requester.timeout = 2.0
        # the late pong to the first cookie reaches the second socket first: skipped
        reply = requester.request({"command": "offer", "sdp": "m=audio 40000"})
        assert reply == {"result": "ok", "sdp": "m=audio 30000"}
    assert len(server.peers) == 1, "every request from one source port"


def test_client_uses_a_new_cookie_per_request() -> None:
    async def scenario(address: tuple[str, int]) -> None:
        client = await NgClient.open(*address, timeout=0.5)
        try:
            for _ in range(3):
                assert await client.command("ping") == {"result": "pong"}
        finally:
            client.close()

    with FakeNgServer(echo_pong) as server:
        asyncio.run(scenario(server.address))
    assert len(server.seen) == 3
    assert set(server.seen.values()) == {1}


def test_client_retransmits_with_the_same_cookie() -> None:
    async def scenario(address: tuple[str, int]) -> tuple[dict, int]:
        client = await NgClient.open(*address, timeout=0.05, retries=3)
        try:
            reply = await client.command("offer", call_id="c", from_tag="f",
                                         sdp="m=audio 40000 RTP/AVP 0")
            return reply, client.retransmissions
        finally:
            client.close()

    with FakeNgServer(drop_first(2, echo_pong)) as server:
        reply, retransmissions = asyncio.run(scenario(server.address))
    assert reply["sdp"] == "m=audio 30000 RTP/AVP 0"
    assert retransmissions == 2
    assert list(server.seen.values()) == [3]
    assert server.executed["offer"] == 1


def test_client_gives_up_after_bounded_retries() -> None:
    async def scenario(address: tuple[str, int]) -> None:
        client = await NgClient.open(*address, timeout=0.03, retries=2)
        try:
            await client.command("ping")
        finally:
            client.close()

    with FakeNgServer(lambda m: None) as server:
        with pytest.raises(NgTimeout, match="3 tries"):
            asyncio.run(scenario(server.address))
    assert list(server.seen.values()) == [3]


def test_client_raises_error_reason() -> None:
    async def scenario(address: tuple[str, int]) -> None:
        client = await NgClient.open(*address)
        try:
            await client.command("delete", call_id="gone", from_tag="f")
        finally:
            client.close()

    with FakeNgServer(echo_pong) as server:
        with pytest.raises(NgError, match="NG delete failed: Unknown call-id"):
            asyncio.run(scenario(server.address))


def test_client_matches_concurrent_replies_by_cookie() -> None:
    def slow_offer(message: dict) -> dict:
        return {"result": "ok", "sdp": message["sdp"]}

    async def scenario(address: tuple[str, int]) -> list[dict]:
        client = await NgClient.open(*address)
        try:
            return await asyncio.gather(
                *(client.command("offer", call_id=f"c{i}", sdp=f"s{i}") for i in range(20))
            )
        finally:
            client.close()

    with FakeNgServer(slow_offer) as server:
        replies = asyncio.run(scenario(server.address))
    assert [r["sdp"] for r in replies] == [f"s{i}" for i in range(20)]


def test_a_cancel_that_comes_with_the_reply_still_cancels() -> None:
    """The reply and a cancellation (Ctrl-C ends the run) in the same loop turn: the
    request must end cancelled. asyncio.wait_for on 3.11 returned the reply instead, the
    call went on waiting for a burst that was never going to fire, and the run hung."""

    class Transport:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def sendto(self, data: bytes) -> None:
            self.sent.append(data)

    async def scenario() -> asyncio.Task[dict]:
        from rig.load.ng import _NgProtocol

        transport, protocol = Transport(), _NgProtocol()
        client = NgClient(transport, protocol, timeout=5.0, retries=0)  # type: ignore[arg-type]
        task = asyncio.ensure_future(client.request({"command": "ping"}))
        while not transport.sent:
            await asyncio.sleep(0)
        cookie, _ = decode_ng(transport.sent[0])
        protocol.datagram_received(encode_ng(cookie, {"result": "pong"}), None)
        task.cancel()
        await asyncio.wait({task})
        return task

    task = asyncio.run(scenario())
    assert task.cancelled()


def test_client_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(NgClient.open("127.0.0.1", 9, timeout=0))


# --- against Debian's rtpengine (userspace only) ---------------------------------------

RTPENGINE = shutil.which("rtpengine")
SDP = (
    "v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
MEDIA_HOST = block_host("79.1")  # the rig's endpoints, in this process's own block
RTPENGINE_HOST = block_host("4.1")


def sdp(port: int) -> str:
    return SDP.format(host=MEDIA_HOST, port=port)


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running_rtpengine(host: str = RTPENGINE_HOST) -> Iterator[tuple[str, int]]:
    port = free_udp_port(host)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [RTPENGINE or "rtpengine", "--config-file=none", "--table=-1",
             f"--interface={host}", f"--listen-ng={host}:{port}", "--foreground",
             "--log-stderr", "--log-level=4", "--delete-delay=0",
             "--port-min=31000", "--port-max=31999"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            wait_for_ping(host, port, proc, log)
            yield host, port
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_ping(host: str, port: int, proc: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ng_request(host, port, {"command": "ping"}, timeout=0.1)
            return
        except NgError:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"rtpengine exited: {log.read()[-2000:]!r}") from None
            time.sleep(0.05)
    raise RuntimeError("rtpengine did not answer ping within 10 s")


@pytest.mark.e2e
@pytest.mark.skipif(RTPENGINE is None, reason="rtpengine-daemon not installed")
def test_round_trip_with_real_rtpengine() -> None:
    async def scenario(address: tuple[str, int]) -> dict[str, dict]:
        client = await NgClient.open(*address)
        try:
            out = {"ping": await client.command("ping")}
            out["offer"] = await client.command(
                "offer", call_id="rig-e2e", from_tag="ft", sdp=sdp(40000))
            out["answer"] = await client.command(
                "answer", call_id="rig-e2e", from_tag="ft", to_tag="tt",
                sdp=sdp(40002))
            out["query"] = await client.command("query", call_id="rig-e2e")
            out["delete"] = await client.command("delete", call_id="rig-e2e", from_tag="ft")
            with pytest.raises(NgError, match="Unknown call-id"):
                await client.command("query", call_id="rig-e2e")
            return out
        finally:
            client.close()

    with running_rtpengine() as address:
        replies = asyncio.run(scenario(address))
    assert replies["ping"]["result"] == "pong"
    for name in ("offer", "answer"):
        assert f"c=IN IP4 {RTPENGINE_HOST}" in replies[name]["sdp"]
        assert "m=audio 31" in replies[name]["sdp"]
    assert set(replies["query"]["tags"]) == {"ft", "tt"}
    assert replies["delete"]["result"] == "ok"


@pytest.mark.e2e
@pytest.mark.skipif(RTPENGINE is None, reason="rtpengine-daemon not installed")
def test_media_flows_both_ways_through_real_rtpengine() -> None:
    """NgMediaControl sets the call up; two MediaEngine endpoints talk through the relay."""
    with running_rtpengine() as address, MediaEngine(MEDIA_HOST, (41000, 41999)) as media:
        a, b = media.open_endpoint(), media.open_endpoint()

        async def set_up() -> tuple[str, str]:
            client = await NgClient.open(*address)
            try:
                control = NgMediaControl(client)
                offered = await control.offer("rig-media", "ft", sdp(a))
                answered = await control.answer("rig-media", "ft", "tt", sdp(b))
                return offered, answered
            finally:
                client.close()

        offered, answered = asyncio.run(set_up())
        media.prepare_stream(a, (RTPENGINE_HOST, media_port(answered)))
        media.prepare_stream(b, (RTPENGINE_HOST, media_port(offered)))
        media.start_streams([a, b])
        deadline = time.monotonic() + 5
        while media.totals()["rtp_received"] < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = ng_request(*address, {"command": "query", "call-id": "rig-media"})
    assert media.totals()["rtp_received"] >= 20
    assert media.totals()["rtp_lost"] == 0
    packets = [tag["medias"][0]["streams"][0]["stats"]["packets"] for tag in
               stats["tags"].values()]
    assert all(p > 0 for p in packets)


def media_port(sdp: str) -> int:
    match = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    assert match, sdp
    return int(match.group(1))
