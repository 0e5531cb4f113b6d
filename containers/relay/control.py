"""NG request handling: cookie, retransmission cache, command dispatch, error replies.

No sockets here: `Control.handle(datagram)` returns the reply datagram, or None to drop it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ngwire import NgError, decode_request, encode_reply, error_reply, required_str, split_cookie

Handler = Callable[[dict[str, Any]], dict[str, Any]]
Log = Callable[[str, str], None]


class ReplyCache:
    """Replies by cookie for `ttl` seconds (at most `size` of them), so a retransmitted
    request gets the same answer and is not executed twice."""

    def __init__(self, size: int = 8192, ttl: float = 30.0) -> None:
        self._size = size
        self._ttl = ttl
        self._replies: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    def get(self, cookie: bytes, now: float) -> bytes | None:
        entry = self._replies.get(cookie)
        if entry is None or now - entry[0] > self._ttl:
            return None
        return entry[1]

    def put(self, cookie: bytes, reply: bytes, now: float) -> None:
        self._replies[cookie] = (now, reply)
        self._replies.move_to_end(cookie)
        while len(self._replies) > self._size:
            self._replies.popitem(last=False)
        while self._replies and now - next(iter(self._replies.values()))[0] > self._ttl:
            self._replies.popitem(last=False)


def ping(_: dict[str, Any]) -> dict[str, Any]:
    return {"result": "pong"}


class Control:
    """Turns NG datagrams into reply datagrams through a table of command handlers."""

    def __init__(
        self, handlers: dict[str, Handler], log: Log, clock: Callable[[], float],
        cache: ReplyCache | None = None,
    ) -> None:
        self._handlers = {"ping": ping, **handlers}
        self._log = log
        self._clock = clock
        self._cache = cache or ReplyCache()

    def handle(self, data: bytes) -> bytes | None:
        datagram = split_cookie(data)
        if datagram is None:
            self._log("WARNING", f"NG datagram without a cookie dropped ({len(data)} bytes)")
            return None
        now = self._clock()
        cached = self._cache.get(datagram.cookie, now)
        if cached is not None:
            return cached
        reply = encode_reply(datagram.cookie, self.execute(datagram.body))
        self._cache.put(datagram.cookie, reply, now)
        return reply

    def execute(self, body: bytes) -> dict[str, Any]:
        try:
            request = decode_request(body)
            command = required_str(request, "command")
            handler = self._handlers.get(command.lower())
            if handler is None:
                raise NgError("Unrecognized command")
            return handler(request)
        except NgError as exc:
            return error_reply(str(exc))
        except Exception as exc:  # the relay never dies of a request
            self._log("ERR", f"NG request failed: {exc!r}")
            return error_reply(f"Internal error: {exc}")
