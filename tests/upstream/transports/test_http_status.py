"""Reading a Streamable HTTP upstream's non-2xx answer (http_status.py): when a 400 means the server
no longer knows the hub's session. End to end, with a server that restarts: test_http_outage.py."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time

import anyio
import pytest

from onemcp.upstream.transports.http_status import RETRY_AFTER_MAX, one_line, retry_after, rpc_error, session_gone
from support.hub import running_hub

SDK_400 = json.dumps(
    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}, "id": None}
).encode()
OWN_400 = json.dumps({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "session", "after_failure", "gone"),
    [
        (400, SDK_400, "s1", False, True),  # the reference servers' answer to an unknown session id
        (400, b"Invalid or expired session", "s1", False, True),
        (400, b"Bad Request", "s1", True, True),  # right after a connection to it broke
        (400, b"Bad Request", "s1", False, False),  # any other 400 is an answer to the request
        (400, OWN_400, "s1", False, False),
        (400, SDK_400, None, False, False),  # no session was sent: none can be gone
        (400, b"Bad Request", None, True, False),
        (500, SDK_400, "s1", True, False),
    ],
)
def test_a_400_means_the_session_is_gone_only_when_it_names_it_or_follows_a_failure(
    status: int, body: bytes, session: str | None, after_failure: bool, gone: bool
) -> None:
    assert session_gone(status, body, session, after_failure=after_failure) is gone


def test_the_error_body_and_the_json_rpc_error_it_carries() -> None:
    assert one_line(b"<html>\n  <b>Bad</b>\n</html>") == "<html> <b>Bad</b> </html>"
    assert len(one_line(b"x" * 500)) == 200
    assert rpc_error(OWN_400, 3) == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}
    assert rpc_error(SDK_400, 3) is not None  # id null: still the answer
    assert rpc_error(OWN_400, 4) is None and rpc_error(b"not json", 3) is None


def test_retry_after_in_seconds_or_as_a_date_bounded() -> None:
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after(" 7 ") == 7.0
    assert retry_after("86400") == RETRY_AFTER_MAX
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after(later) or 0) <= 120
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past


@pytest.mark.anyio
async def test_a_server_refusing_with_429_and_retry_after_is_not_restarted_sooner() -> None:
    """Hunt s33-h F6: a rate-limited server (nginx limit_req, 429 + Retry-After: 7) was started again
    every 0.5 to 1 s, each start a burst of requests that met the limit again."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.partition("content-length:")[2].split("\r\n")[0] or 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 11\r\n\r\nslow down\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    try:
        with anyio.fail_after(10):
            async with running_hub({"mcpServers": {"s": {"url": url, "protocol": "legacy"}}}) as hub:
                slot = hub.app.hub.pool.slots["s"]
                while slot.last_failure is None:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                assert "HTTP 429: slow down" in slot.last_failure and "next in 7s" in slot.last_failure
    finally:
        server.close()
