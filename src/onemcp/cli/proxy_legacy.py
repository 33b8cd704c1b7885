"""The proxy's legacy-era path: its one Streamable HTTP session with the hub, kept alive across restarts.

Owns `HubSession`: the client's `initialize` (its own params) opens the session, every message after
it is POSTed with `Mcp-Session-Id`, replies come back as JSON or as an SSE stream (whose other
messages, server->client requests included, are delivered as they arrive), and a GET stream carries
the hub's unrelated messages. Ids are never rewritten: the hub sees the client's own.

When the hub stops answering, or answers 404 for the session, it reconnects with backoff, waits
(bounded) for the hub's upstreams to be up, re-initializes with the client's original params,
replays what the session had set (log level, resource subscriptions), and tells the client its
lists changed so it fetches them again. A request whose POST never reached the hub is retried on
the new session; one that was cut off mid-reply gets an error (it may have run).

Does not own: reading stdin and writing stdout, which requests are still out, the end of input and
signals (`proxy.Proxy`), nor a 2026-07-28 client's requests (`proxy_modern`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from onemcp.cli.proxy_modern import STOPPING, Halted, pause, pick, reply_of, unless_halted
from onemcp.cli.target import Endpoint
from onemcp.protocol import jsonrpc, sse
from onemcp.protocol.errors import INVALID_REQUEST, UPSTREAM_UNAVAILABLE
from onemcp.protocol.jsonrpc import Message

log = logging.getLogger("onemcp.proxy")
BACKOFF = (0.05, 2.0)  # first and longest pause between reconnection attempts
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
        halted = ""
        deadline = anyio.current_time() + self.wait  # --wait: for a hub to answer; one that answers is waited for
        try:
            while True:
                self._moved()
                try:  # a hub starting (its upstreams, READY_WAIT at most) or slow to answer is not "no hub"
                    await unless_halted(self.halt, self.until_ready)
                    sid = await unless_halted(self.halt, lambda: self.post(msg, None, self._collect(replies)))
                    break
                except (SessionGone, CutOff) as exc:
                    log.info("waiting for the hub: %s", exc)
                if (left := deadline - anyio.current_time()) <= 0:
                    break
                await pause(self.halt, min(delay, left))
                delay = min(delay * 2, BACKOFF[1])
        except Halted:  # SIGTERM while waiting for the hub: answered now, not after --wait
            halted = f"{STOPPING}: "
        reply = pick(replies, msg.get("id"))
        if reply is None:
            text = halted + (self.hub.waiting or f"no onemcp hub answers at {self.url} (start one with `onemcp serve`)")
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
