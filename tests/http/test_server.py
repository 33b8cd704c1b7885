"""The hub's HTTP/1.1 limits (http/server.py), attacked over raw sockets on loopback.

Each test is a finding of issue 20 that the hub failed before: one huge header or thousands of
headers were parsed (quadratically) and answered 200; unfinished requests held their
connection forever; connections had no cap; `Transfer-Encoding: gzip, chunked` and an
absolute-form target naming another host were served. The limits here are small so that each
attack is bounded (a few MB at most, deadlines under a second); after each one a normal
request still gets its answer.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import AsyncIterator
from typing import TypedDict

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from onemcp.config.model import Limits as LimitsConfig
from onemcp.http.server import connection_cap
from onemcp.observability.limits import HITS
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.raw import raw_exchange, read_head, status_of

pytestmark = pytest.mark.anyio


class Limits(TypedDict):
    """The `onemcp.limits` this module's hub runs with (config spelling)."""

    maxHeaderBytes: int
    maxHeaderCount: int
    headerTimeout: float
    bodyTimeout: float
    maxConnections: int
    maxSessions: int
    maxSessionsPerPrincipal: int
    maxStreamsPerSession: int


LIMITS: Limits = {
    "maxHeaderBytes": 8192,
    "maxHeaderCount": 40,
    "headerTimeout": 0.3,
    "bodyTimeout": 0.3,
    "maxConnections": 12,
    "maxSessions": 6,
    "maxSessionsPerPrincipal": 4,
    "maxStreamsPerSession": 2,
}
DEADLINE = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def hub() -> AsyncIterator[RunningHub]:
    async with running_hub({"mcpServers": {}, "onemcp": {"limits": LIMITS}}) as running:
        yield running


def head(*lines: str, path: str = "/mcp", method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{x}\r\n" for x in lines) + "\r\n").encode()


async def ping_ok(hub: RunningHub) -> None:
    """A normal client is still served."""
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        assert r.status_code == 200, r.text
        await http.delete(hub.url, headers={"mcp-session-id": r.headers["mcp-session-id"]})


async def closed_by_hub(stream: SocketStream) -> bytes:
    """What the hub sends before it closes the connection (fails the test if it never does)."""
    data = b""
    with anyio.fail_after(DEADLINE):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return data


# ------------------------------------------------------------------------------------------ headers
async def test_one_huge_header_is_431_before_it_is_read(hub: RunningHub) -> None:
    before = HITS.counts["header_bytes"]
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        await stream.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        with anyio.fail_after(DEADLINE):
            try:
                while sent < 4 * 1024 * 1024:  # the hub stops reading long before 4 MB
                    await stream.send(b"a" * 65536)
                    sent += 65536
            except (anyio.BrokenResourceError, ConnectionError):
                pass
            reply = await read_head(stream)
    assert status_of(reply) == 431
    assert HITS.counts["header_bytes"] == before + 1
    await ping_ok(hub)


async def test_a_long_request_line_counts_as_header_bytes(hub: RunningHub) -> None:
    reply = await raw_exchange(_port(hub), head(path="/mcp?" + "q" * 20_000))
    assert status_of(reply) == 431


async def test_many_headers_are_431(hub: RunningHub) -> None:
    lines = [f"X-H{i}: v" for i in range(200)]  # 1.6 KB: under the byte limit, over the count
    reply = await raw_exchange(_port(hub), head(*lines))
    assert status_of(reply) == 431
    await ping_ok(hub)


async def test_headers_under_the_limits_are_served(hub: RunningHub) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    lines = [f"X-H{i}: {'v' * 100}" for i in range(30)]
    request = head(*lines, "Content-Type: application/json", f"Content-Length: {len(body)}") + body
    reply = await raw_exchange(_port(hub), request)
    assert status_of(reply) == 400  # served (no session yet), not refused for its headers


# ------------------------------------------------------------------------------------------ deadlines
async def test_unfinished_headers_are_ended_after_the_header_timeout(hub: RunningHub) -> None:
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        await stream.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        reply = await closed_by_hub(stream)
    assert status_of(reply) == 408
    await ping_ok(hub)


async def test_a_silent_connection_is_closed(hub: RunningHub) -> None:
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        assert await closed_by_hub(stream) == b""


async def test_a_slowloris_trickle_is_ended(hub: RunningHub) -> None:
    """A byte now and then never completes the headers: the deadline counts from the first byte."""
    request = head(*[f"X-H{i}: v" for i in range(10)])
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        reply = b""
        with anyio.fail_after(DEADLINE):
            try:
                for i in range(len(request) - 2):
                    await stream.send(request[i : i + 1])
                    with anyio.move_on_after(0.05):  # allowed-sleep: the trickle's pace, not a wait for a result
                        reply += await stream.receive()
                        break
            except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError):
                pass
            reply += await closed_by_hub(stream)
    assert status_of(reply) == 408


async def test_unfinished_body_is_408_after_the_body_timeout(hub: RunningHub) -> None:
    request = head("Content-Type: application/json", "Content-Length: 100") + b'{"jsonrpc":'
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        await stream.send(request)
        reply = await closed_by_hub(stream)
    assert status_of(reply) == 408
    await ping_ok(hub)


async def test_a_keepalive_connection_gets_a_second_request_served(hub: RunningHub) -> None:
    """The deadlines are per request: a connection that keeps sending whole requests keeps working."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    request = head("Content-Type: application/json", f"Content-Length: {len(body)}") + body
    async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
        for _ in range(3):
            await stream.send(request)
            with anyio.fail_after(DEADLINE):
                reply = await read_head(stream)
            assert status_of(reply) == 400
            await _drain_body(stream, reply)


async def test_pipelined_requests_are_read_only_as_fast_as_they_are_answered(hub: RunningHub) -> None:
    """A client that pipelines requests and never reads the answers: reading pauses (it was ~130 MB of
    queued requests per connection)."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    request = head("Content-Type: application/json", f"Content-Length: {len(body)}") + body
    burst, bursts = request * 200, 300  # 60,000 requests, about 8 MB

    def flood() -> tuple[socket.socket, int]:
        sock = socket.create_connection(("127.0.0.1", _port(hub)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(1.0)  # the hub stopped reading: the send buffers are full
        sent = 0
        try:
            for _ in range(bursts):
                sock.sendall(burst)
                sent += 1
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass  # the hub stopped reading (or, on a loaded machine, gave the connection up): either way bounded
        return sock, sent

    deepest = 0
    async with anyio.create_task_group() as tg:

        async def watch() -> None:  # the hub's queue of pipelined requests, while the flood lasts
            nonlocal deepest
            while True:
                depths = [
                    len(p.pipeline) for p in hub.server.server_state.connections if isinstance(p, HttpToolsProtocol)
                ]
                deepest = max([deepest, *depths])
                await anyio.sleep(0.005)  # allowed-sleep: sampling while the flood runs

        tg.start_soon(watch)
        sock, sent = await anyio.to_thread.run_sync(flood)
        tg.cancel_scope.cancel()
    sock.close()
    assert sent < bursts and 0 < deepest < 5000, (sent, deepest)  # 16, and what one read held
    await ping_ok(hub)


# ------------------------------------------------------------------------------------------ connections
async def test_connections_over_the_cap_are_refused_and_closed(hub: RunningHub) -> None:
    cap = LIMITS["maxConnections"]
    held: list[SocketStream] = []
    try:
        for _ in range(cap):
            held.append(await anyio.connect_tcp("127.0.0.1", _port(hub)))
        # one more is answered 503 and closed at once, before it sends anything
        async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as extra:
            reply = await closed_by_hub(extra)
        assert status_of(reply) == 503
    finally:
        for stream in held:
            await stream.aclose()
    with anyio.fail_after(DEADLINE):
        while len(hub.server.server_state.connections) > 0:  # the hub sees them closed
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    await ping_ok(hub)


# ------------------------------------------------------------------------------------------ framing
async def test_transfer_codings_other_than_chunked_are_501(hub: RunningHub) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    request = head("Content-Type: application/json", "Transfer-Encoding: gzip, chunked") + body
    reply = await raw_exchange(_port(hub), request)
    assert status_of(reply) == 501


async def test_an_absolute_form_target_is_judged_by_its_host(hub: RunningHub) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    framing = ("Content-Type: application/json", f"Content-Length: {len(body)}")
    evil = head(*framing, path="http://evil.example/mcp") + body
    assert status_of(await raw_exchange(_port(hub), evil)) == 421
    ours = head(*framing, path=f"http://127.0.0.1:{_port(hub)}/mcp") + body
    assert status_of(await raw_exchange(_port(hub), ours)) == 400  # served: no session, as for /mcp


# ------------------------------------------------------------------------------------------ sessions
async def test_sessions_are_capped_per_principal_and_in_all(hub: RunningHub) -> None:
    per_principal = LIMITS["maxSessionsPerPrincipal"]
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        ids = []
        for _ in range(per_principal):
            r = await http.post(hub.url, json=INIT, headers=HEADERS)
            assert r.status_code == 200
            ids.append(r.headers["mcp-session-id"])
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        assert r.status_code == 429 and "mcp-session-id" not in r.headers
        assert r.json()["error"]["data"] == {"limit": "sessions_per_principal"}
        # legacy /sse sessions count too
        async with http.stream("GET", f"{hub.base}/sse") as sse:
            assert sse.status_code == 429
        # the sessions that exist keep working, and ending one makes room
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        headers = {**HEADERS, "mcp-session-id": ids[0], "mcp-protocol-version": "2025-11-25"}
        assert (await http.post(hub.url, json=ping, headers=headers)).status_code == 200
        assert (await http.delete(hub.url, headers=headers)).status_code == 200
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        assert r.status_code == 200
    # the hub-wide cap: sessions of a principal under its own cap are refused once the hub is full
    hub.app.hub.sessions.limits = hub.app.hub.sessions.limits.model_copy(update={"max_sessions": per_principal})
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
    assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["data"] == {"limit": "sessions"}


async def test_get_streams_per_session_are_capped(hub: RunningHub) -> None:
    cap = LIMITS["maxStreamsPerSession"]
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        headers = {"accept": "text/event-stream", "mcp-session-id": r.headers["mcp-session-id"]}
        async with anyio.create_task_group() as tg:
            opened = anyio.Semaphore(0)

            async def hold() -> None:
                async with http.stream("GET", hub.url, headers=headers) as stream:
                    assert stream.status_code == 200
                    opened.release()
                    await anyio.sleep_forever()

            for _ in range(cap):
                tg.start_soon(hold)
            for _ in range(cap):
                await opened.acquire()
            r = await http.get(hub.url, headers=headers)
            assert r.status_code == 409
            tg.cancel_scope.cancel()


def _port(hub: RunningHub) -> int:
    return int(hub.base.rsplit(":", 1)[1])


async def _drain_body(stream: SocketStream, data: bytes) -> None:
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = next(int(x.split(b":")[1]) for x in head_part.split(b"\r\n") if x.lower().startswith(b"content-length"))
    while len(body) < length:
        body += await stream.receive()


def test_the_default_connection_cap_leaves_fds_for_the_upstream_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, maxConnections is a third of the fd limit: each call to an HTTP upstream holds a socket
    there too (at ¾, calls under the cap failed with 'Too many open files'); a set one is kept."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    assert connection_cap(LimitsConfig()) == 341
    assert connection_cap(LimitsConfig.model_validate({"maxConnections": 900})) == 900
    monkeypatch.setattr(resource, "getrlimit", lambda _: (30, 30))
    assert connection_cap(LimitsConfig()) == 16  # never fewer


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
async def test_a_client_that_takes_none_of_a_big_reply_is_closed_after_the_send_timeout(connection: str) -> None:
    """Hunt B (limits): a reply is written whole, and one its client never read was held for as long as the
    connection stayed open: 60 connections that called a tool answering 20 MB and read nothing held 1.2 GB.
    Past `sendTimeout` with nothing taken the connection is closed, and what it left unread is dropped; also
    when the hub was already closing it (`Connection: close`, or the keep-alive timeout 5 s after the reply):
    a close waits for the buffer to be written, which a peer that never reads never lets happen."""
    from fixtures.launch import fixture_command

    fx = fixture_command()
    config = {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "onemcp": {"limits": {"sendTimeout": 0.3}}}
    before = HITS.counts["send_timeout"]
    async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        session = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        big = {"name": "blob", "arguments": {"bytes": 32 * 1024 * 1024}}  # more than loopback's buffers take
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": big}
        body = httpx.Request("POST", hub.url, json=call).content
        lines = [f"{k}: {v}" for k, v in session.items()] + [
            f"Content-Length: {len(body)}",
            f"Connection: {connection}",
        ]
        async with await anyio.connect_tcp("127.0.0.1", _port(hub)) as stream:
            await stream.send(head(*lines) + body)
            with anyio.fail_after(DEADLINE):
                while HITS.counts["send_timeout"] == before:  # the client reads nothing meanwhile
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            got = 0
            with anyio.fail_after(DEADLINE):
                try:
                    while True:
                        got += len(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    pass
        assert got < 32 * 1024 * 1024  # closed: the rest of the reply was dropped, not sent
        echo = {**call, "params": {"name": "echo", "arguments": {"message": "x"}}}
        r = await http.post(hub.url, json=echo, headers=session)
        assert r.json()["result"]["content"][0]["text"] == "x"  # the hub serves on


async def _reply_or_close(stream: SocketStream) -> tuple[int, int]:
    """(body bytes received, the body's Content-Length) once the reply is whole or the hub closed."""
    data = b""
    with anyio.fail_after(DEADLINE):
        try:
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head_part, _, body = data.partition(b"\r\n\r\n")
            fields = head_part.lower().split(b"\r\n")
            length = next(int(x.split(b":")[1]) for x in fields if x.startswith(b"content-length"))
            got = len(body)
            while got < length:
                got += len(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return len(data.partition(b"\r\n\r\n")[2]), -1
    return got, length


async def test_unread_replies_past_the_unsent_budget_close_the_connection_holding_most() -> None:
    """Hunt B (limits) left open: `sendTimeout` bounds how long an unread reply is held, not how much: 40
    concurrent 30 MB results read only after 5 s took the hub to an 803 MB peak. Past `maxUnsentBytes` of
    unread replies, all connections together, the one holding the most is closed (its reply dropped); the
    other's reply is then sent whole when its client reads, and the hub serves on."""
    from fixtures.launch import fixture_command

    fx = fixture_command()
    limits = {"maxUnsentBytes": 4 * 1024 * 1024}  # sendTimeout stays 60 s: only the budget closes
    config = {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "onemcp": {"limits": limits}}
    before = HITS.counts["unsent_bytes"]
    async with running_hub(config) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
        r = await http.post(hub.url, json=INIT, headers=HEADERS)
        session = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        big = {"name": "blob", "arguments": {"bytes": 24 * 1024 * 1024}}  # more than loopback's buffers take
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": big}
        body = httpx.Request("POST", hub.url, json=call).content
        lines = [f"{k}: {v}" for k, v in session.items()] + [f"Content-Length: {len(body)}"]
        async with (
            await anyio.connect_tcp("127.0.0.1", _port(hub)) as first,
            await anyio.connect_tcp("127.0.0.1", _port(hub)) as second,
        ):
            await first.send(head(*lines) + body)
            await second.send(head(*lines) + body)
            with anyio.fail_after(DEADLINE):
                while HITS.counts["unsent_bytes"] == before:  # neither client reads meanwhile
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            replies = sorted([await _reply_or_close(first), await _reply_or_close(second)])
        assert replies[0][1] == -1 and replies[0][0] < 24 * 1024 * 1024  # closed, the rest dropped
        assert replies[1][0] == replies[1][1] > 24 * 1024 * 1024  # the other one: whole
        assert HITS.counts["unsent_bytes"] == before + 1
        echo = {**call, "params": {"name": "echo", "arguments": {"message": "x"}}}
        r = await http.post(hub.url, json=echo, headers=session)
        assert r.json()["result"]["content"][0]["text"] == "x"  # the hub serves on


def test_uvicorn_s_own_log_records_go_through_the_hub_s_handler() -> None:
    """uvicorn configured its loggers with a handler of its own on stderr: its records (an exception in the
    app, a protocol error) skipped the redaction, the escaping, the JSON format and the log file."""
    import io
    import logging

    from onemcp.http.server import server_config
    from onemcp.observability.redact import Redactor

    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers[:], uvicorn_logger.propagate = [], True  # as in a fresh process (tests made others)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(Redactor())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        server_config(lambda *args: None, LimitsConfig)
        logging.getLogger("uvicorn.error").warning("bad: Authorization: Bearer sk-live-0123456789\nforged line")
    finally:
        root.removeHandler(handler)
    assert out.getvalue() == "bad: Authorization: Bearer ***\\nforged line\n"
