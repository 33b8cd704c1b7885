"""`onemcp proxy`: a stdio MCP server that forwards everything to a running hub (for stdio-only clients).

Owns the bridge between one stdio client (Claude Desktop, say) and one legacy-era Streamable
HTTP session with the hub (a 2026-07-28 client's requests take `proxy_modern` instead): the
client's `initialize` (its own params) opens the session, every message after it
is POSTed with `Mcp-Session-Id`, replies come back as JSON or as an SSE stream
(whose other messages, server->client requests included, go to stdout as they arrive), the
client's answers to those requests are POSTed back, and a GET stream carries the hub's unrelated
messages. Ids are never rewritten: the hub sees the client's own.

Surviving a hub restart is the point of it: when the hub stops answering, or answers 404 for the
session, the proxy reconnects with backoff, waits (bounded) for the hub's upstreams to be up,
re-initializes with the client's original params,
replays what the session had set (log level, resource subscriptions), and tells the client its
lists changed so it fetches them again. A request whose POST never reached the hub is retried on
the new session; one that was cut off mid-reply gets an error (it may have run). The end of
stdin, SIGTERM and SIGHUP end it alike: requests still out get `DRAIN` seconds, then each one the hub has
not answered is answered -32000 (as `serve --transport stdio` does; a signal also ends at once any
wait for the hub, answering the requests in it), then the session is ended.

The hub and view come from flags, else the nearest `.onemcprc`, else runtime.json, else the
default URL (the hub may start after the proxy); a URL from runtime.json (or the default) is not
fixed: whenever the hub stops answering the file is read again, so a hub restarted at another
address is followed (`target.Endpoint`). A token for a hub that requires one comes from
`$ONEMCP_TOKEN`. Logs go to stderr; stdout carries JSON-RPC only.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.cli import argtypes
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.proxy_modern import MAX_OUT, STOPPING, Halted, ModernForwarder, busy, is_modern, pause, pick, reply_of
from onemcp.cli.target import Endpoint, TargetError, add_view_flags, resolve, with_exposure
from onemcp.config.context import Signer, local_signer
from onemcp.config.paths import resolve_path
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import INVALID_REQUEST, UPSTREAM_UNAVAILABLE, ProtocolError
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.stdio import Input, ReadLine, Write, each_line, std_streams, until_terminated

MAX_LINE = 64 * 1024 * 1024  # bytes of one client message held (the hub's own bound is 4 MiB by default)
log = logging.getLogger("onemcp.proxy")
DEFAULT_URL = "http://127.0.0.1:3050/mcp"
CONNECT_TIMEOUT = 5.0
WAIT = 30.0  # how long a request (or initialize) waits for the hub to come back before it gets an error
BACKOFF = (0.05, 2.0)  # first and longest pause between reconnection attempts
DRAIN = 5.0  # at the end of input, how long requests still out may take to be answered
# every call holds a connection to the hub for its whole reply: no bound of the proxy's own (httpx's default
# of 100 made the 101st request, and each notification behind it, wait for a call to end)
POOL = httpx.Limits(max_connections=None, max_keepalive_connections=20)
NOTES_QUEUE = 10_000  # the client's notifications and answers waiting to be POSTed; beyond, its reading waits
ATTEMPTS = 3  # POSTs of one request (a retry only when the previous one never reached the hub)
LIST_CHANGED = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)
LEGACY_VERSION = "2025-11-25"
NOT_INITIALIZED = "not initialized: send initialize first (its parameters open the proxy's session with the hub)"
READY_WAIT = 15.0  # how long a (re)connection waits for the hub's upstreams before going ahead anyway
Deliver = Callable[[Message], Awaitable[None]]  # where messages go (stdout, or a list)


class SessionGone(Exception):
    """The request did not reach a live session (no connection, or 404): safe to send again."""


class CutOff(Exception):
    """The hub went away after the request was sent: it may have run, so it is not repeated."""


class HubSession:
    """The proxy's one legacy-era session with the hub: opened, used, lost and re-opened."""

    def __init__(self, hub: Endpoint, http: httpx.AsyncClient, write: Deliver, wait: float, halt: anyio.Event) -> None:
        self.hub = hub  # where it is (it may move: a restart at another port)
        self.http = http
        self.write = write
        self.wait = wait
        self.halt = halt  # the proxy is stopping: no request waits for the hub any more
        self.init_request: Message | None = None  # the client's, replayed on every re-initialize
        self.client_initialized = False
        self.session_id: str | None = None
        self.protocol_version = LEGACY_VERSION
        self.generation = 0
        self.log_level: dict[str, Any] | None = None  # the last logging/setLevel params
        self.subscriptions: set[str] = set()
        self._changed = anyio.Event()  # set (and replaced) whenever the session comes or goes
        self._lost = anyio.Event()
        self._tg: TaskGroup | None = None

    @property
    def url(self) -> str:
        return self.hub.url

    def _moved(self) -> None:
        """Read runtime.json again before each attempt to reach the hub (it may listen elsewhere now)."""
        if self.hub.moved():
            log.warning("the hub is at %s now (runtime.json)", self.hub.url)

    # ---------------------------------------------------------------- state
    def _announce(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def live_session(self, wait: float) -> str:
        """The current session id, waiting up to `wait` seconds for one; TimeoutError if none (Halted: stopping)."""
        with anyio.fail_after(wait):
            while self.session_id is None:
                if self.halt.is_set():
                    raise Halted
                await self._changed.wait()  # `run` announces the halt too
        return self.session_id

    def lost(self, session_id: str) -> None:
        """`session_id` no longer works: start re-establishing (once per session)."""
        if self.session_id != session_id:
            return
        log.warning("lost the hub session at %s; reconnecting", self.url)
        self.session_id = None
        self._announce()
        self._lost.set()

    def headers(self, session_id: str | None = None) -> dict[str, str]:
        out = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": self.protocol_version,
        }
        if session_id is not None:
            out["mcp-session-id"] = session_id
        return out

    # ---------------------------------------------------------------- wire
    async def post(self, msg: Message, session_id: str | None, deliver: Deliver) -> str:
        """POST one message; each message of the reply goes to `deliver`. Returns the session id header."""
        headers = self.headers(session_id)
        if session_id is None:
            headers.pop("mcp-protocol-version")
        is_request = "method" in msg and "id" in msg
        try:
            async with self.http.stream("POST", self.url, content=jsonrpc.dumps(msg), headers=headers) as response:
                if response.status_code == 404 and session_id is not None:
                    raise SessionGone("the hub does not know the session (it restarted, or the session expired)")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype == "text/event-stream":
                    await self._read_events(response, deliver)
                elif response.status_code != 202 and is_request:
                    body = await response.aread()
                    await deliver(reply_of(msg, response.status_code, body))
                return str(response.headers.get("mcp-session-id", ""))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SessionGone(f"no hub answers at {self.url}: {exc}") from None
        except httpx.TransportError as exc:
            # It reached the hub (or may have): a call that may have run is not sent twice.
            raise CutOff(f"the connection to the hub broke: {exc!r}") from None

    async def _read_events(self, response: httpx.Response, deliver: Deliver) -> None:
        decoder = sse.Decoder()
        async for chunk in response.aiter_bytes():
            for event in decoder.feed(chunk):
                await self._deliver_event(event, deliver)
        last = decoder.close()
        if last is not None:
            await self._deliver_event(last, deliver)

    @staticmethod
    async def _deliver_event(event: sse.Event, deliver: Deliver) -> None:
        msg = sse.message(event)
        if msg is not None:
            await deliver(msg)

    async def until_ready(self) -> None:
        """Wait (bounded) until the hub has tried all its upstreams, so the first lists are whole.

        SessionGone when nothing listens. A server without onemcp's `/health/ready` is taken as ready.
        """
        ready = self.url.split("?", 1)[0].rstrip("/").removesuffix("/mcp") + "/health/ready"
        delay = BACKOFF[0]
        with anyio.move_on_after(READY_WAIT):
            while True:
                try:
                    response = await self.http.get(ready)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise SessionGone(f"no hub answers at {self.url}: {exc}") from None
                except httpx.TransportError:
                    return
                if response.status_code != 503:
                    return
                await pause(self.halt, delay)
                delay = min(delay * 2, BACKOFF[1])

    # ---------------------------------------------------------------- from the client
    async def initialize(self, msg: Message) -> None:
        """The client's initialize: open the session (waiting for the hub a while), answer with the hub's reply."""
        self.client_initialized = False
        replies: list[Message] = []
        delay, sid = BACKOFF[0], ""  # (a reply cut off after the hub answered it has no session id)
        text = f"no onemcp hub answers at {self.url} (start one with `onemcp serve`)"
        deadline = anyio.current_time() + self.wait  # --wait: for a hub to answer; one that answers is waited for
        try:
            while True:
                self._moved()
                try:  # a hub starting (its upstreams, READY_WAIT at most) or slow to answer is not "no hub"
                    await self.until_ready()
                    sid = await self.post(msg, None, self._collect(replies))
                    break
                except (SessionGone, CutOff) as exc:
                    log.info("waiting for the hub: %s", exc)
                if (left := deadline - anyio.current_time()) <= 0:
                    break
                await pause(self.halt, min(delay, left))
                delay = min(delay * 2, BACKOFF[1])
        except Halted:  # SIGTERM while waiting for the hub: answered now, not after --wait
            text = f"{STOPPING}: {text}"
        reply = pick(replies, msg.get("id"))
        if reply is None:
            await self.write(jsonrpc.error(msg.get("id"), {"code": UPSTREAM_UNAVAILABLE, "message": text}))
            return
        if "result" in reply:  # requests may follow (refused before: no session could come for them)
            self.init_request = msg
            if sid:
                self._opened(sid, reply["result"])
        await self.write(reply)

    def _opened(self, session_id: str, result: Any) -> None:
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        self.protocol_version = version if isinstance(version, str) else LEGACY_VERSION
        self.session_id = session_id
        self.generation += 1
        self._announce()

    @staticmethod
    def _collect(into: list[Message]) -> Deliver:
        async def deliver(msg: Message) -> None:
            into.append(msg)

        return deliver

    async def request(self, msg: Message) -> None:
        """Forward a request; its reply stream's messages go to the client as they come."""
        rid = msg.get("id")
        if self.init_request is None:  # no session comes without the client's initialize: say so now
            if msg.get("method") == "ping":  # allowed before initialize, and answered by any peer
                await self.write(jsonrpc.result(rid, {}))
            else:
                await self.write(jsonrpc.error(rid, {"code": INVALID_REQUEST, "message": NOT_INITIALIZED}))
            return
        self._remember(msg)
        reason = f"no onemcp hub answers at {self.url}"
        for _ in range(ATTEMPTS):
            try:
                sid = await self.live_session(self.wait)
            except TimeoutError:
                break
            except Halted:  # SIGTERM while it waited for the hub (to come back): answered now
                reason = f"{STOPPING}: {reason}"
                break
            try:
                await self.post(msg, sid, self.write)
                return
            except SessionGone as exc:
                reason = str(exc)
                self.lost(sid)
            except CutOff as exc:
                self.lost(sid)
                text = f"{exc}; the request may or may not have run"
                await self.write(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": text}))
                return
        await self.write(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": reason}))

    def _remember(self, msg: Message) -> None:
        """What a re-initialized session must be told again."""
        method, params = msg.get("method"), msg.get("params")
        if not isinstance(params, dict):
            return
        if method == "logging/setLevel":
            self.log_level = params
        elif method == "resources/subscribe" and isinstance(params.get("uri"), str):
            self.subscriptions.add(params["uri"])
        elif method == "resources/unsubscribe":
            self.subscriptions.discard(params.get("uri"))

    async def notify(self, msg: Message) -> None:
        """A notification or a response from the client: sent to the current session, if any (never queued)."""
        if msg.get("method") == "notifications/initialized":
            self.client_initialized = True
        sid = self.session_id
        if sid is None:
            log.info("no hub session; dropped %s", msg.get("method") or "a response")
            return
        try:
            await self.post(msg, sid, self.write)
        except SessionGone:
            self.lost(sid)
        except CutOff as exc:
            log.info("%s", exc)
        if msg.get("method") == "notifications/initialized" and self._tg is not None:
            self._tg.start_soon(self._listen, sid)

    async def close(self) -> None:
        """End the session politely (the client went away)."""
        sid = self.session_id
        if sid is None:
            return
        with anyio.move_on_after(2.0, shield=True):
            with contextlib.suppress(httpx.TransportError):
                await self.http.delete(self.url, headers=self.headers(sid))

    # ---------------------------------------------------------------- background
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Re-establish the session whenever it is lost (after the client's first initialize)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._on_halt)
            task_status.started()
            while True:
                await self._lost.wait()
                self._lost = anyio.Event()  # the next loss is the next session's
                await self._reconnect()

    async def _on_halt(self) -> None:
        await self.halt.wait()
        self._announce()  # a request waiting for a session sees the halt

    async def _reconnect(self) -> None:
        delay = BACKOFF[0]
        attempt = 0
        while True:
            attempt += 1
            self._moved()
            try:
                await self._reinitialize()
            except (SessionGone, CutOff, ValueError) as exc:
                if attempt == 1 or attempt % 10 == 0:
                    log.info("hub not back yet (attempt %d): %s", attempt, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            log.warning("reconnected to the hub at %s (new session)", self.url)
            for method in LIST_CHANGED:
                await self.write(jsonrpc.notification(method))
            return

    async def _reinitialize(self) -> None:
        assert self.init_request is not None
        generation = self.generation
        msg = {**self.init_request, "id": f"onemcp-proxy-{generation + 1}"}
        replies: list[Message] = []
        await self.until_ready()
        sid = await self.post(msg, None, self._collect(replies))
        reply = next((r for r in replies if r.get("id") == msg["id"]), None)
        if reply is None or "result" not in reply or not sid:
            raise ValueError(f"the hub refused to initialize: {reply.get('error') if reply else 'no reply'}")
        if self.client_initialized:
            await self.post(jsonrpc.notification("notifications/initialized"), sid, self.write)
        if self.log_level is not None:
            await self.post({"jsonrpc": "2.0", "id": "onemcp-proxy-level", "method": "logging/setLevel",
                             "params": self.log_level}, sid, self._collect([]))  # fmt: skip
        for uri in sorted(self.subscriptions):
            await self.post({"jsonrpc": "2.0", "id": "onemcp-proxy-sub", "method": "resources/subscribe",
                             "params": {"uri": uri}}, sid, self._collect([]))  # fmt: skip
        self._opened(sid, reply["result"])
        if self.client_initialized and self._tg is not None:
            self._tg.start_soon(self._listen, sid)

    async def _listen(self, sid: str) -> None:
        """The session's GET stream (the hub's unrelated messages), reopened while the session lives."""
        delay = BACKOFF[0]
        while self.session_id == sid:
            headers = self.headers(sid)
            headers["accept"] = "text/event-stream"
            try:
                async with self.http.stream("GET", self.url, headers=headers) as response:
                    if response.status_code == 405:
                        return  # the hub offers no GET stream
                    if response.status_code == 404:
                        self.lost(sid)
                        return
                    if response.status_code == 200:
                        delay = BACKOFF[0]
                        await self._read_events(response, self.write)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self.lost(sid)  # the hub is gone
                return
            except httpx.TransportError as exc:
                log.info("the hub's event stream broke: %r", exc)
            await anyio.sleep(delay)  # an ended stream: reopen it (a dead hub shows up as ConnectError)
            delay = min(delay * 2, BACKOFF[1])


# ---------------------------------------------------------------------- the stdio side
class Proxy:
    """Reads the client's messages from stdin, answers on stdout, through one `HubSession`."""

    def __init__(
        self, hub: Endpoint, read_line: ReadLine, write: Write, wait: float = WAIT, signer: Signer | None = None, *,
        drain: float = DRAIN,
    ) -> None:  # fmt: skip
        self.hub = hub
        self.signer = signer  # the project's template context, signed afresh on each request
        self.wait = wait
        self.drain = drain
        self.halt = anyio.Event()  # stopped by a signal: requests waiting for the hub are answered at once
        self._input = Input(read_line)
        self._write = write
        self._lock = anyio.Lock()
        self._out: dict[str | int, anyio.CancelScope] = {}  # requests forwarded and not answered yet
        self._idle = anyio.Event()  # set while none is
        self._idle.set()

    async def _start(self, tg: TaskGroup, handler: Deliver, msg: Message) -> None:
        """Forward one request, counted before the next line is read: at the end those still out are answered.
        Past MAX_OUT still out it is refused at once (`busy`)."""
        rid, scope = msg["id"], anyio.CancelScope()
        if len(self._out) >= MAX_OUT:
            return await self.send(busy(rid))
        if not self._out:
            self._idle = anyio.Event()
        self._out[rid] = scope
        tg.start_soon(self._forward, handler, msg, scope)

    async def _forward(self, handler: Deliver, msg: Message, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await handler(msg)
        finally:  # ended unanswered (cancelled by the client, a stream the hub ended): nothing to answer
            if self._out.get(msg["id"]) is scope:
                del self._out[msg["id"]]
            if not self._out:
                self._idle.set()

    async def _cut_off(self) -> None:
        """After the grace: each request forwarded and still not answered is ended and answered -32000,
        once (as `serve --transport stdio` answers it), whatever its era."""
        if not self._out:
            return
        log.warning("%d request(s) not answered by the hub after the %gs grace: ended", len(self._out), self.drain)
        for scope in list(self._out.values()):
            scope.cancel()
        for rid in list(self._out):
            text = f"{STOPPING}: the hub had not answered"
            await self.send(jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": text}), cut=True)

    def stop(self) -> None:
        """End as at end of input (SIGTERM, SIGHUP): requests still out are answered, the hub session
        ended; a request still waiting for the hub (to start, or come back) is answered at once."""
        self.halt.set()
        self._input.stop()

    async def send(self, msg: Message, *, cut: bool = False) -> None:
        """Write one message; a reply marks its request answered (`cut`: written only if it was not)."""
        rid = msg.get("id")
        async with self._lock:
            if "method" not in msg and isinstance(rid, str | int):
                if self._out.pop(rid, None) is None and cut:
                    return
                if not self._out:
                    self._idle.set()
            try:
                await self._write(jsonrpc.dumps(msg) + b"\n")
            except (OSError, ValueError):  # the client's end of stdout is gone: as `serve --transport stdio`
                log.info("stdout is closed; dropping %s", msg.get("method") or f"the reply to {msg.get('id')!r}")

    async def run(self) -> None:
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT)
        token = os.environ.get(TOKEN_ENV, "").strip()
        auth = {"authorization": f"Bearer {token}"} if token else {}
        signer = self.signer

        async def sign(request: httpx.Request) -> None:
            if signer is not None:
                request.headers.update(signer.headers())

        hooks: dict[str, list[Any]] = {"request": [sign]}
        notes, to_post = anyio.create_memory_object_stream[Message](NOTES_QUEUE)
        posted = anyio.Event()
        async with (
            httpx.AsyncClient(timeout=timeout, trust_env=False, headers=auth, event_hooks=hooks, limits=POOL) as http,
            anyio.create_task_group() as tg,
        ):
            hub = HubSession(self.hub, http, self.send, self.wait, self.halt)
            modern = ModernForwarder(self.hub, http, self.send, reply_of, self.wait, self.halt)
            await tg.start(hub.run)
            tg.start_soon(self._post_notes, hub, to_post, posted)
            async with notes:
                async for line in each_line(self._input, self._refuse_line):
                    await self._handle(hub, modern, line, tg, notes)
            with anyio.move_on_after(self.drain):  # the client closed its end: what it asked is still answered
                await self._idle.wait()
                await posted.wait()
            await self._cut_off()
            await hub.close()
            tg.cancel_scope.cancel()

    @staticmethod
    async def _post_notes(hub: HubSession, to_post: MemoryObjectReceiveStream[Message], posted: anyio.Event) -> None:
        """The client's notifications and answers, POSTed one after another in its order, beside the
        reading of stdin (which a slow POST, or a hub slow to take one, must never hold up: a cancel or
        a ping behind it would wait for it)."""
        async with to_post:
            async for msg in to_post:
                await hub.notify(msg)
        posted.set()

    async def _refuse_line(self, why: str) -> None:
        await self.send(jsonrpc.error(None, {"code": INVALID_REQUEST, "message": f"Invalid Request: {why}"}))

    async def _handle(
        self, hub: HubSession, modern: ModernForwarder, line: bytes, tg: TaskGroup,
        notes: MemoryObjectSendStream[Message],
    ) -> None:  # fmt: skip
        try:
            msg = jsonrpc.parse(line)  # the same envelope rules as /mcp
        except ProtocolError as exc:
            await self.send(jsonrpc.refusal(exc))
            return
        if "method" in msg and "id" in msg and is_modern(msg):
            await self._start(tg, modern.request, msg)  # 2026-07-28: stateless, one POST each
            return
        params = msg.get("params")
        cancelled = msg.get("method") == "notifications/cancelled" and isinstance(params, dict)
        if cancelled and isinstance(params, dict) and modern.cancel(params.get("requestId")):
            return
        if "method" in msg and "id" in msg:
            if msg["method"] == "initialize":
                await hub.initialize(msg)  # in line: nothing else may go out before the session exists
            else:
                await self._start(tg, hub.request, msg)
        elif msg.get("method") == "notifications/initialized":
            await hub.notify(msg)  # in line: the session is ready before the requests after it are sent
        else:
            await notes.send(msg)  # in the client's order, by `_post_notes`, never holding up this loop


# ---------------------------------------------------------------------- command
def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    proxy = sub.add_parser(
        "proxy", parents=[config], help="a stdio MCP server that forwards to a running hub (for stdio-only clients)"
    )
    proxy.add_argument(
        "--url",
        type=argtypes.hub_url,
        help=f"the hub's MCP endpoint (default: .onemcprc, runtime.json, else {DEFAULT_URL})",
    )
    add_view_flags(proxy)
    proxy.add_argument(
        "--wait",
        type=argtypes.seconds,
        default=WAIT,
        metavar="S",
        help=f"how long initialize, and each request, waits for a hub to answer ({WAIT:g}s)",
    )
    proxy.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(), format="onemcp proxy: %(message)s")
    if args.log_level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is debug detail
    try:
        target = resolve(
            config_flag=args.config,
            url=args.url,
            view={"preset": args.preset, "filter": args.filter, "tags": args.tags},
            default_url=DEFAULT_URL,
        )
    except TargetError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return 2
    url = with_exposure(target.url, args.exposure)
    log.info("forwarding stdio to %s", url)
    # a URL runtime.json gave (or the default, none running) is followed when the hub moves
    hub = Endpoint(url, resolve_path(args.config) if target.source in ("runtime", "default") else None)
    try:
        signer = local_signer(target.config, Path.cwd())  # this directory's project renders template servers
        if signer is not None:  # names this proxy's run: per-session templates serve its 2026-07-28 requests too
            signer.context["session"] = f"proxy-{secrets.token_hex(8)}"
        proxy = Proxy(hub, *std_streams(MAX_LINE), wait=args.wait, signer=signer)
        # SIGTERM (how clients end a stdio server) or SIGHUP ends it as EOF does: the hub session is ended
        code = anyio.run(until_terminated, proxy.run, proxy.stop)
    except KeyboardInterrupt:
        return 130  # Ctrl-C, as the shell reports it
    return code or 0
