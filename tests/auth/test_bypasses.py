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
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.auth import gate as gate_module
from onemcp.auth.keys import KeyStore
from support.credentials import JwtIssuer, jwks_server
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


@dataclass
class TaggedHub:
    """A hub with `time` tagged red and `demo` tagged blue, API keys on, watching its config file."""

    hub: RunningHub
    http: httpx.AsyncClient
    keys: KeyStore
    config: dict[str, Any]
    path: Path

    async def retag(self, server: str, tags: list[str]) -> None:
        """Edit the server's tags in the file and wait for the hub to apply them."""
        self.config["mcpServers"][server]["tags"] = tags
        self.path.write_text(json.dumps(self.config))
        while self.hub.app.hub.config.servers[server].tags != tags:
            await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the reload)


@asynccontextmanager
async def tagged_hub(tmp_path: Path, **settings: Any) -> AsyncIterator[TaggedHub]:
    config = {
        "mcpServers": {"time": _stdio("red"), "demo": _stdio("blue")},
        "onemcp": {"auth": {"apiKeys": True}, **settings},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
        yield TaggedHub(hub, http, KeyStore(tmp_path / "keys.db"), config, path)


SUBSCRIBE_STATIC = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "resources/subscribe",
    "params": {"uri": "demo+fixture://static"},
}


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


# ---------------------------------------------------------------- found by a review after the decision point
def _drain(session: Any) -> list[dict[str, Any]]:
    """What is queued for a session's stream right now (read without waiting)."""
    out = []
    while True:
        try:
            out.append(session.outbox.receive_nowait())
        except anyio.WouldBlock:
            return out


async def _legacy(http: httpx.AsyncClient, url: str, key: str, capabilities: dict[str, Any]) -> dict[str, str]:
    params = {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    headers = {**HEADERS, "authorization": f"Bearer {key}"} if key else dict(HEADERS)
    r = await http.post(url, json=init, headers=headers)
    headers |= {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def _call(name: str, rid: int = 5, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def test_an_unrelated_sampling_request_never_reaches_another_principals_client(tmp_path: Path) -> None:
    """Two calls in flight on a shared upstream: its sampling request names neither, so it goes to nobody."""
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient(timeout=30) as http:
            first = await _legacy(http, hub.url, keys.create("p1", ["server:demo"]), {"sampling": {}})
            second = await _legacy(http, hub.url, keys.create("p2", ["server:demo"]), {})
            p1 = hub.app.hub.sessions.get(first["mcp-session-id"])
            assert p1 is not None

            async def hold() -> None:
                await http.post(hub.url, json=_call("demo__sleep", seconds=20), headers=first)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                while not p1.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                r = await http.post(hub.url, json=_call("demo__sample", prompt="P2 SECRET"), headers=second)
                assert "error" in r.json() and "sampling" in r.json()["error"]["message"]
                assert [m for m in _drain(p1) if m.get("method") == "sampling/createMessage"] == []
                tg.cancel_scope.cancel()


async def test_subscriptions_out_of_reach_after_a_reload_stop_delivering(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path) as t:
            hub, http = t.hub, t.http
            blue = await _legacy(http, hub.url, t.keys.create("blue", ["tag:blue"]), {})
            admin = await _legacy(http, hub.url, t.keys.create("ops", ["admin"]), {})
            assert "result" in (await http.post(hub.url, json=SUBSCRIBE_STATIC, headers=blue)).json()
            session = hub.app.hub.sessions.get(blue["mcp-session-id"])
            assert session is not None
            touch = _call("demo__touch", uri="fixture://static")
            await http.post(hub.url, json=touch, headers=admin)
            assert any(m.get("method") == "notifications/resources/updated" for m in _drain(session))
            assert "result" in (await http.post(hub.url, json=SUBSCRIBE_STATIC, headers=admin)).json()
            watcher = hub.app.hub.sessions.get(admin["mcp-session-id"])
            assert watcher is not None
            await t.retag("demo", ["red"])  # demo leaves the key's reach
            _drain(watcher)
            await http.post(hub.url, json=touch, headers=admin)
            assert [m for m in _drain(session) if m.get("method") == "notifications/resources/updated"] == []
            # while a subscriber still in reach keeps getting them
            assert any(m.get("method") == "notifications/resources/updated" for m in _drain(watcher))


async def test_a_limited_sessions_log_level_and_roots_reach_only_its_servers(tmp_path: Path) -> None:
    """Upstream state a session may change (log level, roots) changes only on the servers it reaches."""
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path) as t:
            hub, http = t.hub, t.http
            admin = await _legacy(http, hub.url, t.keys.create("ops", ["admin"]), {})
            blue = await _legacy(http, hub.url, t.keys.create("blue", ["tag:blue"]), {"roots": {}})
            body = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}
            assert "result" in (await http.post(hub.url, json=body, headers=blue)).json()
            roots = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
            assert (await http.post(hub.url, json=roots, headers=blue)).status_code == 202

            async def seen(tool: str) -> dict[str, Any]:
                reply = (await http.post(hub.url, json=_call(tool), headers=admin)).json()
                return dict(json.loads(reply["result"]["content"][0]["text"]))

            demo, time = await seen("demo__whoami"), await seen("time__whoami")
            assert demo["logLevel"] == "debug" and demo["heard"].get("notifications/roots/list_changed") == 1
            assert time["logLevel"] is None and "notifications/roots/list_changed" not in time["heard"]


async def test_a_revived_session_keeps_only_the_subscriptions_its_access_still_allows(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path) as t:
            blue = await _legacy(t.http, t.hub.url, t.keys.create("blue", ["tag:blue"]), {})
            session = t.hub.app.hub.sessions.get(blue["mcp-session-id"])
            assert session is not None
            # as saved before a restart, when its key still reached `time` too
            t.hub.app.hub.subscriptions.restore(session, [("time", "fixture://static"), ("demo", "fixture://static")])
            assert list(session.subscriptions) == [("demo", "fixture://static")]


async def test_completing_a_hidden_servers_resource_says_what_a_missing_one_does(tmp_path: Path) -> None:
    """`time` is out of the blue key's reach, `zzz` does not exist: nothing tells them apart."""
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path) as t:
            key = t.keys.create("blue", ["tag:blue"])
            blue = await _legacy(t.http, t.hub.url, key, {})
            errors: dict[str, Any] = {}
            for server in ("time", "zzz"):
                uri = f"{server}+fixture://item/{{id}}"
                params = {"ref": {"type": "ref/resource", "uri": uri}, "argument": {"name": "id", "value": ""}}
                body = {"jsonrpc": "2.0", "id": 2, "method": "completion/complete", "params": params}
                legacy = (await t.http.post(t.hub.url, json=body, headers=blue)).json()["error"]
                body, headers = modern(key, "completion/complete", params)
                reply = await t.http.post(t.hub.url, json=body, headers=headers)
                both = [legacy, reply.json()["error"], reply.status_code]
                errors[server] = json.loads(json.dumps(both).replace(server, "S"))
            assert errors["time"] == errors["zzz"]
            assert "Resource not found" in errors["zzz"][0]["message"]


async def test_prefix_mode_never_a_name_of_two_servers_is_the_one_in_reach(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path, prefixMode="never") as t:
            hub, http = t.hub, t.http
            one = await _legacy(http, hub.url, t.keys.create("one", ["tool:demo/echo"]), {})
            listed = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=one)
            assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["echo"]
            assert "result" in (await http.post(hub.url, json=_call("echo", message="m"), headers=one)).json()
            blue = await _legacy(http, hub.url, t.keys.create("blue", ["tag:blue"]), {})
            body = {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "fixture://item/7"}}
            assert "result" in (await http.post(hub.url, json=body, headers=blue)).json()
            body = {"jsonrpc": "2.0", "id": 2, "method": "resources/list"}
            assert (await http.post(hub.url, json=body, headers=blue)).json()["result"]["resources"]


@asynccontextmanager
async def jwt_hub() -> AsyncIterator[tuple[RunningHub, httpx.AsyncClient, JwtIssuer]]:
    """A hub taking JWTs of a test issuer (audience: its public URL), with `time` and `demo`."""
    issuer = JwtIssuer("https://issuer.test", "http://hub.test/mcp")
    async with jwks_server(issuer.jwk) as jwks_url:
        auth = {"jwt": {"jwksUrl": jwks_url, "issuer": "https://issuer.test"}, "publicUrl": "http://hub.test/mcp"}
        config = {"mcpServers": {"time": _stdio(), "demo": _stdio()}, "onemcp": {"auth": auth}}
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=30) as http:
            yield hub, http, issuer


async def test_a_session_is_bound_to_its_credentials_scopes_not_only_its_subject() -> None:
    with anyio.fail_after(60):
        async with jwt_hub() as (hub, http, issuer):
            broad = await _legacy(http, hub.url, issuer.token(["mcp"]), {})
            narrow = {**broad, "authorization": f"Bearer {issuer.token(['tool:demo/echo'])}"}  # same subject
            r = await http.post(hub.url, json=_call("time__echo", message="m"), headers=narrow)
            assert r.status_code == 404 and "result" not in r.text
            r = await http.post(hub.url, json=_call("time__echo", message="m"), headers=broad)
            assert "result" in r.json()


async def test_a_subject_holding_a_space_cannot_pass_for_another_with_more_scopes() -> None:
    """hunt-auth F3: a session was bound to "<id> <sorted scopes>", so sub "alice server:demo" with
    scope server:time read as sub "alice" with server:demo and server:time: that token, given the
    other's session id, used `demo` there, which its own scopes do not grant."""
    with anyio.fail_after(60):
        async with jwt_hub() as (hub, http, issuer):
            victim = await _legacy(http, hub.url, issuer.token(["server:time", "server:demo"], subject="alice"), {})
            token = issuer.token(["server:time"], subject="alice server:demo")
            other = {**victim, "authorization": f"Bearer {token}"}
            r = await http.post(hub.url, json=_call("demo__echo", message="m"), headers=other)
            assert r.status_code == 404 and "result" not in r.text
            r = await http.post(hub.url, json=_call("demo__echo", message="m"), headers=victim)
            assert "result" in r.json()


async def test_a_modern_header_check_says_nothing_of_a_tool_out_of_reach(tmp_path: Path) -> None:
    cmd = fixture_command("--header-tool")
    servers = {"time": _stdio(), "demo": {"command": cmd[0], "args": cmd[1:]}}
    config = {"mcpServers": servers, "onemcp": {"auth": {"apiKeys": True}}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            key = KeyStore(tmp_path / "keys.db").create("t", ["server:time"])
            replies = []
            for name in ("demo__lookup", "demo__no_such_tool"):
                body, headers = modern(key, "tools/call", {"name": name, "arguments": {"account": "1"}})
                replies.append((await http.post(hub.url, json=body, headers=headers)).json()["error"])
            assert replies[0]["code"] == replies[1]["code"] == -32602  # both simply not found
            assert "Account" not in replies[0]["message"]


async def test_a_jwt_scp_claim_may_be_a_space_separated_string() -> None:
    with anyio.fail_after(60):
        async with jwt_hub() as (hub, http, issuer):
            headers = await _legacy(http, hub.url, issuer.token(None, scp="server:time mcp"), {})
            r = await http.post(hub.url, json=_call("time__echo", message="m"), headers=headers)
            assert "result" in r.json()


async def test_a_tag_edit_applies_at_once_without_restarting_the_server(tmp_path: Path) -> None:
    """Tags are how an operator grants tag: scopes: editing them must cut access at once, even while
    another client's call runs on that server, and must not restart it (its subscriptions live on)."""
    with anyio.fail_after(60):
        async with tagged_hub(tmp_path) as t:
            hub, http = t.hub, t.http
            blue = await _legacy(http, hub.url, t.keys.create("blue", ["tag:blue"]), {})
            admin = await _legacy(http, hub.url, t.keys.create("ops", ["admin"]), {})
            assert "result" in (await http.post(hub.url, json=SUBSCRIBE_STATIC, headers=admin)).json()
            before = hub.app.hub.pool.get("demo")
            held = hub.app.hub.sessions.get(admin["mcp-session-id"])
            assert held is not None

            async def hold() -> None:
                await http.post(hub.url, json=_call("demo__sleep", rid=9, seconds=20), headers=admin)

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                while not held.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                await t.retag("demo", ["green"])
                assert held.in_flight  # the other client's call still runs
                r = await http.post(hub.url, json=_call("demo__echo", message="m"), headers=blue)
                assert "result" not in r.json()
                tg.cancel_scope.cancel()
            assert hub.app.hub.pool.get("demo") is before  # not restarted
            _drain(held)
            await http.post(hub.url, json=_call("demo__touch", uri="fixture://static"), headers=admin)
            assert any(m.get("method") == "notifications/resources/updated" for m in _drain(held))


async def test_subscriptions_survive_a_restart_of_their_server(tmp_path: Path) -> None:
    servers = {"time": _stdio(), "demo": _stdio()}
    config = {"mcpServers": servers}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            headers = await _legacy(http, hub.url, "", {})
            sub = {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "resources/subscribe",
                "params": {"uri": "demo+fixture://static"},
            }
            assert "result" in (await http.post(hub.url, json=sub, headers=headers)).json()
            before = hub.app.hub.pool.get("demo")
            servers["demo"]["env"] = {"ONEMCP_TEST_RESTART": "1"}  # a connection setting: the server restarts
            path.write_text(json.dumps(config))
            while (now := hub.app.hub.pool.get("demo")) is None or now is before or now.state != "ready":
                await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the restart)
            session = hub.app.hub.sessions.get(headers["mcp-session-id"])
            assert session is not None
            # the restarted server was asked for the updates again before the touch reaches it
            touch = _call("demo__touch", uri="fixture://static")
            for _ in range(50):
                _drain(session)
                await http.post(hub.url, json=touch, headers=headers)
                if any(m.get("method") == "notifications/resources/updated" for m in _drain(session)):
                    break
                await anyio.sleep(0.05)  # allowed-sleep: the resubscription is on its way
            else:
                raise AssertionError("no resources/updated after the restart")


async def test_a_call_admitted_before_its_key_expires_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only streams end with their credential: a 2026-07-28 call in flight when the key expires gets its
    result (it used to be cut off: a faked disconnect, then HTTP 500)."""
    monkeypatch.setattr(gate_module, "RECHECK", 0.1)
    with anyio.fail_after(60):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient(timeout=30) as http:
            key = keys.create("short", ["mcp"], time.time() + 1.0)
            body, headers = modern(key, "tools/call", {"name": "time__sleep", "arguments": {"seconds": 2}})
            r = await http.post(hub.url, json=body, headers=headers)
            assert r.status_code == 200 and "error" not in r.json(), r.text
