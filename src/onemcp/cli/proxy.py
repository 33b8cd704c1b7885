"""`onemcp proxy`: a stdio MCP server that forwards everything to a running hub (for stdio-only clients).

Owns the stdio side and the command: it reads one stdio client's (Claude Desktop, say) messages
from stdin and hands each to its path, a legacy-era Streamable HTTP session with the hub
(`proxy_legacy.HubSession`: it opens, re-opens after a hub restart, and replays the session) or, for
a 2026-07-28 client's requests, one stateless POST each (`proxy_modern`); it writes their replies to
stdout, keeps count of the requests still out, and POSTs the client's notifications and answers in
the client's order without holding up the reading. The end of stdin, SIGTERM and SIGHUP end it
alike: requests still out get `DRAIN` seconds, then each one the hub has not answered is answered
-32000 (as `serve --transport stdio` does; a signal also ends at once any wait for the hub,
answering the requests in it), then the session is ended.

The hub and view come from flags, else the nearest `.onemcprc`, else runtime.json, else the
config directory's hub is waited for (it may start after the proxy; no address is guessed: the
default one may be another directory's hub); a URL from runtime.json is not fixed: whenever the
hub stops answering the file is read again, so a hub restarted at another address is followed
(`target.Endpoint`). A token for a hub that requires one comes from
`$ONEMCP_TOKEN`. Logs go to stderr; stdout carries JSON-RPC only.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from onemcp.cli import argtypes
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.proxy_legacy import Deliver, HubSession
from onemcp.cli.proxy_modern import MAX_OUT, STOPPING, ModernForwarder, busy, is_modern, reply_of
from onemcp.cli.target import Endpoint, TargetError, add_view_flags, no_hub_for, resolve, with_exposure
from onemcp.config.context import Signer, local_signer
from onemcp.config.paths import resolve_path
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, UPSTREAM_UNAVAILABLE, ProtocolError
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.stdio import Input, ReadLine, Write, each_line, std_streams, until_terminated

MAX_LINE = 64 * 1024 * 1024  # bytes of one client message held (the hub's own bound is 4 MiB by default)
log = logging.getLogger("onemcp.proxy")
DEFAULT_URL = "http://127.0.0.1:3050/mcp"
CONNECT_TIMEOUT = 5.0
WAIT = 30.0  # how long a request (or initialize) waits for the hub to come back before it gets an error
DRAIN = 5.0  # at the end of input, how long requests still out may take to be answered
# every call holds a connection to the hub for its whole reply: no bound of the proxy's own (httpx's default
# of 100 made the 101st request, and each notification behind it, wait for a call to end)
POOL = httpx.Limits(max_connections=None, max_keepalive_connections=20)
NOTES_QUEUE = 10_000  # the client's notifications and answers waiting to be POSTed; beyond, its reading waits


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
        except Exception:  # this request's boundary: a fault of the proxy's own ends the request, not the proxy
            log.exception("internal error while forwarding %s", msg.get("method"))
            error = {"code": INTERNAL_ERROR, "message": "Internal error in onemcp proxy (see its log on stderr)"}
            await self.send(jsonrpc.error(msg["id"], error))
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
            if self.hub.waiting is not None:  # no address but a guess, maybe another directory's hub: not tried
                raise httpx.ConnectError(self.hub.waiting, request=request)
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

    async def _refuse_line(self, why: str, rid: RequestId | None) -> None:
        await self.send(jsonrpc.error(rid, {"code": INVALID_REQUEST, "message": f"Invalid Request: {why}"}))

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
        help="the hub's MCP endpoint (default: .onemcprc, else the runtime.json of the config's hub, waited for)",
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
        url = with_exposure(target.url, args.exposure, flag=True)
    except TargetError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return 2
    config = resolve_path(args.config)
    waiting = no_hub_for(config, DEFAULT_URL) if target.source == "default" else None
    if waiting is not None:
        log.warning("%s", waiting)
    else:
        log.info("forwarding stdio to %s", url)
    # a URL runtime.json gave is followed when the hub moves; with none, the first one it gives is taken
    hub = Endpoint(url, config if target.source in ("runtime", "default") else None, waiting=waiting)
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
