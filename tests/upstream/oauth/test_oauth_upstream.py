"""The hub as an OAuth client of a protected upstream, end to end.

The protected upstream is a second onemcp hub with its built-in authorization server (an
OAuth 2.1 resource server with RFC 9728 metadata, DCR, PKCE, rotating refresh tokens,
revocation). The hub under test meets its 401, discovers, registers, shows an authorization
link in /health; a "browser" follows the link; the callback finishes the flow; calls go
through; an expiring token is refreshed; a revoked one sends the hub back to asking; the
stored credentials survive a restart and are encrypted at rest.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.main import main
from support.credentials import loopback_asgi
from support.hub import RunningHub, running_hub
from support.services import NEEDS_REDIS

pytestmark = pytest.mark.anyio


def protected_config() -> dict[str, Any]:
    cmd = fixture_command()
    return {
        "mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"auth": {"oauth": True, "oauthConsent": "auto"}},
    }


@asynccontextmanager
async def protected_upstream(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """The protected upstream (files in tmp_path/up); tmp_path/hub is made for the hub under test."""
    (tmp_path / "up").mkdir()
    (tmp_path / "hub").mkdir()
    up_path = tmp_path / "up" / "mcp.json"
    up_path.write_text(json.dumps(protected_config()))
    async with running_hub(protected_config(), config_path=up_path) as upstream:
        yield upstream


def hub_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "hub" / "mcp.json"
    path.write_text(json.dumps(config))
    return path


async def upstream_health(
    hub: RunningHub, http: httpx.AsyncClient, name: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await http.get(f"{hub.base}/health", headers=headers)
    doc: dict[str, Any] = r.json()["upstreams"][name]
    return doc


async def wait_for(hub: RunningHub, http: httpx.AsyncClient, name: str, what: str) -> dict[str, Any]:
    """Poll /health until the upstream is `what` ("ready" or "needs-authorization")."""
    doc: dict[str, Any] = {}
    with anyio.move_on_after(30):
        while True:
            doc = await upstream_health(hub, http, name)
            auth = doc.get("authorization") or {}
            if what == "ready" and doc["state"] == "ready":
                return doc
            if what == "needs-authorization" and auth.get("state") == "required" and auth.get("authorizeUrl"):
                return doc
            await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
    raise AssertionError(f"{name} never became {what}: {doc}")


async def authorize_in_browser(http: httpx.AsyncClient, link: str) -> httpx.Response:
    """What the operator's browser does: the (auto-approving) authorization page redirects to the hub."""
    r = await http.get(link)
    assert r.status_code == 302, r.text
    callback = r.headers["location"]
    assert "/oauth/upstream/callback/remote?" in callback
    return await http.get(callback)


async def echo(hub: RunningHub, text: str) -> str:
    async with Client(streamable_http_client(hub.url), mode="legacy", cache=None) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        name = "echo" if "echo" in tools else "remote__echo"
        result = await c.call_tool(name, {"message": text})
        item = result.content[0]
        assert isinstance(item, types.TextContent)
        return item.text


async def test_hub_authorizes_itself_with_a_protected_upstream(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with protected_upstream(tmp_path) as upstream:
            config = {"mcpServers": {"remote": {"url": upstream.url}}}
            hub_path = hub_file(tmp_path, config)
            async with httpx.AsyncClient() as http:
                async with running_hub(config, config_path=hub_path) as hub:
                    doc = await wait_for(hub, http, "remote", "needs-authorization")
                    assert doc["state"] == "failed"
                    assert "authoriz" in (doc["lastError"] or "")
                    auth = doc["authorization"]
                    assert auth["issuer"] == upstream.base
                    link = auth["authorizeUrl"]
                    assert "code_challenge_method=S256" in link and "resource=" in link
                    # the admin endpoint shows the same link (the hub has no auth of its own here)
                    listed = (await http.get(f"{hub.base}/oauth/upstream")).json()["upstreams"]
                    assert listed["remote"]["authorizeUrl"] == link

                    page = await authorize_in_browser(http, link)
                    assert page.status_code == 200 and "remote is authorized" in page.text
                    await wait_for(hub, http, "remote", "ready")
                    assert await echo(hub, "through oauth") == "through oauth"

                    # a used state cannot be replayed
                    replay = await http.get(f"{hub.base}/oauth/upstream/callback/remote?state=x&code=y")
                    assert replay.status_code == 400

                    # refresh before expiry: a new access token, calls keep working
                    credential = hub.app.hub.upstream_auth.servers["remote"]
                    assert credential.tokens is not None and credential.tokens.refresh_token
                    first = credential.tokens
                    credential.tokens = dataclasses.replace(first, expires_at=1.0)
                    assert await echo(hub, "refreshed") == "refreshed"
                    assert credential.tokens.access_token != first.access_token

                    # revoked at the upstream: the hub's refresh fails too, so it asks again
                    reg = credential.registration
                    assert reg is not None
                    form = {"token": credential.tokens.refresh_token or "", "client_id": reg.client_id}
                    if reg.client_secret:
                        form["client_secret"] = reg.client_secret
                    assert (await http.post(f"{upstream.base}/oauth/revoke", data=form)).status_code == 200
                    async with Client(streamable_http_client(hub.url), mode="legacy", cache=None) as c:
                        with pytest.raises(MCPError) as refused:
                            await c.call_tool("echo", {"message": "revoked"})
                    text = str(refused.value)
                    assert "authoriz" in text and "onemcp auth upstream login remote" in text
                    assert "code_challenge" not in text  # clients never get the link
                    doc = await wait_for(hub, http, "remote", "needs-authorization")
                    assert doc["supervisor"] == "needs-authorization"
                    metrics = (await http.get(f"{hub.base}/metrics")).text
                    assert 'onemcp_upstream_needs_authorization{server="remote"} 1.0' in metrics
                    page = await authorize_in_browser(http, doc["authorization"]["authorizeUrl"])
                    assert page.status_code == 200
                    await wait_for(hub, http, "remote", "ready")
                    assert await echo(hub, "again") == "again"
                    token = hub.app.hub.upstream_auth.servers["remote"].header

                # stored encrypted, private, and used again after a restart without asking
                key = tmp_path / "hub" / "secret.key"
                db = tmp_path / "hub" / "upstream-auth.db"
                assert stat.S_IMODE(key.stat().st_mode) == 0o600
                assert stat.S_IMODE(db.stat().st_mode) == 0o600
                assert token is not None
                assert token.removeprefix("Bearer ").encode() not in db.read_bytes()
                async with running_hub(config, config_path=hub_path) as hub:
                    await wait_for(hub, http, "remote", "ready")
                    assert await echo(hub, "after restart") == "after restart"


async def test_link_is_kept_off_an_exposed_health_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With auth on the hub, /health (the operator's) names the CLI command; the link needs an admin credential.
    The listing of /oauth/upstream is the operator's to read too (h4: it was admin-only), without the link."""
    with anyio.fail_after(90):
        async with protected_upstream(tmp_path) as upstream:
            admin = KeyStore(tmp_path / "hub" / "keys.db").create("ops", ["admin"], None)
            config = {"mcpServers": {"remote": {"url": upstream.url}}, "onemcp": {"auth": {"apiKeys": True}}}
            hub_path = hub_file(tmp_path, config)
            async with httpx.AsyncClient() as http, running_hub(config, config_path=hub_path) as hub:
                with anyio.fail_after(30):
                    while True:
                        doc = await upstream_health(hub, http, "remote", {"authorization": f"Bearer {admin}"})
                        auth = doc.get("authorization") or {}
                        if auth.get("state") == "required":
                            break
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                assert auth["authorizeUrl"] is None
                assert auth["howTo"] == "onemcp auth upstream login remote"
                assert (await http.get(f"{hub.base}/oauth/upstream")).status_code == 401
                r = await http.get(f"{hub.base}/oauth/upstream", headers={"authorization": f"Bearer {admin}"})
                assert r.status_code == 200
                assert "code_challenge" in r.json()["upstreams"]["remote"]["authorizeUrl"]
                # the read-only operator scope reads the status (as /health), without the link; logout is admin's
                keys = KeyStore(tmp_path / "hub" / "keys.db")
                watcher = {"authorization": f"Bearer {keys.create('watch', ['operator'], None)}"}
                r = await http.get(f"{hub.base}/oauth/upstream", headers=watcher)
                assert r.status_code == 200, r.text
                seen = r.json()["upstreams"]["remote"]
                assert seen["state"] == "required" and seen["authorizeUrl"] is None, seen
                assert seen["howTo"] == "onemcp auth upstream login remote" and "code_challenge" not in r.text
                r = await http.delete(f"{hub.base}/oauth/upstream/remote", headers=watcher)
                assert r.status_code == 403 and r.json() == {"error": "insufficient_scope", "scope": "admin"}
                user = {"authorization": f"Bearer {keys.create('user', ['mcp'], None)}"}
                r = await http.get(f"{hub.base}/oauth/upstream", headers=user)
                assert r.status_code == 403 and r.json() == {"error": "insufficient_scope", "scope": "operator"}

                def cli(*argv: str) -> tuple[int, str, str]:
                    code = main(["auth", "upstream", *argv, "--url", hub.url])
                    said = capsys.readouterr()
                    return code, said.out, said.err

                monkeypatch.setenv(TOKEN_ENV, watcher["authorization"].removeprefix("Bearer "))
                code, out, _ = await anyio.to_thread.run_sync(cli, "list")
                assert code == 0 and "remote" in out and "required" in out, out
                code, out, err = await anyio.to_thread.run_sync(cli, "login", "remote", "--no-wait")
                assert code == 1 and out == "", out
                assert "remote needs authorization, and the hub gave no link: it gives one to a key with the admin" in (
                    err
                )
                code, _, err = await anyio.to_thread.run_sync(cli, "logout", "remote")
                assert code == 1 and f"HTTP 403; set ${TOKEN_ENV} to a key with the admin scope" in err, err


async def test_cli_login_list_logout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with anyio.fail_after(120):
        async with protected_upstream(tmp_path) as upstream:
            audit = tmp_path / "audit.jsonl"
            config = {"mcpServers": {"remote": {"url": upstream.url}}, "onemcp": {"audit": str(audit)}}
            hub_path = hub_file(tmp_path, config)
            async with httpx.AsyncClient() as http, running_hub(config, config_path=hub_path) as hub:
                doc = await wait_for(hub, http, "remote", "needs-authorization")
                # the callback refuses junk without a traceback
                junk = "&".join(f"p{i}=x" for i in range(60))
                r = await http.get(f"{hub.base}/oauth/upstream/callback/remote?{junk}")
                assert r.status_code == 400 and "Too many parameters" in r.text

                def cli(*argv: str) -> tuple[int, str]:
                    code = main(["auth", "upstream", *argv, "--url", hub.url])
                    return code, capsys.readouterr().out

                code, out = await anyio.to_thread.run_sync(cli, "login", "remote", "--no-wait")
                assert code == 0 and doc["authorization"]["authorizeUrl"] in out
                code, out = await anyio.to_thread.run_sync(cli, "list")
                assert code == 0 and "remote" in out and "required" in out
                page = await authorize_in_browser(http, doc["authorization"]["authorizeUrl"])
                assert page.status_code == 200
                await wait_for(hub, http, "remote", "ready")
                code, out = await anyio.to_thread.run_sync(cli, "list")
                assert code == 0 and "authorized" in out and "refreshable" in out
                code, out = await anyio.to_thread.run_sync(cli, "login", "remote")
                assert code == 0 and "already authorized" in out
                code, out = await anyio.to_thread.run_sync(cli, "logout", "remote")
                assert code == 0 and "tokens forgotten" in out
                gone = ["auth", "upstream", "logout", "nope", "--url", hub.url]  # h4: said HTTP 404 and JSON
                code = await anyio.to_thread.run_sync(main, gone)
                said = capsys.readouterr()
                assert (code, said.out, said.err) == (1, "", "onemcp: the running hub has no server 'nope'\n")
                lines = audit.read_text()
                assert "upstream authorized server=remote issuer=http://127.0.0.1" in lines
                assert "upstream logout server=remote principal=anonymous forgotten=True" in lines
                # without its token the hub is refused upstream and asks again
                async with Client(streamable_http_client(hub.url), mode="legacy", cache=None) as c:
                    with pytest.raises(MCPError):
                        await c.call_tool("echo", {"message": "logged out"})
                await wait_for(hub, http, "remote", "needs-authorization")
                code = await anyio.to_thread.run_sync(main, ["auth", "upstream", "login", "nope", "--url", hub.url])
                assert code == 1 and "has not asked for OAuth" in capsys.readouterr().err


@NEEDS_REDIS
async def test_replicas_share_an_upstream_authorization_through_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link is handed out by replica A, its callback lands on replica B (the load balancer's pick):
    B finishes the flow, A takes the tokens from Redis and connects; a logout through B reaches A."""
    monkeypatch.setenv("ONEMCP_SECRET_KEY", "one passphrase for every replica")
    with anyio.fail_after(120):
        async with protected_upstream(tmp_path) as upstream:
            config = {"mcpServers": {"remote": {"url": upstream.url}}, "onemcp": {"sessionStore": redis_url}}
            paths = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                paths.append(tmp_path / name / "mcp.json")
                paths[-1].write_text(json.dumps(config))
            async with (
                httpx.AsyncClient() as http,
                running_hub(config, config_path=paths[0]) as a,
                running_hub(config, config_path=paths[1]) as b,
            ):
                await wait_for(a, http, "remote", "needs-authorization")
                link = (await upstream_health(a, http, "remote"))["authorization"]["authorizeUrl"]
                r = await http.get(link)
                assert r.status_code == 302, r.text
                callback = r.headers["location"]
                assert callback.startswith(f"{a.base}/oauth/upstream/callback/remote?")
                page = await http.get(b.base + callback.removeprefix(a.base))  # B never made this link
                assert page.status_code == 200 and "remote is authorized" in page.text, page.text
                await wait_for(b, http, "remote", "ready")
                await wait_for(a, http, "remote", "ready")  # told by B, tokens from Redis
                assert await echo(a, "via a") == "via a" and await echo(b, "via b") == "via b"
                replay = await http.get(a.base + callback.removeprefix(a.base))  # spent on B: spent for A too
                assert replay.status_code == 400
                assert not (tmp_path / "a" / "upstream-auth.db").exists()  # in Redis, encrypted, not in files

                r = await http.delete(f"{b.base}/oauth/upstream/remote")
                assert r.status_code == 200 and r.json()["forgotten"] is True
                credential = a.app.hub.upstream_auth.servers["remote"]
                with anyio.fail_after(10):
                    while credential.tokens is not None:
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline


async def test_a_hub_stops_while_an_upstreams_oauth_discovery_hangs() -> None:
    """An upstream's 401 points the hub at metadata URLs that never answer: the hub's shutdown must not
    wait for its discovery (shielded from the connection's own cancellation, bounded only at 80 s)."""
    asked = anyio.Event()
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # every metadata URL the hub tries: no answer
            asked.set()
            await release.wait()
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        where = f'Bearer resource_metadata="http://127.0.0.1:{scope["server"][1]}/hang"'.encode()
        await send({"type": "http.response.start", "status": 401, "headers": [(b"www-authenticate", where)]})
        await send({"type": "http.response.body", "body": b""})

    with anyio.fail_after(20):  # the discovery alone would hold the hub up to 80 s (20 s per metadata URL)
        async with loopback_asgi(app) as base:
            try:
                async with running_hub({"mcpServers": {"locked": {"url": f"{base}/mcp"}}}, wait=False):
                    await asked.wait()
            finally:
                release.set()
