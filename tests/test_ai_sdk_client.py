"""The Vercel AI SDK's MCP client (`@ai-sdk/mcp`) against the hub: how AI SDK apps reach MCP servers. Its
Streamable HTTP and SSE transports and its OAuth client are its own code, not the TypeScript SDK's.

`tests/support/ai_sdk_client.mjs` authorizes through the built-in authorization server, runs the hub's
tools as AI SDK tools (text, structured content, an image, a tool error, an elicitation), reads resources
and prompts, and refreshes its token, over Streamable HTTP and over the legacy HTTP+SSE entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from support.hub import oauth_hub
from support.real_servers import everything_stdio_command, node_binary

pytestmark = pytest.mark.anyio
SCRIPT = Path(__file__).resolve().parent / "support" / "ai_sdk_client.mjs"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("entry", ["http", "sse"])
async def test_the_ai_sdk_client_authorizes_and_runs_the_hubs_tools(tmp_path: Path, entry: str) -> None:
    with anyio.fail_after(60):
        async with oauth_hub(tmp_path, "every", everything_stdio_command()) as hub:
            done = await anyio.run_process([node_binary(), str(SCRIPT), hub.base, entry], check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert seen["unauthorized"] == "UnauthorizedError" and seen["authorized"] == "AUTHORIZED"
    assert seen["audience"] == (f"{hub.base}/sse" if entry == "sse" else hub.url)
    assert seen["server"] == "onemcp"
    assert {"every__echo", "every__get-tiny-image", "every__trigger-elicitation-request"} <= set(seen["tools"])
    assert seen["echo"] == "Echo: hello"
    assert set(seen["structured"]) == {"temperature", "conditions", "humidity"}
    assert "image:image/png" in seen["image"]
    assert seen["toolError"]["isError"] is True and "message" in seen["toolError"]["text"]
    assert seen["elicitationAsked"] and "teal" in seen["elicitation"]
    assert seen["resource"]["uri"].startswith("every+") and seen["resource"]["text"]
    assert all(t.startswith("every+") for t in seen["templates"])
    assert "Oslo" in seen["prompt"]
    assert seen["missingResource"].startswith("error: [every]")
    assert seen["afterRefresh"] == {"listed": len(seen["tools"]), "refreshed": True, "sameRefresh": False}
    # What the client reported on its own. It GETs /mcp for a stream before it initializes: a 405 it takes
    # as "no stream" (a 400 was "GET SSE failed" on every connect). Not asserted: "Failed to parse message"
    # for the empty event that primes every stream for resumption (the spec's SHOULD; it parses every data
    # line as JSON), and "Unsupported message type" for any notification (it handles none).
    assert not [e for e in seen["uncaught"] if "GET SSE failed" in e], seen["uncaught"]
