"""The hub served over stdio: one client, newline-delimited JSON-RPC on stdin/stdout, in both eras.

Owns the stdio wire: reading one message per line, writing each message as one line (writes
serialised), the single session that lives as long as the process, requests answered
concurrently (several may be in flight), and the session's queued messages (list_changed, logs,
server->client requests) copied to stdout. The era is chosen message by message: a request whose
`params._meta` names a 2026-07-28 protocol version (or `server/discover`) is a stateless request,
answered as POST /mcp answers it (`stateless.py`: its own one-request session, under the same
access as the legacy session), its progress and logs written before its reply, cancelled by
`notifications/cancelled`; anything else is the legacy session's. What a message means is the
hub's; turning failures into JSON-RPC errors is `exchange.answer`'s. Logs go to stderr, never here.

Start-up differs from HTTP, where the hub runs long before clients come: here the client starts
the hub, so its first message waits (up to `READY_WAIT` in all: no list waits `firstListWait` again
after it) until every upstream was tried. Lines are read meanwhile (ahead of their handling, always),
so a stop during that wait still finds what was sent: the wait ends at once, and a request that
would wait for the start-up is answered 'the hub is shutting down'; end of input with nothing sent
ends it at once too. Shutdown follows the client: end of stdin (or `stop()`, which `serve
--transport stdio` calls on SIGTERM or SIGHUP) stops reading, open listen feeds end gracefully
(their request's result), in-flight requests get `DRAIN` seconds to finish (then each still running
is answered 'the hub is shutting down'), then the hub (and its upstreams) stop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from onemcp.auth.access import STDIO, Access
from onemcp.auth.principal import Principal
from onemcp.catalog.views import View
from onemcp.config import context
from onemcp.config.model import Exposure
from onemcp.downstream import stateless
from onemcp.downstream.exchange import answer
from onemcp.downstream.listen import relay_listener
from onemcp.hub.core import Hub
from onemcp.hub.listeners import Listener
from onemcp.hub.session import Session
from onemcp.observability.limits import hit
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    UPSTREAM_UNAVAILABLE,
    HubError,
    LimitReached,
    ProtocolError,
)
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.stdio import Input, ReadLine, Write, each_line
from onemcp.reload import Reloader

log = logging.getLogger("onemcp.downstream.stdio")
DRAIN = 5.0
FINISH = 1.0  # after DRAIN: for the requests cut off to write their errors before they are cancelled
READY_WAIT = 10.0  # longest the first message waits for every upstream to have been tried
READ_AHEAD = 64  # lines read and not yet handled (all those sent during the start-up wait, up to this)
MAX_CALLS = 256  # requests being answered at once, both eras (as for an /sse session); beyond, refused at once


class StdioServer:
    """One client session of `hub` over a line reader and writer."""

    def __init__(
        self,
        hub: Hub,
        principal: Principal,
        read_line: ReadLine,
        write: Write,
        reloader: Reloader | None = None,
        view: View | None = None,
        exposure: Exposure | None = None,
        ready_wait: float = READY_WAIT,
    ) -> None:
        self.hub = hub
        self._ready_wait = ready_wait
        self._stopped = False
        self._sent = False  # a line came before the end of input
        self._woken: anyio.Event | None = None  # ends the start-up wait early: a stop, or nothing sent
        self.reloader = reloader
        self._input = Input(read_line)
        self._write = write
        self._lock = anyio.Lock()
        self._copied = 0  # of the session's messages (`session.queued_count`), those written so far
        self._copying = False  # `_copy_outbox` runs
        self._wrote: anyio.Event | None = None  # set when it wrote one more (or ended)
        # the principal is the process's: the local operator, or $ONEMCP_TOKEN's when the config needs auth
        self._principal = principal
        self._view = view
        self._exposure = exposure
        # the operator started this hub for the directory it runs in: that project renders templates
        self._context = {"project": context.project(Path.cwd())}
        self.session: Session = hub.create_session("stdio", self.access())
        self.modern = stateless.ModernRequests(hub, "stdio-modern")
        self._modern_in_flight: dict[RequestId, anyio.CancelScope] = {}  # 2026-07-28 requests, by id
        self._listeners: set[Listener] = set()
        self._calls = 0  # requests being answered (MAX_CALLS)

    def access(self) -> Access:
        """What the stdio client reaches, decided as for every entry point: the legacy session and each
        2026-07-28 request alike."""
        return self.hub.access(self._principal, STDIO, self._view, self._exposure, context=self._context, trusted=True)

    async def send(self, msg: Message | bytes) -> None:
        data = msg if isinstance(msg, bytes) else jsonrpc.dumps(msg)
        async with self._lock:
            try:
                await self._write(data + b"\n")
            except (OSError, ValueError):
                log.info("stdout is closed; dropping %s", "a reply" if isinstance(msg, bytes) else msg.get("method"))

    def stop(self) -> None:
        """End the session as end of input does: no more reading, in-flight requests answered (SIGTERM)."""
        self._stopped = True
        if self._woken is not None:
            self._woken.set()
        self._input.stop()

    async def run(self) -> None:
        """Run the hub (and its config watcher) and serve the client until its stdin ends."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.hub.run)
            if self.reloader is not None:
                await tg.start(self.reloader.run)
            await self.serve()
            tg.cancel_scope.cancel()

    async def serve(self) -> None:
        """Serve the client on a hub that is running, until its stdin ends; then the session ends."""
        self._woken = anyio.Event()
        if self._stopped:
            self._woken.set()
        read, lines = anyio.create_memory_object_stream[bytes](READ_AHEAD)
        try:
            async with lines, read, anyio.create_task_group() as tg:
                tg.start_soon(self._copy_outbox)
                tg.start_soon(self._keep_alive)
                tg.start_soon(self._read, read)
                await self._start_up(self._woken)
                async with anyio.create_task_group() as requests:
                    async for line in lines:
                        await self._handle(line, requests)
                    for listener in list(self._listeners):
                        listener.finish()  # nobody will cancel them now: their result ends them
                    tg.start_soon(self._cut_off)  # beside the requests, not one of them: it ends with the session
                    requests.cancel_scope.deadline = anyio.current_time() + DRAIN + FINISH  # what even that left
                tg.cancel_scope.cancel()
        finally:
            self.hub.end_session(self.session.id)

    async def _read(self, lines: MemoryObjectSendStream[bytes]) -> None:
        """Every line until the end of input, read ahead of its handling (during the start-up wait too)."""
        async with lines:
            async for line in each_line(self._input, self._refuse_line):
                self._sent = True
                await lines.send(line)
        if not self._sent and self._woken is not None:
            self._woken.set()  # nothing to answer: no reason to wait for the upstreams

    async def _start_up(self, woken: anyio.Event) -> None:
        """The client started us just now: its first lists are complete, not empty. Until every upstream was
        tried, at most `ready_wait` in all (no request waits for the start-up after this), or until `woken`: a
        stop (a request still to wait for the start-up is answered 'the hub is shutting down'), or the end
        of input with nothing sent."""
        with anyio.move_on_after(self._ready_wait):
            async with anyio.create_task_group() as tg:

                async def tried() -> None:
                    await self.hub.until_tried()
                    tg.cancel_scope.cancel()

                tg.start_soon(tried)
                await woken.wait()
                tg.cancel_scope.cancel()
        self.hub.dispatcher.start_up_over(stopping=self._stopped)

    async def _cut_off(self) -> None:
        """After the grace, what is still being answered is answered 'the hub is shutting down' (it was
        cancelled without a reply)."""
        await anyio.sleep(DRAIN)
        cut = await self.hub.stopping.cut_off()
        if cut:
            log.warning("%d request(s) still being answered after the %gs grace: ended", cut, DRAIN)

    async def _refuse_line(self, why: str, rid: RequestId | None) -> None:
        await self.send(jsonrpc.error(rid, {"code": INVALID_REQUEST, "message": f"Invalid Request: {why}"}))

    async def _handle(self, line: bytes, requests: TaskGroup) -> None:
        try:
            msg = jsonrpc.parse(line)  # the same envelope rules as /mcp
        except ProtocolError as exc:
            await self.send(jsonrpc.refusal(exc))
            return
        self.session.touch()
        method = msg.get("method")
        if method is None:
            if "id" in msg:
                self.hub.on_client_response(self.session, msg)
            return
        if "id" not in msg:
            if method == "notifications/cancelled" and self._cancel_modern(msg.get("params")):
                return
            try:
                await self.hub.on_client_notification(self.session, msg)
            except HubError as exc:
                log.info("client notification %s failed: %s", method, exc)
            return
        if method != "initialize" and self._calls >= MAX_CALLS:
            await self._refuse_busy(msg["id"])
            return
        if stateless.claims_modern(msg):
            self._calls += 1
            scope = anyio.CancelScope()  # known before the next line is read: a cancellation finds it
            self._modern_in_flight[msg["id"]] = scope
            requests.start_soon(self._answer_modern, msg, scope)
            return
        if method == "initialize":
            params = msg.get("params")
            try:
                result = await self.hub.initialize(self.session, params if isinstance(params, dict) else {})
            except HubError as exc:  # a template that does not render for this project
                await self.send(jsonrpc.error(msg["id"], exc.to_error()))
                return
            await self.send(jsonrpc.result(msg["id"], result))
            return
        self._calls += 1
        requests.start_soon(self._answer, msg)

    async def _refuse_busy(self, rid: RequestId) -> None:
        """Each request in flight holds a task and its call's state (20,000 slow calls: 200 MB more): past
        MAX_CALLS one is refused at once, as an /sse session's POST is, and the client may send it again."""
        hit("calls_per_session", "stdio session has %d requests in flight: refused one", MAX_CALLS)
        why = f"too many requests in flight on this session (limit {MAX_CALLS}); wait for replies first"
        await self.send(jsonrpc.error(rid, LimitReached("calls_per_session", why, 429).to_error()))

    async def _answer(self, msg: Message) -> None:
        try:
            reply = await answer(self.hub, self.session, msg, self.send)
            if reply is not None:
                await self._written(self.session.queued_count)
                await self.send(reply)
        finally:
            self._calls -= 1

    async def _answer_modern(self, msg: Message, scope: anyio.CancelScope) -> None:
        """A 2026-07-28 request, as POST /mcp answers it; once cancelled, nothing more is written for it."""
        rid = msg["id"]
        try:
            with scope:
                reply = await self._modern_reply(msg)
                if reply is not None:
                    await self.send(reply)
        finally:
            self._calls -= 1
            if self._modern_in_flight.get(rid) is scope:
                del self._modern_in_flight[rid]

    async def _modern_reply(self, msg: Message) -> Message | bytes | None:
        """Its checks, its one-request session under the stdio entry's access, then its answer (None: a
        listen feed that was cancelled); every failure is the request's error reply (this task's boundary)."""
        rid = msg["id"]
        method = str(msg["method"])
        params = msg.get("params")
        try:
            meta = stateless.envelope(params)
            assert isinstance(params, dict)
            stateless.check_version(meta)
            stateless.check_method(method)
            stateless.check_params(params)
            session = self.modern.session(self.access(), meta)
            if method == "subscriptions/listen":
                await self._listen(session, rid, params)
                return None
            if self.modern.is_local(method):  # server/discover and lists may wait for the start-up
                with self.hub.stopping.bound() as bound:
                    return await self.modern.local(session, rid, method, params)
                return jsonrpc.error(rid, {"code": UPSTREAM_UNAVAILABLE, "message": bound.reason})
            return await self.modern.routed(session, msg, self.send)
        except HubError as exc:  # refused before it was routed (a routed one's error is counted by `answer`)
            self.hub.metrics.answered_error(method, exc.code)
            return jsonrpc.error(rid, exc.to_error())
        except Exception:
            log.exception("internal error while answering %s", method)
            self.hub.metrics.answered_error(method, INTERNAL_ERROR)
            return jsonrpc.error(
                rid, {"code": INTERNAL_ERROR, "message": "Internal error in onemcp (see the hub's log)"}
            )

    async def _listen(self, session: Session, rid: RequestId, params: dict[str, Any]) -> None:
        """The acknowledgement, then the feed, as lines; the hub's finishing it writes its result."""
        listener = await self.modern.listener(session, rid, params)
        self._listeners.add(listener)
        try:
            await relay_listener(self.hub, listener, self.hub.server_info(), self.send)
        finally:
            self._listeners.discard(listener)

    def _cancel_modern(self, params: object) -> bool:
        """Cancel a 2026-07-28 request in flight (False: not one of them, so the legacy session's)."""
        rid = params.get("requestId") if isinstance(params, dict) else None
        scope = self._modern_in_flight.get(rid) if jsonrpc.is_request_id(rid) else None
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _copy_outbox(self) -> None:
        outbox = self.session.outbox
        if outbox is None:  # the session ended
            return
        self._copying = True
        try:
            async for msg in outbox:
                await self.send(msg)
                self._copied += 1
                self._woke()
        finally:
            self._copying = False
            self._woke()

    def _woke(self) -> None:
        if self._wrote is not None:
            self._wrote.set()
            self._wrote = None

    async def _written(self, queued: int) -> None:
        """Wait until the session's first `queued` messages were written: a reply goes after what the
        session was sent before it (a `list_changed` its call caused, say), as on a server's own stdout."""
        while self._copying and self._copied < queued:
            if self._wrote is None:
                self._wrote = anyio.Event()
            await self._wrote.wait()

    async def _keep_alive(self) -> None:
        """The one session must not expire while the process lives, however quiet the client is."""
        while True:
            self.session.touch()
            await anyio.sleep(max(0.05, self.hub.config.hub.session_idle_timeout / 4))
