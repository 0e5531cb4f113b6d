"""Fuzzing the shipped SUT's parsers of hostile input: the kmod model's control channel and
the relay's NG handler answer every request with "ok" or an error, never an exception
(hypothesis, bounded and derandomized by the `rig` profile in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import bencodepy
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kmod_helpers import CONTAINERS, KmodProcess, running_kmod
from relay_helpers import RelayProcess, running_relay

# -- kmod: the control channel's request lines ---------------------------------------------

NUMBERS = st.sampled_from(["0", "1", "1000", "4096", "8192", "ff", "-1", "²", "٣", "0x10",
                           "9" * 400, "", "1e3", " ", "10000000000000000000000"])
ENDPOINTS = st.sampled_from(["127.0.0.1:5000", "127.0.0.1:", ":1", "host:99999", "[::1]:5",
                             "a:b:c", "127.0.0.1:²", "-", "127.0.0.1:0", "x" * 100 + ":1"])
WORDS = st.sampled_from(["open", "pin", "unpin", "target", "untarget", "close", "0", "1",
                         "t", "../x", "\x00", "OPEN"]) | NUMBERS | ENDPOINTS | st.text(max_size=10)
LINES = st.lists(WORDS, max_size=4).map(" ".join) | st.text(max_size=60)


@pytest.fixture(scope="module")
def kmod(import_from: Any) -> ModuleType:
    return import_from(CONTAINERS / "kmod", "kmod")


@given(st.lists(LINES, min_size=1, max_size=8))
@example(["open 0", "pin 1000 ²", "pin ٣ 4096", "target 127.0.0.1:²  -", "unpin 99999999999"])
def test_kmod_answers_every_request_line(kmod: ModuleType, tmp_path_factory: Any,
                                         lines: list[str]) -> None:
    handle = kmod.Handle(kmod.Module(tmp_path_factory.mktemp("kmod")))
    try:
        for line in lines:
            reply = handle.execute(line)
            assert reply == "ok" or reply.startswith("error E"), reply
            assert "\n" not in reply
    finally:
        handle.close()


# -- the relay: NG requests over its own socket -------------------------------------------

CALL_IDS = st.sampled_from(["c1", "c2", "c3"])
TAGS = st.sampled_from(["t1", "t2", "t3", ""])
SDP_LINES = st.sampled_from([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "c=IN IP4 127.0.0.1",
    "c=IN IP4 relay.example.org", "c=IN IP6 ::1", "c=IN IP4", "m=audio 40000 RTP/AVP 0",
    "m=audio 99999 RTP/AVP 0", "m=audio ²0 RTP/AVP 0", "m=audio x RTP/AVP 0", "m=audio",
    "m=video 40002 RTP/AVP 96", "a=rtpmap:0 PCMU/8000", "a=sendrecv", "",
])
SDPS = st.lists(SDP_LINES, max_size=10).map("\r\n".join)
NG_VALUES = (st.integers(-10**12, 10**12) | st.text(max_size=12) | st.binary(max_size=12)
             | st.lists(st.text(max_size=6), max_size=3)
             | st.dictionaries(st.text(max_size=6), st.integers(), max_size=2))
REQUESTS = st.fixed_dictionaries(
    {"command": st.sampled_from(["offer", "answer", "delete", "query", "list", "statistics",
                                 "ping", "OFFER", "nope"]) | NG_VALUES},
    optional={"call-id": CALL_IDS | NG_VALUES, "from-tag": TAGS | NG_VALUES,
              "to-tag": TAGS | NG_VALUES, "sdp": SDPS | NG_VALUES, "limit": NG_VALUES,
              "flags": NG_VALUES, "replace": NG_VALUES})
CODEC = bencodepy.Bencode(encoding="utf-8", encoding_fallback="value")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    state = tmp_path_factory.mktemp("fuzz-kmod") / "kmod"
    with running_kmod(CONTAINERS / "kmod" / "kmod.py", state) as kmod_process:
        assert isinstance(kmod_process, KmodProcess)
        log = tmp_path_factory.mktemp("fuzz-relay") / "relay.log"
        # large shards: the fuzzed calls never come near the 16-pin ceiling
        with running_relay(kmod_process.dir, log, shard_size=1 << 20) as process:
            yield process


def delete_every_call(relay: RelayProcess) -> None:
    for call_id in ("c1", "c2", "c3"):
        relay.ng.request({"command": "delete", "call-id": call_id})


@pytest.mark.e2e
@given(st.lists(REQUESTS, min_size=1, max_size=4))
@example([{"command": "offer", "call-id": "c1", "from-tag": "t1",
           "sdp": "v=0\r\nc=IN IP4 relay.example.org\r\nm=audio 40000 RTP/AVP 0"}])
@example([{"command": "offer", "call-id": "c1", "from-tag": "t1",
           "sdp": "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 0"},
          {"command": "answer", "call-id": "c1", "from-tag": "t1", "to-tag": "t2",
           "sdp": "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio ²0 RTP/AVP 0"}])
def test_the_relay_answers_every_ng_request(relay: RelayProcess,
                                            requests: list[dict[str, Any]]) -> None:
    try:
        for request in requests:
            cookie = os.urandom(6).hex().encode()
            reply = relay.ng.raw(cookie + b" " + CODEC.encode(request), timeout=2.0)
            assert reply is not None, f"no reply to {request}"
            got, _, body = reply.partition(b" ")
            assert got == cookie
            answer = CODEC.decode(body)
            reason = str(answer.get("error-reason", ""))
            assert not reason.startswith("Internal error"), (request, reason)
            assert answer.get("result") in {"ok", "pong", "error"}, answer
    finally:
        delete_every_call(relay)
    assert relay.process.poll() is None


@pytest.mark.e2e
def test_after_the_fuzzing_the_relay_logged_no_failed_request(relay: RelayProcess) -> None:
    assert "NG request failed" not in relay.log()
    assert relay.ng.request({"command": "ping"})["result"] == "pong"
