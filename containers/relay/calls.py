"""Calls and their two legs, and the NG commands that create, change, show and delete them.

A call has the offerer's leg (from-tag) and the answerer's leg (to-tag, known at answer).
Each leg has one stream per media section; stream i of one leg relays to stream i of the other.
The port advertised to a party is its own leg's port: the offer going to the answerer carries
the answerer leg's ports, the answer going back carries the offerer leg's ports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from media import Endpoint, Stream
from ngwire import NgError, optional_int, optional_str, required_str
from sdprewrite import MediaEndpoint, SdpError, parse_media, rewrite


class Streams(Protocol):
    address: str

    def open_stream(self) -> Stream: ...

    def unkernelise(self, streams: list[Stream]) -> None: ...

    def close_streams(self, streams: list[Stream]) -> None: ...


@dataclass(eq=False)
class Leg:
    tag: str
    created: float
    streams: list[Stream] = field(default_factory=list)


@dataclass(eq=False)
class Call:
    call_id: str
    created: float
    last_signal: float
    offerer: Leg
    answerer: Leg

    def legs(self) -> tuple[Leg, Leg]:
        return (self.offerer, self.answerer)

    def last_activity(self) -> float:
        """The last signal or the last packet on any of its streams, whichever is later."""
        return max([self.last_signal, *(s.last_packet for s in self.streams())])

    def streams(self) -> list[Stream]:
        return self.offerer.streams + self.answerer.streams

    def leg_tagged(self, tag: str) -> Leg | None:
        return next((leg for leg in self.legs() if leg.tag == tag), None)

    def other(self, leg: Leg) -> Leg:
        return self.answerer if leg is self.offerer else self.offerer


def _parse(sdp: str) -> tuple[MediaEndpoint, ...]:
    try:
        return parse_media(sdp)
    except SdpError as exc:
        raise NgError(str(exc)) from exc


def _advertise(leg: Leg, media: tuple[MediaEndpoint, ...]) -> None:
    for stream, endpoint in zip(leg.streams, media, strict=True):
        stream.advertised = Endpoint(endpoint.address, endpoint.port)
        stream.kind, stream.protocol = endpoint.kind, endpoint.protocol


class CallTable:
    """All calls the relay holds; the NG thread changes it, statistics read it."""

    def __init__(self, streams: Streams, clock: Callable[[], float]) -> None:
        self._streams = streams
        self._clock = clock
        self._calls: dict[str, Call] = {}
        self._lock = threading.Lock()
        self.deleted_total = 0
        self.timeout_total = 0

    def offer(self, request: dict[str, Any]) -> dict[str, Any]:
        call_id = required_str(request, "call-id")
        from_tag = required_str(request, "from-tag")
        sdp = required_str(request, "sdp")
        media = _parse(sdp)
        call = self._calls.get(call_id) or self._new_call(call_id, from_tag, len(media))
        sender = call.leg_tagged(from_tag)
        if sender is None:
            raise NgError(f"from-tag {from_tag!r} is not a party of call {call_id!r}")
        if len(media) != len(sender.streams):
            raise NgError(f"Error rewriting SDP: re-offer has {len(media)} media, "
                          f"the call has {len(sender.streams)}")
        _advertise(sender, media)
        call.last_signal = self._clock()
        receiver = call.other(sender)
        return {"result": "ok", "sdp": self._rewritten(sdp, receiver)}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        call_id = required_str(request, "call-id")
        from_tag = required_str(request, "from-tag")
        to_tag = required_str(request, "to-tag")
        sdp = required_str(request, "sdp")
        media = _parse(sdp)
        call = self._calls.get(call_id)
        if call is None:
            raise NgError("Unknown call-id")
        offerer = call.leg_tagged(from_tag)
        if offerer is None:
            raise NgError(f"Unknown from-tag {from_tag!r} for call {call_id!r}")
        answerer = call.other(offerer)
        if len(media) != len(answerer.streams):
            raise NgError(f"Error rewriting SDP: answer has {len(media)} media, "
                          f"the offer had {len(answerer.streams)}")
        answerer.tag = to_tag
        _advertise(answerer, media)
        call.last_signal = self._clock()
        return {"result": "ok", "sdp": self._rewritten(sdp, offerer)}

    def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        call_id = required_str(request, "call-id")
        optional_str(request, "from-tag")  # checked for its type; the whole call goes
        with self._lock:
            call = self._calls.pop(call_id, None)
        if call is None:
            return {"result": "ok", "warning": "Call-ID not found or tags didn't match"}
        summary = call_summary(call, self._streams.address)
        self._release(call)
        self.deleted_total += 1
        return {"result": "ok", **summary}

    def expire(self, now: float, timeout: float) -> list[str]:
        """Close the calls that saw no signal and no packet for `timeout` seconds (rtpengine's
        `timeout`: a party that went away without a BYE); their call-ids."""
        with self._lock:
            idle = [c for c in self._calls.values() if now - c.last_activity() >= timeout]
            for call in idle:
                del self._calls[call.call_id]
        for call in idle:
            self._release(call)
        self.timeout_total += len(idle)
        return [call.call_id for call in idle]

    def query(self, request: dict[str, Any]) -> dict[str, Any]:
        call = self._calls.get(required_str(request, "call-id"))
        if call is None:
            raise NgError("Unknown call-id")
        return {"result": "ok", **call_summary(call, self._streams.address)}

    def list_calls(self, request: dict[str, Any]) -> dict[str, Any]:
        limit = optional_int(request, "limit")
        with self._lock:
            ids = list(self._calls)
        return {"result": "ok", "calls": ids if limit is None else ids[:limit]}

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls.values())

    def delete_all(self) -> None:
        with self._lock:
            calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            self._release(call)

    def _release(self, call: Call) -> None:
        """Everything a call holds goes: its kernel targets, its streams' state and ports."""
        streams = call.streams()
        self._streams.unkernelise(streams)
        self._streams.close_streams(streams)

    def _new_call(self, call_id: str, from_tag: str, media_count: int) -> Call:
        now = self._clock()
        call = Call(call_id, now, now, Leg(from_tag, now), Leg("", now))
        opened: list[Stream] = []
        try:
            for leg in call.legs():
                for _ in range(media_count):
                    opened.append(self._streams.open_stream())
                    leg.streams.append(opened[-1])
        except Exception as exc:
            self._streams.close_streams(opened)
            raise NgError(str(exc) or "Ran out of ports") from exc
        for mine, theirs in zip(call.offerer.streams, call.answerer.streams, strict=True):
            mine.peer, theirs.peer = theirs, mine
        with self._lock:
            self._calls[call_id] = call
        return call

    def _rewritten(self, sdp: str, receiver: Leg) -> str:
        try:
            return rewrite(sdp, self._streams.address, [s.port for s in receiver.streams])
        except SdpError as exc:
            raise NgError(str(exc)) from exc


def _endpoint(address: str, port: int) -> dict[str, Any]:
    return {"family": "IPv4", "address": address, "port": port}


def _stream_summary(stream: Stream, address: str) -> dict[str, Any]:
    advertised = stream.advertised or Endpoint("", 0)
    learned = stream.learned or (advertised.address, advertised.port)
    return {
        "local address": address,
        "local port": stream.port,
        "family": "IPv4",
        "advertised endpoint": _endpoint(advertised.address, advertised.port),
        "endpoint": _endpoint(learned[0], learned[1]),
        "flags": ["RTP", "filled"] if stream.advertised else ["RTP"],
        "last packet": int(stream.last_packet),
        "stats": {"packets": stream.packets, "bytes": stream.bytes, "errors": stream.errors},
    }


def _leg_summary(leg: Leg, peer: Leg, address: str) -> dict[str, Any]:
    return {
        "tag": leg.tag,
        "created": int(leg.created),
        "medias": [
            {"index": i, "type": stream.kind, "protocol": stream.protocol,
             "flags": ["send", "recv"],
             "streams": [_stream_summary(stream, address)]}
            for i, stream in enumerate(leg.streams, start=1)
        ],
        "subscribers": [{"tag": peer.tag, "type": "offer/answer"}],
    }


def _tag_key(leg: Leg, index: int) -> str:
    return leg.tag or f"<untagged {index}>"


def call_summary(call: Call, address: str) -> dict[str, Any]:
    """The body of rtpengine's query and delete replies: times, legs, SSRCs and totals."""
    streams = call.streams()
    ssrcs = {
        str(s.ssrc): {"packets": s.packets, "bytes": s.bytes, "tag": leg.tag}
        for leg in call.legs() for s in leg.streams if s.ssrc is not None
    }
    return {
        "created": int(call.created),
        "created_us": int((call.created % 1) * 1_000_000),
        "last signal": int(call.last_signal),
        "tags": {
            _tag_key(leg, i): _leg_summary(leg, call.other(leg), address)
            for i, leg in enumerate(call.legs(), start=1)
        },
        "SSRC": ssrcs,
        "totals": {
            "RTP": {
                "packets": sum(s.packets for s in streams),
                "bytes": sum(s.bytes for s in streams),
                "errors": sum(s.errors for s in streams),
            },
            "RTCP": {"packets": 0, "bytes": 0, "errors": 0},
        },
    }
