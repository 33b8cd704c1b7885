"""A Streamable HTTP upstream's POSTs (http_post.py), as the transport sends them again.

A request the server did not run (refused for its token: 401; moved: 307; its session gone: 404) is sent
again from the background, and that wait for a connection can outlast the caller's interest: abandoned
meanwhile, it was still written once connected (after its notifications/cancelled had gone for an id the
server did not know), so the server ran it for nobody. The server is a raw asyncio server on 127.0.0.1 port 0
that records, in order, each request's path and id and each cancel it reads.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import orjson
import pytest

from onemcp.config.model import ServerConfig
from onemcp.upstream.transports import h1
from onemcp.upstream.transports.base import SessionExpired
from onemcp.upstream.transports.http import StreamableHttpTransport
from support.fake_token import Token
from support.raw_server import Connections, SlowConnect, listening, read_message

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


class Refusing:
    """A legacy Streamable HTTP server that refuses its first request unread (`refusal`: 307 to /next, 401, or 404,
    its session gone) and answers every other at once, in JSON. `seen`: each request's (path, id) and each
    notifications/cancelled's ("cancelled", id)."""

    def __init__(self, refusal: int) -> None:
        self.refusal = refusal
        self.seen: list[tuple[str, Any]] = []
        self.connections = Connections()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.connections.held(writer):
            while True:
                request, _, msg = await read_message(reader)
                if "id" not in msg:
                    if msg.get("method") == "notifications/cancelled":
                        self.seen.append(("cancelled", msg["params"]["requestId"]))
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                elif not self.seen:
                    self.seen.append((request.split()[1], msg["id"]))
                    refused = {
                        307: b"307 Temporary Redirect\r\nlocation: /next",
                        401: b"401 Unauthorized\r\nwww-authenticate: Bearer",
                        404: b"404 Not Found",
                    }[self.refusal]
                    writer.write(b"HTTP/1.1 " + refused + b"\r\ncontent-length: 0\r\n\r\n")
                else:
                    self.seen.append((request.split()[1], msg["id"]))
                    doc = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    writer.write(head % len(doc) + doc)
                await writer.drain()


@pytest.mark.parametrize("refusal", [307, 401, 404])
async def test_a_request_abandoned_while_it_connects_to_be_sent_again_is_never_written(
    refusal: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused unread, the request is sent again (at the new URL, with a new token; in a new session: here the test
    sends it again, as the connection does once it has one); abandoned while that waits for a connection, it is
    not written, and `cancel` says so (True): there is nothing to tell the server."""
    monkeypatch.setattr(h1, "MAX_IDLE_SECONDS", 0.0)  # no connection is reused: each POST waits for its own
    up = Refusing(refusal)
    async with listening(up.serve, up.connections.stop, DEADLINE) as url:
        config = ServerConfig.model_validate({"url": url, "protocol": "legacy", "timeout": 60})
        transport = StreamableHttpTransport("refusing", config)
        transport.session_id = "s1"
        if refusal == 401:
            transport.auth = Token()  # type: ignore[assignment]
        replies: list[Any] = []
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "r", "arguments": {}}}
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as tg:
                slow: list[SlowConnect] = []
                armed = anyio.Event()

                def arm() -> None:  # its next connection waits
                    assert transport._pool is not None
                    slow.append(SlowConnect(transport._pool))
                    armed.set()

                async def sent_again(msg: dict[str, Any]) -> None:  # the connection's, once its cancels are carried
                    arm()

                def failed(msg: dict[str, Any], exc: Exception) -> None:
                    assert isinstance(exc, SessionExpired), exc  # the connection renews the session and sends it again
                    arm()
                    tg.start_soon(transport.send, msg, orjson.dumps(msg))

                transport.before_resend = sent_again
                answered = anyio.Event()

                def deliver(msg: dict[str, Any], _: Any) -> None:
                    replies.append(msg["id"])
                    answered.set()

                await transport.open(tg, deliver, failed)
                await transport.send(message, orjson.dumps(message))
                await armed.wait()
                await slow[0].connecting.wait()
                assert transport.cancel(1)  # never written: nothing to tell the server
                slow[0].go.set()
                await slow[0].made.wait()  # (the pool goes on at once: writes it, or not)
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                await transport.send(ping, orjson.dumps(ping))
                await answered.wait()
                await transport.aclose()
                tg.cancel_scope.cancel()
        assert up.seen == [("/mcp", 1), ("/next" if refusal == 307 else "/mcp", 2)]
        assert replies == [2]
