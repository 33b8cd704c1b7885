"""Minimal ASGI plumbing shared by the downstream endpoints: read bodies, write replies.

Plain ASGI (no framework on the hot path): one function per response shape.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import anyio
import orjson

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INVALID_REQUEST, ProtocolError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
T = TypeVar("T")
log = logging.getLogger("onemcp.http")

JSON = b"application/json"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def header(scope: Scope, name: bytes) -> str | None:
    """One request header (lower-case name), from a dict built once per request."""
    headers: dict[bytes, bytes] | None = scope.get("onemcp.headers")
    if headers is None:
        headers = scope["onemcp.headers"] = dict(scope["headers"])
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def accepted(scope: Scope) -> tuple[bool, bool]:
    """(JSON, SSE): which of the two reply types the request's Accept header takes (RFC 9110 12.5.1:
    media ranges such as `application/*` and `*/*` count, `q=0` refuses). No header takes both."""
    accept = header(scope, b"accept")
    if accept is None or not accept.strip():
        return True, True
    return _accepted(accept) if len(accept) <= 200 else _accepted.__wrapped__(accept)  # only short ones kept


@functools.lru_cache(maxsize=64)  # a client sends the same header every time: read once
def _accepted(accept: str) -> tuple[bool, bool]:
    json = sse = False
    for item in accept.split(","):
        kind, *params = (part.strip().lower() for part in item.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        json = json or kind in ("application/json", "application/*", "*/*")
        sse = sse or kind in ("text/event-stream", "text/*", "*/*")
    return json, sse


def repeated(scope: Scope, names: frozenset[bytes]) -> bytes | None:
    """The first of `names` the request carries more than once (one request, one Host: RFC 9112 3.2;
    a check of one of several values would pass whichever the checker reads), or None."""
    seen: set[bytes] = set()
    key: bytes
    for key, _ in scope["headers"]:
        if key in names:
            if key in seen:
                return key
            seen.add(key)
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


NOSNIFF = (b"x-content-type-options", b"nosniff")


class Response:
    """What a response has sent so far: the hub may have to end it itself (at the end of the shutdown grace)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None  # once started
        self.events = False  # started as an event stream
        self.ended = False

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.events = (b"content-type", b"text/event-stream") in message.get("headers", ())
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True
        await self._send(message)


def rpc_id(scope: Scope) -> jsonrpc.RequestId | None:
    """The id of the JSON-RPC request the exchange carries, once its body was read (`read_message`)."""
    found: jsonrpc.RequestId | None = scope.get("onemcp.rpc_id")
    return found


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    if not any(name == NOSNIFF[0] for name, _ in headers):  # a body is only ever what its type says
        headers.append(NOSNIFF)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, doc: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(doc), JSON, extra)


async def send_result(send: Send, scope: Scope, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A 200 JSON-RPC reply in a type the request accepts: JSON, or (a client that takes only SSE)
    one event on a stream that then ends."""
    if accepted(scope)[0]:
        await send_bytes(send, 200, body, JSON, extra)
    else:
        await start_sse(send, extra)
        await sse_chunk(send, b"event: message\ndata: " + body + b"\n\n")
        await end_stream(send)


async def send_empty(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": extra or []})
    await send({"type": "http.response.body", "body": b""})


async def start_sse(send: Send, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + (extra or [])})


async def sse_chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b""})


def error_body(code: int, message: str) -> dict[str, Any]:
    """An id-less JSON-RPC error, the body of an HTTP error status."""
    return jsonrpc.error(None, {"code": code, "message": message})


def json_body(scope: Scope) -> bool:
    """Does the request say its body is JSON: exactly application/json, UTF-8 if a charset is given?"""
    media, _, parameters = (header(scope, b"content-type") or "").partition(";")
    charset = next(
        (v for k, _, v in (p.partition("=") for p in parameters.split(";")) if k.strip().lower() == "charset"),
        "utf-8",
    )
    return media.strip().lower() == "application/json" and charset.strip().strip('"').lower() in ("utf-8", "utf8")


async def read_message(scope: Scope, receive: Receive, send: Send, limit: int) -> jsonrpc.Message | None:
    """The request's JSON-RPC message; None when it could not be read (the error reply was sent)."""
    length = header(scope, b"content-length")
    try:
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            raise BodyTooLarge
        msg = jsonrpc.parse(await read_body(receive, limit))
        scope["onemcp.rpc_id"] = msg.get("id")
        return msg
    except BodyTooLarge:
        await send_json(
            send, 413, error_body(INVALID_REQUEST, f"Request body larger than {limit} bytes (onemcp.maxBodyBytes)")
        )
    except ProtocolError as exc:
        await send_json(send, 400, jsonrpc.refusal(exc))
    except ClientGone:
        pass
    return None


async def until_disconnect(receive: Receive, scope: Any) -> None:
    """Wait for the client to go away, then cancel `scope` (run beside a long response)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


# A request's work runs this long (s) before a watcher looks for its client's disconnect: most calls are
# answered sooner and make none; a client gone before is noticed then (uvicorn tells a request whose client
# went away `http.disconnect` at once).
WATCH_AFTER = 0.02


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work()`'s result, or None when the client went away first (the work is then cancelled).

    The same as `until_disconnect` beside the work in a task group, for a request that is answered at
    once: a task group, its task and the cancel that ends it cost a request 40-80 us (anyio 4.16),
    a plain watcher task 5-10 (made, run, cancelled and run again), so it is made only once the work
    has run `WATCH_AFTER` (a timer, cancelled when the work ends first). The watcher never outlives this
    call: it is cancelled on the way out and reaped when it ends.
    """
    loop = asyncio.get_running_loop()
    watchers: list[asyncio.Task[None]] = []
    with anyio.CancelScope() as scope:
        timer = loop.call_later(WATCH_AFTER, _start_watching, loop, receive, scope, watchers)
        try:
            return await work()
        finally:
            timer.cancel()
            for watcher in watchers:
                watcher.cancel()
    return None  # cancelled by the watcher


def _start_watching(
    loop: asyncio.AbstractEventLoop, receive: Receive, scope: anyio.CancelScope, watchers: list[asyncio.Task[None]]
) -> None:
    watcher = loop.create_task(_watch(receive, scope))
    watcher.add_done_callback(_reap)
    watchers.append(watcher)


async def _watch(receive: Receive, scope: anyio.CancelScope) -> None:
    await until_disconnect(receive, scope)


def _reap(task: asyncio.Task[None]) -> None:
    """Retrieve how the watcher ended (else asyncio logs 'exception never retrieved' at exit)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("watching a request for its client's disconnect failed: %r", exc)


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (the first of a name wins)."""
    found: dict[str, str] = {}
    for part in (header(scope, b"cookie") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found.setdefault(name, value)
    return found


def forwarded(scope: Scope) -> bool:
    """Did a proxy pass this request on (it then may come from anywhere)?"""
    return any(header(scope, name) is not None for name in (b"forwarded", b"x-forwarded-for", b"x-real-ip"))
