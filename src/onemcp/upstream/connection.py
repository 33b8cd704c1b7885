"""One upstream as a JSON-RPC peer owned by the hub.

Owns: when to handshake (its steps: `handshake`) and the fallback to HTTP+SSE, hub-minted request
ids and the map back to callers, progress-token remapping, deadlines' courtesy cancels (sent: `cancels`),
server-initiated requests and notifications (handed to the hub through callbacks; how many may
wait for a client at once is capped, the excess refused at once through `replies.ReplyQueue`),
refreshing the cached lists on `list_changed` (coalesced) and after a new session, and the
connection's state and last error. Does not own: the bytes (a `Transport`, its message budget), which
downstream session a reverse message belongs to (the hub decides), whether the upstream is alive (`liveness`), restarts.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable
from typing import Any, Literal, Protocol

import anyio
import orjson
from anyio.abc import TaskGroup

from onemcp.config.model import MAX_RESPONSE_BYTES, ServerConfig
from onemcp.observability.limits import hit
from onemcp.observability.redact import REDACTOR
from onemcp.protocol import headers as mcp_headers
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    INTERNAL_ERROR,
    UPSTREAM_UNAVAILABLE,
    InvalidParams,
    UpstreamError,
    UpstreamReplied,
    UpstreamTimeout,
)
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.methods import KINDS
from onemcp.protocol.names import shown_as
from onemcp.upstream import echo, era
from onemcp.upstream.call import Call, Requester
from onemcp.upstream.cancels import EVERY, Cancels
from onemcp.upstream.feed import ChangeFeed
from onemcp.upstream.freshness import Freshness
from onemcp.upstream.handshake import HANDSHAKE, handshake
from onemcp.upstream.lists import Relist, read_list
from onemcp.upstream.liveness import Liveness, keepalive
from onemcp.upstream.pacing import Pace
from onemcp.upstream.replies import ReplyQueue
from onemcp.upstream.transports.base import SessionExpired, Transport, TransportError

State = Literal["starting", "ready", "failed", "stopped"]
log = logging.getLogger("onemcp.upstream")


class ConnectionEvents(Protocol):
    """What the hub hears from a connection."""

    def on_state(self, conn: UpstreamConnection) -> None: ...
    def on_list(self, conn: UpstreamConnection, kind: str, items: list[dict[str, Any]]) -> None: ...
    def on_notification(self, conn: UpstreamConnection, msg: Message, call: Call | None) -> None: ...
    def on_server_request(
        self, conn: UpstreamConnection, msg: Message, call: Call | None
    ) -> Awaitable[Message | None]: ...
    def pending_client_request_limit(self) -> int:
        """How many server->client requests one connection may have open (read at each request)."""
        ...

    def own_connection_limit(self) -> int:
        """How many own connections (per session or principal) one server may have (`upstream.isolation`)."""
        ...

    def own_connection_group_limit(self) -> int:
        """How many of those one group (the sessions of one principal) may keep before its stalest idle goes."""
        ...


class UpstreamConnection:
    def __init__(
        self,
        name: str,
        config: ServerConfig,
        transport: Transport,
        events: ConnectionEvents,
        *,
        owner: Requester | None = None,
    ) -> None:
        self.name = name
        self.label = shown_as(name)  # as clients know it: a template instance by its template's name
        # The downstream session this connection serves alone (`isolation: session`), or
        # None for the shared connection that also feeds the catalog.
        self.owner = owner
        self.settled = anyio.Event()  # set when the state leaves "starting"
        self.config = config
        self.transport = transport
        self.events = events
        self.state: State = "starting"
        self.ready_since: float | None = None  # monotonic time it became ready
        self.last_heard = time.monotonic()  # the last message from the upstream
        self.last_answered = float("-inf")  # the last response (to any request of ours): it is alive
        self.last_error: str | None = None
        self.protocol_version: str | None = None
        self.era: str = "legacy"  # "modern" once server/discover answered
        # Does it take a legacy-era connection too? (SDK 2.x servers do, yet list only 2026-07-28 in
        # server/discover.) Assumed, unless the config pins the era, until a legacy handshake fails.
        self.speaks_legacy = config.protocol == "auto"
        # It sent a server->client request on this shared connection (`isolation: auto` then gives
        # each session that can be asked its own connection).
        self.asks_clients = False
        self.capabilities: dict[str, Any] = {}
        self.server_info: dict[str, Any] = {}
        self.instructions: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, Call] = {}
        self._renewing: set[int] = set()  # calls refused for a session gone, to be sent again in the next one
        self._tg: TaskGroup | None = None
        self._reinit_lock = anyio.Lock()
        self.cancels = Cancels(self._send, lambda hub_id: self.transport.forget(hub_id))
        transport.before_resend = self._after_cancels
        self.feed = ChangeFeed(self)  # used when the upstream speaks 2026-07-28
        self._idle: anyio.Event | None = None  # set when the last client call is done
        # Server->client requests being served (each a task, held until a client answers), and
        # replies that hold nothing (pings, refusals) waiting for their writer: both bounded.
        self.reverse_open = 0
        self.replies = ReplyQueue(self.respond, lambda: self._tg)
        self.liveness = Liveness(self)
        self._stale: dict[str, Relist] = {}  # list kinds being read again after list_changed
        self._early: set[str] = set()  # list kinds changed before the connection was ready
        self.pace = Pace(name)  # how soon a list that keeps changing is read again
        self.fresh = Freshness(lambda: self.capabilities, self.refresh_soon)  # ... one it cannot announce

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Connect, handshake, fill the catalog, then serve until the transport dies."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._watch_transport)
                try:
                    with anyio.fail_after(self.config.startup_timeout):
                        await self.transport.open(tg, self._deliver, self._transport_failed)
                        try:
                            await handshake(self)
                        except (TransportError, UpstreamError):
                            if not await self._fall_back_to_sse(tg):
                                raise
                        if self.owner is None:
                            await self._refresh_all()
                except TimeoutError:
                    self._set_failed(self.transport.did_not_start())
                except (TransportError, UpstreamError) as exc:
                    self._set_failed(str(exc))
                else:
                    self._set_state("ready")
                    while self._early:
                        self.refresh_soon(self._early.pop())
                    if self.era == "modern" and self.owner is None:
                        tg.start_soon(self.feed.run)
                    if self.config.ping_interval is not None:
                        tg.start_soon(keepalive, self, self.config.ping_interval)
                    await self.transport.closed.wait()
                    self._set_failed(self.transport.close_reason or "connection closed")
                tg.cancel_scope.cancel()
        except Exception as exc:  # the boundary: one upstream never takes the hub down
            log.exception("upstream %s: unexpected error", self.name)
            self._set_failed(f"internal error: {exc!r}")
        finally:
            self._tg = None
            self.fail_pending(self.last_error or "connection closed")
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()
            if self.state not in ("failed",):
                self._set_state("stopped")

    def _set_state(self, state: State) -> None:
        self.state = state
        if state == "ready":
            self.ready_since = time.monotonic()
        if state != "starting":
            self.settled.set()
        self.events.on_state(self)

    def _untagged(self, error: object) -> str:
        """An error's text without this server's "[name] ": the message it goes into names the server once."""
        return str(error).removeprefix(f"[{self.label}] ")

    def _set_failed(self, error: str) -> None:
        if self.state == "failed":
            return
        error = self._untagged(error)  # "[name] server is failed (...)", not "[name] ... ([name] ...)"
        self.last_error = REDACTOR.shown(error)  # /health, the admin API and clients' errors show it
        log.warning("upstream %s failed: %s", self.name, error)
        self._set_state("failed")

    async def _fall_back_to_sse(self, tg: anyio.abc.TaskGroup) -> bool:
        """The spec's backwards-compatible probe: a URL of no declared type whose POSTed handshake
        is refused with 404/405 may be an old HTTP+SSE server. Try GET + SSE; True when it answered."""
        refused = getattr(self.transport, "handshake_refused", None)
        if self.transport.kind != "http" or self.config.type is not None or refused is None:
            return False
        from onemcp.upstream.transports.sse import SseTransport

        log.info("upstream %s: POST refused (HTTP %s); trying the HTTP+SSE transport", self.name, refused)
        await self.transport.aclose()
        sse_config = self.config.model_copy(update={"type": "sse"})
        self.transport = SseTransport(self.name, sse_config, getattr(self.transport, "auth", None))
        self.transport.before_resend = self._after_cancels
        tg.start_soon(self._watch_transport)
        try:
            await self.transport.open(tg, self._deliver, self._transport_failed)
            await handshake(self)
        except (TransportError, UpstreamError) as exc:
            why = self._untagged(exc)
            raise TransportError(f"POST refused (HTTP {refused}), and no HTTP+SSE server either: {why}") from None
        return True

    async def _watch_transport(self) -> None:
        await self.transport.closed.wait()
        self.fail_pending(self.transport.close_reason or "connection closed")

    def fail_pending(self, reason: str, *, closed: bool = True, keep_own: bool = False) -> None:
        """Calls in flight end: the connection closed (`reason` says why), or the hub stops it (`reason` says so);
        `keep_own`: only those made for clients (the hub is stopping: its own handshake ends with it, not failed)."""
        pending = {rid: call for rid, call in self._pending.items() if call.origin is not None or not keep_own}
        self._pending = {rid: call for rid, call in self._pending.items() if rid not in pending}
        told = self._untagged(reason)
        self._settled()
        for call in pending.values():
            call.broken = True
            why = f"[{self.label}] {'upstream closed: ' if closed else ''}{told}"
            call.finish(jsonrpc.error(call.downstream_id, {"code": UPSTREAM_UNAVAILABLE, "message": why}))

    async def _reinitialize(self, stale_session: str | None) -> None:
        async with self._reinit_lock:
            if getattr(self.transport, "session_id", None) != stale_session:
                return  # somebody else already did it
            log.info("upstream %s: session expired, re-initializing", self.name)
            listed = self.kinds()
            self.transport.reset_session()
            self.transport.protocol_version = None
            await handshake(self, self.config.startup_timeout)
        if self.owner is None:  # a new session is a new server instance: what it offers may have changed
            for kind in listed:
                if kind not in self.kinds():
                    self.events.on_list(self, kind, [])  # it no longer offers them
            for kind in self.kinds():
                self.refresh_soon(kind, unpaced=True)  # in the background, after the lock (its requests wait)

    # ---------------------------------------------------------------------- lists
    def kinds(self) -> list[str]:
        """The lists it serves, in the order they are read."""
        listed = [k for k in ("tools", "prompts", "resources") if k in self.capabilities]
        return listed + ["resourceTemplates"] * ("resources" in listed)

    async def _refresh_all(self) -> None:
        for kind in self.kinds():
            await self.refresh(kind)

    async def refresh(self, kind: str) -> None:
        size_limit = self.config.max_response_bytes or MAX_RESPONSE_BYTES
        items = await read_list(self.request, self.name, kind, size_limit, self.fresh.reading(kind))
        if kind == "tools":
            self.transport.param_names = mcp_headers.header_params(items)
        self.events.on_list(self, kind, items)

    async def subscribe_resource(self, uri: str, params: dict[str, Any], limit: float | None = None) -> None:
        """Ask for updates of one resource: a request (legacy, within `limit`) or the change feed's filter (modern)."""
        if self.era == "modern":
            self.feed.add(uri)
        else:
            await self.request("resources/subscribe", {**params, "uri": uri}, limit=limit)

    async def unsubscribe_resource(self, uri: str, params: dict[str, Any]) -> None:
        if self.era == "modern":
            self.feed.remove(uri)
        else:
            await self.request("resources/unsubscribe", {**params, "uri": uri})

    def refresh_soon(self, kind: str, *, unpaced: bool = False) -> Relist | None:
        """Refresh `kind` after a list_changed (or once its kept list expired: `freshness`): one refresh
        per kind runs, and changes announced meanwhile make one more after it (a flood costs two lists); a
        list that keeps changing is read again after a pause (`pacing`), unless `unpaced` (a new upstream
        session: no change the server announced, and its requests wait for the list). None: not connected."""
        if kind in self._stale:
            self._stale[kind].again = True
        elif self._tg is not None:
            self._stale[kind] = Relist()
            self._tg.start_soon(self._refresh_quietly, kind)
        if unpaced and kind in self._stale:
            self._stale[kind].awaited = True
        return self._stale.get(kind)

    async def _refresh_quietly(self, kind: str) -> None:
        relist = self._stale[kind]
        try:
            while True:
                if not relist.awaited and (wait := self.pace.delay(kind)) > 0:
                    await relist.pause(self.pace.sleep(wait))  # no call waits for it: one that keeps changing waits
                relist.begin()
                try:
                    await self.refresh(kind)
                except UpstreamError as exc:
                    log.warning("upstream %s: refreshing %s failed: %s", self.name, kind, exc)
                finally:
                    self.pace.done(kind)
                    relist.end()
                if not relist.again:
                    break
        finally:
            self._stale.pop(kind, None)
            relist.close()

    # ------------------------------------------------------------------- requests
    async def begin(self, msg: Message, *, origin: Requester | None = None) -> Call:
        """Send a downstream request upstream under a hub id; the caller drives the Call.

        `msg` is rewritten in place (id, progress token): it was parsed for this purpose.
        """
        if self._tg is None:
            raise UpstreamError(self.name, f"not connected ({self.state}: {self.last_error or 'stopped'})")
        hub_id = next(self._ids)
        call = Call(self.name, hub_id, msg.get("id"), self.config.timeout, origin=origin)
        call.method = str(msg.get("method", ""))
        call.request = msg
        params = msg.get("params")
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                call.progress_token = meta["progressToken"]
                params["_meta"] = {**meta, "progressToken": hub_id}
        msg["id"] = hub_id
        era.stamp(msg, self.era, origin)
        self._pending[hub_id] = call
        try:
            await self._send(msg)
        except BaseException:
            self._pending.pop(hub_id, None)
            raise
        return call

    def _transport_failed(self, msg: Message, error: TransportError) -> None:
        """A request the transport accepted could not be carried: error, or re-init and resend."""
        hub_id = msg.get("id")
        call = self._pending.get(hub_id) if isinstance(hub_id, int) else None
        if call is None:
            return
        if isinstance(error, SessionExpired) and self._tg is not None:
            self._renewing.add(call.hub_id)  # the server refused it unread: abandoned meanwhile, nothing to cancel
            self._tg.start_soon(self._resend_after_reinit, call, msg, error.session)
            return
        del self._pending[call.hub_id]
        self._settled()
        call.broken = True
        call.finish(jsonrpc.error(call.downstream_id, error.for_caller(self.name).to_error()))

    async def _resend_after_reinit(self, call: Call, msg: Message, stale: str | None) -> None:
        try:
            await self._reinitialize(stale)
            await self._after_cancels(msg)
            if call.hub_id not in self._pending:
                return  # abandoned meanwhile: never sent in the new session (nothing would cancel it there)
            self._renewing.discard(call.hub_id)  # from here the transport has it (`cancel`)
            await self.transport.send(msg, jsonrpc.dumps(msg))
        except (UpstreamError, TransportError) as exc:
            if self._pending.pop(call.hub_id, None) is not None:
                err = exc if isinstance(exc, UpstreamError) else exc.for_caller(self.name)
                call.finish(jsonrpc.error(call.downstream_id, err.to_error()))
        finally:
            self._renewing.discard(call.hub_id)

    async def _send(self, msg: Message) -> None:
        try:
            body = jsonrpc.dumps(msg)
        except (TypeError, orjson.JSONEncodeError):
            raise InvalidParams(
                "the request cannot be forwarded: it nests too deeply or holds non-JSON values"
            ) from None
        handshake = msg.get("method") in HANDSHAKE
        if self.cancels.pending and not handshake and msg.get("method") != "notifications/cancelled":
            await self.cancels.carried(self._origin(msg))  # a cancel before it reaches the upstream before it
        if self._reinit_lock.locked() and not handshake:
            async with self._reinit_lock:  # a new session is being made: this goes in it, not before
                pass
        try:
            await self.transport.send(msg, body)
        except SessionExpired as expired:
            if handshake:  # never a new session from within the handshake
                raise UpstreamError(self.name, str(expired)) from None
            await self._reinitialize(expired.session)
            await self._after_cancels(msg)
            try:
                await self.transport.send(msg, body)
            except TransportError as exc:
                raise exc.for_caller(self.name) from None
        except TransportError as exc:
            raise exc.for_caller(self.name) from None

    async def _after_cancels(self, msg: Message) -> None:
        """A message sent again (after a new session, a new token, a redirect) waits, as one sent first does, until
        the cancels started before it are carried: the upstream would count their requests as still running."""
        method = msg.get("method")
        if self.cancels.pending and method not in HANDSHAKE and method != "notifications/cancelled":
            await self.cancels.carried(self._origin(msg))

    def _origin(self, msg: Message) -> Any:
        """Whom a message is sent for, as its cancels are ordered (`Cancels.carried`): a request's caller (a
        client's session, None: the hub's own); anything else, every one (cancels.EVERY)."""
        call = self._pending.get(msg["id"]) if "method" in msg and isinstance(msg.get("id"), int) else None
        return call.origin if call is not None else EVERY

    def abandon(self, call: Call, reason: str) -> None:
        """The caller gave up (deadline, client cancel): forget it and tell the upstream."""
        if self._pending.pop(call.hub_id, None) is None or self._tg is None:
            return
        self._settled()
        if call.method == "initialize":  # never cancelled (spec); its stream is closed, nothing said
            self.transport.forget(call.hub_id)
        elif call.hub_id in self._renewing:  # refused unread (its session gone), not sent again: nothing to cancel
            self._renewing.discard(call.hub_id)
        elif not self.transport.cancel(call.hub_id):
            self.cancels.start(self._tg, call.hub_id, reason, call.origin)

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, limit: float | None = None
    ) -> dict[str, Any]:
        """The hub's own request (handshake, lists): result, or UpstreamError; within `limit` (inf: the
        caller's deadline only, the handshake's `startupTimeout`), else `timeout`."""
        msg: Message = {"jsonrpc": "2.0", "id": 0, "method": method} | ({} if params is None else {"params": params})
        limit = self.config.timeout if limit is None else limit
        call = await self.begin(msg)
        try:
            with anyio.fail_after(limit):
                reply = await call.result()
        except TimeoutError:
            self.abandon(call, "timeout")
            raise UpstreamTimeout(self.name, f"{method} timed out after {limit:g}s") from None
        except BaseException:  # its caller was cancelled (shutdown, a client gone): both sides forget it
            self.abandon(call, "cancelled")
            raise
        if "error" in reply:
            raise UpstreamReplied(self.name, method, reply["error"] if isinstance(reply["error"], dict) else {})
        res = reply.get("result")
        return res if isinstance(res, dict) else {}

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        try:
            with anyio.fail_after(self.config.timeout):
                await self._send(jsonrpc.notification(method, params))
        except TimeoutError:
            raise UpstreamTimeout(self.name, f"sending {method} timed out") from None

    async def respond(self, upstream_id: RequestId, reply: Message) -> None:
        """Answer a server-initiated request under the upstream's own id."""
        reply["id"] = upstream_id
        reply["jsonrpc"] = "2.0"
        try:
            with anyio.fail_after(self.config.timeout):
                await self._send(reply)
        except (UpstreamError, TimeoutError) as exc:
            log.warning("upstream %s: could not answer its request: %r", self.name, exc)

    # ------------------------------------------------------------------- incoming
    def _deliver(self, msg: Message, related: RequestId | None) -> None:
        self.last_heard = time.monotonic()
        method = msg.get("method")
        if method is not None and (reply := echo.sent_back(msg, self._pending)) is not None:
            msg, method = reply, None  # the hub's own request sent back (`cat`): its call gets this error
        if method is None:
            self._on_response(msg)
        elif "id" in msg:
            self._on_server_request(msg, related)
        else:
            self._on_notification(msg, method, related)

    def _on_response(self, msg: Message) -> None:
        self.last_answered = time.monotonic()
        rid = msg.get("id")
        if isinstance(rid, str) and len(rid) <= 19 and rid.isdecimal() and rid.isascii():
            rid = int(rid)  # a server that echoes ids as text ("7" for 7): its answer, not a minute's wait
        call = self._pending.pop(rid, None) if isinstance(rid, int) and not isinstance(rid, bool) else None
        if call is None:  # a late answer to an abandoned request, or to none: never forwarded
            self.transport.budget.take()  # and counted as a notification is (a reply the hub awaits is not)
            return
        self._settled()
        msg["id"] = call.downstream_id
        err = msg.get("error")
        if call.origin is not None and isinstance(err, dict) and isinstance(err.get("message"), str):
            msg["error"] = {**err, "message": f"[{self.label}] {err['message']}"}
        call.finish(msg)

    def origins(self) -> list[Requester]:
        """Who the downstream calls in flight on this connection are for (sessions)."""
        return [call.origin for call in self._pending.values() if call.origin is not None and not call.parked]

    def related_call(self, related: RequestId | None) -> Call | None:
        """The in-flight call a reverse message belongs to, when that can be known: the wire says so for
        HTTP SSE responses. Otherwise, when exactly one downstream call is in flight on this connection, it
        is that one (the documented rule for shared stdio upstreams); with several the message is unrelated."""
        if isinstance(related, int):
            return self._pending.get(related)
        downstream = [call for call in self._pending.values() if call.origin is not None and not call.parked]
        return downstream[0] if len(downstream) == 1 else None

    def _on_notification(self, msg: Message, method: str, related: RequestId | None) -> None:
        params = msg.get("params")
        if method == "notifications/progress" and isinstance(params, dict):
            call = self._pending.get(token) if isinstance(token := params.get("progressToken"), int) else None
            if call is None:  # the call ended: the hub knows whether a task it made goes on under its token
                self.events.on_notification(self, msg, None)
            elif call.progress_token is not None:
                msg["params"] = {**params, "progressToken": call.progress_token}
                call.push(msg)
            return
        if method.endswith("/list_changed") and method != "notifications/roots/list_changed":
            kind = method.removeprefix("notifications/").removesuffix("/list_changed")
            kinds = [k for k in (["resources", "resourceTemplates"] if kind == "resources" else [kind]) if k in KINDS]
            if self._tg is not None and self.state == "ready":
                for k in kinds:
                    self.refresh_soon(k)
                # Said before a call's answer, it may be that call's doing: the answer waits for the new
                # list, so that a client listing at once sees what a direct client would.
                relisted = [self._stale[k] for k in kinds if k in self._stale]
                if calls := [call for call in self._pending.values() if call.origin is not None]:  # its doing?
                    readings = [relist.awaited_by_a_call() for relist in relisted]  # read without a pause
                    for call in calls:
                        call.wait_for(readings)
            else:
                self._early.update(kinds)  # announced during the first lists: listed again once ready
            return
        self.events.on_notification(self, msg, self.related_call(related))

    def _on_server_request(self, msg: Message, related: RequestId | None) -> None:
        if self._tg is None:
            return
        if msg["method"] == "ping":
            self.replies.put(msg["id"], jsonrpc.result(None, {}))
            return
        # Checked before anything is held for it: beyond the limit the upstream is told at once.
        limit = self.events.pending_client_request_limit()
        if self.reverse_open >= limit:
            method = msg["method"]
            hit("pending_client_requests", "upstream %s: %s refused, %d already waiting", self.name, method, limit)
            why = f"onemcp: too many requests to clients are waiting (limit {limit} for server {self.name!r})"
            self.replies.put(msg["id"], jsonrpc.error(None, {"code": INTERNAL_ERROR, "message": why}))
            return
        self.reverse_open += 1
        self._tg.start_soon(self._serve_reverse, msg, self.related_call(related))

    async def _serve_reverse(self, msg: Message, call: Call | None) -> None:
        try:
            upstream_id = msg["id"]
            reply = await self.events.on_server_request(self, msg, call)
            if reply is not None:  # None: the upstream cancelled its request, so no reply
                await self.respond(upstream_id, reply)
        finally:
            self.reverse_open -= 1

    async def responsive(self, since: float) -> bool:
        """Has the upstream shown it is alive since `since` (monotonic)? (See `Liveness`.)"""
        return await self.liveness.responsive(since)

    async def drained(self) -> None:
        """Wait until no call made for a client is in flight."""
        while self.in_flight:
            if self._idle is None or self._idle.is_set():  # one event for every waiter
                self._idle = anyio.Event()
            await self._idle.wait()

    def _settled(self) -> None:
        if self._idle is not None and not self.in_flight:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        """Calls made for clients that are still waiting (not the hub's own, such as a listen)."""
        return sum(1 for call in self._pending.values() if call.origin is not None)
