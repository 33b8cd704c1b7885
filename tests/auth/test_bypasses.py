"""Regression tests for the authorization bypasses found on 8d6d821 (issue 11), each over the wire.

Each one failed before the fix: a `server:`-limited key used everything over 2026-07-28 and via
`onemcp run`; its quota was charged to a shared bucket; over /sse it reached every server by
skipping `initialize`; a `tool:` scope opened its server's resources and prompts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from support.hub import HEADERS, RunningHub, running_hub

pytestmark = pytest.mark.anyio
MODERN = "2026-07-28"


def _stdio(*tags: str) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], "tags": list(tags)}


@asynccontextmanager
async def keyed_hub(tmp_path: Path, **auth: Any) -> AsyncIterator[tuple[RunningHub, KeyStore]]:
    config = {"mcpServers": {"time": _stdio(), "demo": _stdio()}, "onemcp": {"auth": {"apiKeys": True, **auth}}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    async with running_hub(config, config_path=path) as hub:
        yield hub, KeyStore(tmp_path / "keys.db")


def modern(key: str, method: str, params: dict[str, Any], rid: int = 1) -> tuple[dict[str, Any], dict[str, str]]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
    headers = {**HEADERS, "authorization": f"Bearer {key}", "mcp-protocol-version": MODERN, "mcp-method": method}
    name = params.get("uri") if method == "resources/read" else params.get("name")
    if isinstance(name, str):
        headers["mcp-name"] = name
    return body, headers


async def test_a_modern_request_keeps_the_callers_scopes(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient() as http:
            key = keys.create("t", ["server:time"])
            body, headers = modern(key, "tools/call", {"name": "demo__echo", "arguments": {"message": "x"}})
            r = await http.post(hub.url, json=body, headers=headers)
            assert "result" not in r.json(), r.text
            assert r.json()["error"]["code"] == -32602  # not found: demo is not this key's to know
            body, headers = modern(key, "tools/list", {})
            listed = (await http.post(hub.url, json=body, headers=headers)).json()["result"]["tools"]
            names = {t["name"] for t in listed}
            assert names and all(n.startswith("time__") for n in names)
            for method, params in (
                ("resources/read", {"uri": "demo+fixture://static"}),
                ("prompts/get", {"name": "demo__simple"}),
            ):
                body, headers = modern(key, method, params)
                assert "result" not in (await http.post(hub.url, json=body, headers=headers)).json()
            body, headers = modern(key, "tools/call", {"name": "time__echo", "arguments": {"message": "ok"}})
            assert (await http.post(hub.url, json=body, headers=headers)).json()["result"]["content"]


async def test_onemcp_run_with_a_limited_key_cannot_call_another_server(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys):
            key = keys.create("t", ["server:time"])
            env = {**os.environ, "ONEMCP_TOKEN": key}
            argv = [sys.executable, "-m", "onemcp", "run", "--url", hub.url, "demo/echo", "--args", '{"message":"x"}']
            done = await anyio.run_process(argv, env=env, check=False)
            assert done.returncode != 0, done.stdout
            argv[-3] = "time/echo"
            done = await anyio.run_process(argv, env=env, check=False)
            assert done.returncode == 0, done.stderr


async def test_a_modern_key_over_its_quota_is_stopped(tmp_path: Path) -> None:
    quota = [{"tool": "time/echo", "calls": 2, "window": 3600}]
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path, quotas=quota) as (hub, keys), httpx.AsyncClient() as http:
            first, second = keys.create("a", ["mcp"]), keys.create("b", ["mcp"])
            texts = []
            for i, key in enumerate((first, first, first, second)):
                body, headers = modern(key, "tools/call", {"name": "time__echo", "arguments": {"message": "q"}}, i)
                texts.append((await http.post(hub.url, json=body, headers=headers)).json()["result"])
            assert [bool(t.get("isError")) for t in texts] == [False, False, True, False]  # per key, not shared
            assert "Quota exceeded" in texts[2]["content"][0]["text"]


async def test_sse_without_initialize_sees_only_the_keys_servers(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient() as http:
            key = keys.create("t", ["server:time"])
            auth = {"authorization": f"Bearer {key}"}
            headers = {"accept": "text/event-stream", **auth}
            async with http.stream("GET", f"{hub.base}/sse", headers=headers, timeout=None) as stream:
                lines = stream.aiter_lines()
                endpoint = ""
                async for line in lines:
                    if line.startswith("data:"):
                        endpoint = line[5:].strip()
                        break
                requests = [
                    ("tools/list", {}),
                    ("resources/read", {"uri": "demo+fixture://static"}),
                    ("prompts/get", {"name": "demo__simple"}),
                ]
                for rid, (method, params) in enumerate(requests, 1):
                    msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
                    r = await http.post(f"{hub.base}{endpoint}", json=msg, headers={**HEADERS, **auth})
                    assert r.status_code == 202
                replies: dict[int, dict[str, Any]] = {}
                async for line in lines:
                    if line.startswith("data:"):
                        reply = json.loads(line[5:])
                        replies[reply["id"]] = reply
                        if len(replies) == len(requests):
                            break
            assert {t["name"].split("__")[0] for t in replies[1]["result"]["tools"]} == {"time"}
            assert "error" in replies[2] and "error" in replies[3], replies


async def test_a_tool_scope_grants_that_tool_only(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient() as http:
            key = keys.create("t", ["tool:demo/echo"])
            for method, params in (
                ("resources/read", {"uri": "demo+fixture://static"}),
                ("prompts/get", {"name": "demo__simple"}),
                ("resources/list", {}),
            ):
                body, headers = modern(key, method, params)
                reply = (await http.post(hub.url, json=body, headers=headers)).json()
                assert "error" in reply or reply["result"]["resources"] == [], reply
            body, headers = modern(key, "tools/list", {})
            tools = (await http.post(hub.url, json=body, headers=headers)).json()["result"]["tools"]
            assert [t["name"] for t in tools] == ["demo__echo"]
            body, headers = modern(key, "tools/call", {"name": "demo__echo", "arguments": {"message": "ok"}})
            assert (await http.post(hub.url, json=body, headers=headers)).json()["result"]["content"]


def test_stdio_serve_with_a_config_that_requires_auth_needs_a_token(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"demo": _stdio()}, "onemcp": {"auth": {"apiKeys": True}}}))
    env = {k: v for k, v in os.environ.items() if k != "ONEMCP_TOKEN"}
    argv = [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(path)]
    done = subprocess.run(argv, env=env, input=b"", capture_output=True, timeout=60, check=False)
    assert done.returncode == 2 and b"ONEMCP_TOKEN" in done.stderr and done.stdout == b""
    done = subprocess.run(
        argv, env={**env, "ONEMCP_TOKEN": "omk_nope_nope"}, input=b"", capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2 and b"refused" in done.stderr
