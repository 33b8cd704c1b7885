"""The proxy's 2026-07-28 path: a stateless stdio client's requests, each one POST to the hub.

Owns what a 2026-07-28 client over stdio needs from `onemcp proxy`: its requests (recognised by
`params._meta`'s protocol version, or `server/discover`) go to the hub as they are, with the
headers HTTP adds and stdio lacks (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and the
`Mcp-Param-*` of tools that annotate arguments, learnt from the hub's tools list); everything on
the reply stream (progress, logs, a `subscriptions/listen` feed) goes to stdout as it comes; a
`notifications/cancelled` closes the request's stream, which is the era's cancellation. No
session and no handshake. The legacy path (`proxy_legacy.HubSession`) is untouched by it; what both paths
share is here: a hub's HTTP answer as the client's reply (`reply_of`), and the proxy's stop ending
every wait for the hub at once (`Halted`, `pause`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import orjson

from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.target import Endpoint
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import HEADER_MISMATCH, METHOD_NOT_FOUND, UPSTREAM_UNAVAILABLE, echo
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.meta import PROTOCOL_VERSION
from onemcp.protocol.versions import MODERN_VERSIONS
from onemcp.search import meta as meta_tools
from onemcp.upstream import era

log = logging.getLogger("onemcp.proxy")
Reply = Callable[[Message, int, bytes], Message]


def is_modern(msg: Message) -> bool:
    """Is this client request of the 2026-07-28 era?"""
    if msg.get("method") == "server/discover":
        return True
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get(PROTOCOL_VERSION) in MODERN_VERSIONS


# What the request never left the proxy by (it is safe to send again); any other transport error came
# after it went out (a hub killed mid-reply): it may have run, and the client is told so, as in the legacy era.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
T = TypeVar("T")
RETRY = (0.05, 2.0)  # first and longest pause while waiting for the hub to listen
STOPPING = "onemcp proxy is shutting down"  # what a request the proxy will not see answered hears (-32000)
MAX_OUT = 256  # requests forwarded and not answered yet (each holds a connection to the hub); beyond, refused


def busy(rid: RequestId) -> Message:
    """The answer to a request past MAX_OUT: refused at once, as `serve --transport stdio` refuses it, and
    the client may send it again once replies come (20,000 written at once had taken 2,000 of the hub's
    connections, which all its clients share, and grown the proxy without bound)."""
    why = f"too many requests in flight on this session (limit {MAX_OUT}); wait for replies first"
    return jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": why, "data": {"limit": "calls_per_session"}})


class Halted(Exception):
    """The proxy is stopping (SIGTERM, SIGHUP): a request still waiting for the hub waits no more."""


async def pause(halt: anyio.Event, seconds: float) -> None:
    """A pause between attempts to reach the hub, which the proxy's stop ends at once (Halted)."""
    with anyio.move_on_after(seconds):
        await halt.wait()
    if halt.is_set():
        raise Halted


async def unless_halted(halt: anyio.Event, work: Callable[[], Awaitable[T]]) -> T:
    """`work`, ended at once (Halted) when the proxy stops: a hub that took the connection and never
    answers (hung, stopped with SIGSTOP) held the proxy past SIGTERM for as long as it held the socket."""
    done: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await halt.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            done.append(await work())
        except Exception as exc:  # raised again below as it came, not wrapped in the task group's ExceptionGroup
            failed.append(exc)
        tg.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not done:
        raise Halted
    return done[0]


def reply_of(msg: Message, status: int, body: bytes) -> Message:
    """The hub's answer to one POSTed request as the client's reply: its JSON-RPC body, or (an HTTP
    refusal: 401, 403, 502) an error that says why, under the request's id (both eras)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and ("result" in doc or isinstance(doc.get("error"), dict)):
        if doc.get("id") is None and msg.get("id") is not None:
            # refused before the hub read the message (a body over its limit): the client waits for its id
            doc = {**doc, "id": msg["id"]}
        return doc
    text = body.decode(errors="replace").strip()[:200]
    if status == 401 and os.environ.get(TOKEN_ENV, "").strip():  # what the proxy sends (see Proxy.run)
        text = f"the hub refused the token in {TOKEN_ENV}: it is not a key or token of this hub (revoked?)"
    elif status == 401:
        text = f"the hub requires a token: set {TOKEN_ENV} for `onemcp proxy` (an API key)"
    elif status == 403 and isinstance(doc, dict) and isinstance(doc.get("scope"), str):
        text = f"the token in {TOKEN_ENV} lacks the scope {doc['scope']!r}"
    return jsonrpc.error(msg.get("id"), {"code": UPSTREAM_UNAVAILABLE, "message": f"hub: HTTP {status}: {text}"})


def pick(replies: list[Message], rid: RequestId | None) -> Message | None:
    """The reply to request `rid` among what its POST brought: the one under its id, else an error the
    hub sent before it read the id (a bad view), as the reply under it."""
    reply = next((r for r in replies if r.get("id") == rid), None)
    if reply is None and replies and "error" in replies[-1]:
        reply = {**replies[-1], "id": rid}
    return reply


class ModernForwarder:
    def __init__(
        self,
        hub: Endpoint,
        http: httpx.AsyncClient,
        write: Callable[[Message], Awaitable[None]],
        reply_of: Reply,
        wait: float,
        halt: anyio.Event,
    ):
        self.hub = hub  # where it is (it may move: a restart at another port, runtime.json says)
        self.wait = wait  # how long a request waits for a hub that is not listening (restarting, starting)
        self.halt = halt  # set when the proxy stops: no request waits for the hub after it
        self.http = http
        self.write = write
        self.reply_of = reply_of  # a non-JSON-RPC HTTP answer (401, 403, 502) as the client's error reply
        self._in_flight: dict[Any, anyio.CancelScope] = {}
        self._param_names: dict[str, dict[str, str]] | None = None  # tool -> {argument: header}
        self._known: set[str] = set()  # tools whose annotations were learnt (none or some)

    def cancel(self, request_id: Any) -> bool:
        """Close the stream of an in-flight request (False: not one of ours)."""
        scope = self._in_flight.get(request_id) if jsonrpc.is_request_id(request_id) else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def request(self, msg: Message) -> None:
        rid = msg.get("id")
        method = msg.get("method")
        if isinstance(method, str) and not mcp_headers.is_plain(method):  # no Mcp-Method header can carry it
            await self.write(
                jsonrpc.error(rid, {"code": METHOD_NOT_FOUND, "message": f"Method not found: {echo(repr(method))}"})
            )
            return
        with anyio.CancelScope() as scope:
            self._in_flight[rid] = scope
            try:
                for attempt in (1, 2):
                    reply = await self._post_waiting(msg)
                    if reply is None:
                        return  # streamed to the client already
                    if attempt == 1 and self._stale_headers(msg, reply):
                        self._param_names = None  # the tool's annotations changed: learn them again
                        continue
                    await self.write(reply)
                    return
            except NOT_SENT as exc:  # nothing listens (past --wait): the request never went out
                text = self.hub.waiting or f"no onemcp hub answers at {self.hub.url}: {exc!r}"
                await self.write(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": text}))
            except httpx.TransportError as exc:  # it went out, and the hub went away before it answered
                text = f"the connection to the hub broke: {exc!r}; the request may or may not have run"
                await self.write(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": text}))
            except Halted:
                text = f"{STOPPING}: {self.hub.waiting or f'no onemcp hub answered at {self.hub.url}'}"
                await self.write(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": text}))
            finally:
                self._in_flight.pop(rid, None)
        # cancelled by the client: a cancelled request is never answered

    async def _post_waiting(self, msg: Message) -> Message | None:
        """`_post`, retried while nothing listens at the hub's address (never once a request went out),
        up to `wait`: a 2026-07-28 request waits for a restarting hub as a legacy one does."""
        delay, deadline = RETRY[0], anyio.current_time() + self.wait
        away = False
        while True:
            try:
                if away and not await self._ready():
                    raise httpx.ConnectError("the hub is starting")  # back, but not every upstream tried yet
                return await self._post(msg)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if self.hub.moved():  # restarted elsewhere: try there at once (once it is ready)
                    log.warning("the hub is at %s now (runtime.json)", self.hub.url)
                    away = True
                    continue
                if anyio.current_time() + delay > deadline:
                    raise
                away = True
                await pause(self.halt, delay)
                delay = min(delay * 2, RETRY[1])

    async def _ready(self) -> bool:
        """Has the hub tried all its upstreams (`/health/ready` not 503)? A server without it: yes."""
        ready = self.hub.url.split("?", 1)[0].rstrip("/").removesuffix("/mcp") + "/health/ready"
        return (await self.http.get(ready)).status_code != 503

    def _stale_headers(self, msg: Message, reply: Message) -> bool:
        err = reply.get("error")
        return msg.get("method") == "tools/call" and isinstance(err, dict) and err.get("code") == HEADER_MISMATCH

    async def _post(self, msg: Message) -> Message | None:
        """POST one request; its reply when it came as one JSON body, None when streamed to stdout."""
        headers = await self._headers(msg)
        async with self.http.stream("POST", self.hub.url, content=jsonrpc.dumps(msg), headers=headers) as response:
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "text/event-stream":
                return self.reply_of(msg, response.status_code, await response.aread())
            decoder = sse.Decoder()
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    await self._relay(event)
            last = decoder.close()
            if last is not None:
                await self._relay(last)
            return None

    async def _relay(self, event: sse.Event) -> None:
        item = sse.message(event)
        if item is not None:
            if item.get("method") == "notifications/tools/list_changed":
                self._param_names = None
            await self.write(item)

    async def _headers(self, msg: Message) -> dict[str, str]:
        params = msg.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(PROTOCOL_VERSION) if isinstance(meta, dict) else None
        tool = params.get("name") if isinstance(params, dict) else None
        names = await self._annotations(tool) if msg.get("method") == "tools/call" else {}
        return {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": version if isinstance(version, str) else era.MODERN,
            **mcp_headers.request_headers(msg, names),
        }

    async def _annotations(self, tool: object) -> dict[str, dict[str, str]]:
        """Which tool arguments travel as `Mcp-Param-*` headers: learnt from the hub's tools list, and
        for a tool that list lacks (search exposure lists only the meta-tools), from its
        get_tool_schema; remembered until the list changes."""
        if self._param_names is None:
            result = await self._ask("tools/list", {})
            tools = result.get("tools") if isinstance(result, dict) else None
            tools = tools if isinstance(tools, list) else []
            self._param_names = mcp_headers.header_params(tools)
            self._known = {str(t.get("name")) for t in tools if isinstance(t, dict)} | meta_tools.NAMES
        if isinstance(tool, str) and tool not in self._known:
            self._known.add(tool)  # asked once: a tool the hub does not know stays unknown
            result = await self._ask("tools/call", {"name": meta_tools.SCHEMA, "arguments": {"name": tool}})
            content = result.get("content") if isinstance(result, dict) and not result.get("isError") else None
            try:
                definition = orjson.loads(content[0]["text"]) if isinstance(content, list) and content else None
            except (orjson.JSONDecodeError, KeyError, TypeError):
                definition = None
            if isinstance(definition, dict):
                self._param_names.update(mcp_headers.header_params([definition]))
        return self._param_names

    async def _ask(self, method: str, params: dict[str, Any]) -> Any:
        """One request of the proxy's own to the hub: its result, or None."""
        message = {
            "jsonrpc": "2.0",
            "id": "onemcp-proxy",
            "method": method,
            "params": {**params, "_meta": era.hub_envelope()},
        }
        headers = {"accept": "application/json", "content-type": "application/json",
                   "mcp-protocol-version": era.MODERN, "mcp-method": method}  # fmt: skip
        if "name" in params:
            headers["mcp-name"] = str(params["name"])
        try:
            response = await self.http.post(self.hub.url, content=jsonrpc.dumps(message), headers=headers)
            return orjson.loads(response.content).get("result")
        except (httpx.TransportError, orjson.JSONDecodeError, AttributeError):
            return None
