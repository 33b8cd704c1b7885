"""The official TypeScript SDK's client against the hub: what most real clients (Claude Desktop, Cursor,
VS Code, the Inspector) are built on, where every other test uses the Python SDK.

`tests/support/ts_client.mjs` authorizes with the SDK's own OAuth machinery (RFC 9728 / 8414 discovery,
dynamic registration, PKCE) and then lists, calls, answers sampling and roots, follows progress and
cancels through an AbortSignal, over Streamable HTTP and over the legacy HTTP+SSE entry (where the SDK
once refused the hub's metadata: 'Protected resource .../mcp does not match expected .../sse').
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from fixtures.launch import fixture_command
from support.hub import oauth_hub
from support.real_servers import node_binary

pytestmark = pytest.mark.anyio
SCRIPT = Path(__file__).resolve().parent / "support" / "ts_client.mjs"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("entry", ["http", "sse"])
async def test_the_typescript_sdk_client_authorizes_and_works(tmp_path: Path, entry: str) -> None:
    with anyio.fail_after(60):
        async with oauth_hub(tmp_path, "fx", fixture_command()) as hub:
            done = await anyio.run_process([node_binary(), str(SCRIPT), hub.base, entry], check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    resource = f"{hub.base}/sse" if entry == "sse" else hub.url
    assert seen["unauthorized"] == {"resource": resource, "tokens": 1}
    assert seen["connect"]["server"] == "onemcp"
    if entry == "http":
        assert seen["connect"]["protocolVersion"] == "2025-11-25"  # the newest this SDK offers
        assert seen["terminate"] is None  # DELETE answered: the SDK forgot the session
    assert {"fx__echo", "fx__progress", "fx__sample", "fx__roots"} <= set(seen["tools"])
    assert seen["echo"] == "hello"
    if entry == "http":
        assert seen["progress"] == 3
    else:  # the call is answered; its progress may not be seen: the SDK hands a notification to its handler
        # a microtask later than a reply, so progress that arrives in one read with the reply finds its
        # handler gone ('unknown token'): the SDK's SSE transport, not the hub (the stream's order is right)
        assert isinstance(seen["progress"], int)
    assert "sampled by the ts client" in seen["sampling"]
    assert "file:///ts-root" in seen["roots"]
    assert seen["cancel"] == "aborted"
    assert seen["afterCancel"] == "again"
