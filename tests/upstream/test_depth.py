"""Upstream messages nested deeper than the hub can write (orjson reads 1023 levels, writes 254),
holding more objects and arrays than the hub will parse (each costs it 56 bytes or more), or
answering with a result that is not an object (no client could read it).

A server written here by hand (the fixtures serialise with orjson, which cannot write such a
message) sends them on stdio: a reply, a notification during a call, and its initialize result.
Each is refused alone, with a reason; the hub and every other server go on serving.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.protocol import jsonrpc
from support.hub import running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
DEPTH = 300  # past orjson's 254 and MAX_DEPTH, within what it reads

SERVER = r"""
import json, sys
DEEP = "[" * DEPTH + "1" + "]" * DEPTH
deep_caps = "--deep-caps" in sys.argv
def send(text):
    sys.stdout.write(text + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    rid, method = msg.get("id"), msg.get("method")
    if rid is None:
        continue
    head = '{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"result":'
    if method == "initialize":
        caps = '{"tools":{},"tasks":' + DEEP + '}' if deep_caps else '{"tools":{}}'
        info = '"serverInfo":{"name":"deep","version":"0"}'
        send(head + '{"protocolVersion":"2025-11-25","capabilities":' + caps + "," + info + "}}")
    elif method == "tools/list":
        names = ("deep_result", "deep_log", "plain", "many", "array_result", "null_result", "string_error",
                 "codeless_error", "error_and_result")
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in names]
        send(head + json.dumps({"tools": tools}) + "}")
    elif method == "tools/call":
        name = msg["params"]["name"]
        if name == "many":
            send(head + '{"content":[],"structuredContent":{"v":[' + "{}," * MANY + '{}]}}}')
            continue
        bad = {"string_error": '"boom"', "codeless_error": '{"message":"no code"}',
               "error_and_result": '{"code":-32000,"message":"both"},"result":{"content":[]}'}
        if name in bad:
            send('{"jsonrpc":"2.0","id":' + json.dumps(rid) + ',"error":' + bad[name] + "}")
            continue
        if name in ("array_result", "null_result"):
            send(head + ("[1,2]" if name == "array_result" else "null") + "}")
            continue
        if name == "deep_result":
            send(head + '{"content":[],"structuredContent":{"v":' + DEEP + '}}}')
            continue
        if name == "deep_log":
            send('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":' + DEEP + '}}')
        send(head + json.dumps({"content": [{"type": "text", "text": "plain " + name}]}) + "}")
    else:
        send(head + "{}}")
""".replace("DEPTH", str(DEPTH)).replace("MANY", str(jsonrpc.MAX_CONTAINERS))


def servers(tmp_path: Path, *extra: str) -> dict[str, Any]:
    script = tmp_path / "deep_server.py"
    script.write_text(SERVER)
    cmd = fixture_command()
    return {
        "deep": {"command": sys.executable, "args": [str(script), *extra]},
        "fx": {"command": cmd[0], "args": cmd[1:]},
    }


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_reply_or_notification_too_deep_is_refused_alone(tmp_path: Path, mode: str) -> None:
    assert DEPTH > jsonrpc.MAX_DEPTH
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers(tmp_path)}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as c:
                with pytest.raises(MCPError) as err:
                    await c.call_tool("deep__deep_result", {})
                assert f"nests deeper than {jsonrpc.MAX_DEPTH} levels" in err.value.error.message
                assert "internal error" not in err.value.error.message.lower()
                with pytest.raises(MCPError) as err:
                    await c.call_tool("deep__many", {})  # a reply: refused before it is parsed, by its id
                assert f"more than {jsonrpc.MAX_CONTAINERS} objects and arrays" in err.value.error.message
                # the deep log line is dropped; the call it came with is answered
                assert text_of(await c.call_tool("deep__deep_log", {})) == "plain deep_log"
                assert text_of(await c.call_tool("deep__plain", {})) == "plain plain"
                assert text_of(await c.call_tool("fx__echo", {"message": "still here"})) == "still here"


async def test_an_initialize_result_too_deep_fails_that_server_only(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers(tmp_path, "--deep-caps")}) as hub:
            for mode in ("legacy", "2026-07-28"):
                async with Client(hub.url, mode=mode, cache=None) as c:
                    names = {t.name for t in (await c.list_tools()).tools}
                    assert "fx__echo" in names and not any(n.startswith("deep__") for n in names)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_result_that_is_not_an_object_is_a_clear_error(tmp_path: Path, mode: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers(tmp_path)}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as c:
                for tool, kind in (("array_result", "an array"), ("null_result", "null")):
                    with pytest.raises(MCPError) as err:
                        await c.call_tool(f"deep__{tool}", {})
                    assert (
                        err.value.error.message
                        == f"[deep] the server answered tools/call with {kind}, not a result object"
                    )
                assert text_of(await c.call_tool("deep__plain", {})) == "plain plain"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_error_that_is_not_an_error_object_is_a_clear_error(tmp_path: Path, mode: str) -> None:
    """A string, an error without a code, an error beside a result: no client could read them as
    they came (the SDK fails to parse the reply); the client is told which server sent what."""
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers(tmp_path)}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as c:
                not_an_error = "an error that is not an error object (an integer code, a string message)"
                for tool, why, shown in (
                    ("string_error", not_an_error, "'boom'"),
                    ("codeless_error", not_an_error, "{'message': '[deep] no code'}"),  # labelled as it came in
                    # the error itself is sound: what is wrong is the result beside it
                    ("error_and_result", "both a result and an error", "{'code': -32000, 'message': '[deep] both'}"),
                ):
                    with pytest.raises(MCPError) as err:
                        await c.call_tool(f"deep__{tool}", {})
                    said = err.value.error.message
                    assert said == f"[deep] the server answered tools/call with {why}: {shown}", said
                assert text_of(await c.call_tool("deep__plain", {})) == "plain plain"
