"""The full OAuth flow against the hub with the official SDK's OAuth client provider.

Register (RFC 7591), authorize with PKCE, get a token, call a tool, refresh, revoke.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from fixtures.launch import fixture_command
from onemcp.auth import gate as gate_module
from onemcp.auth.principal import InvalidToken
from support.hub import RunningHub, oauth_hub, running_hub
from support.oauth import MemoryTokenStorage

pytestmark = pytest.mark.anyio


async def test_oauth_register_authorize_call_refresh_revoke(tmp_path: Path) -> None:
    cmd = fixture_command()
    config: dict[str, Any] = {
        "mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"auth": {"oauth": True, "oauthConsent": "auto"}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    got: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:  # the "browser"
        async with httpx.AsyncClient() as browser:
            r = await browser.get(url)
        assert r.status_code == 302, r.text
        got.update(parse_qsl(urlsplit(r.headers["location"]).query))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=got["code"], state=got["state"], iss=got.get("iss"))

    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub:
            # no token: 401 pointing at the metadata
            async with httpx.AsyncClient() as http:
                r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
                assert r.status_code == 401 and "resource_metadata" in r.headers["www-authenticate"]
            storage = MemoryTokenStorage()
            provider = OAuthClientProvider(
                server_url=hub.url,
                client_metadata=OAuthClientMetadata(client_name="sdk", redirect_uris=["http://127.0.0.1:33418/cb"]),
                storage=storage,
                redirect_handler=redirect_handler,
                callback_handler=callback_handler,
            )
            async with httpx2.AsyncClient(auth=provider) as authed:
                transport = streamable_http_client(hub.url, http_client=authed)
                async with Client(transport, mode="legacy", cache=None) as c:
                    result = await c.call_tool("echo", {"message": "authorized"})
                    item = result.content[0]
                    assert isinstance(item, types.TextContent) and item.text == "authorized"
                    first = storage.tokens
                    assert first is not None and first.refresh_token
                    # force a refresh: the provider refreshes, the old refresh token is rotated out
                    provider.context.token_expiry_time = 1.0
                    again = await c.call_tool("echo", {"message": "refreshed"})
                    item = again.content[0]
                    assert isinstance(item, types.TextContent) and item.text == "refreshed"
                    assert storage.tokens is not None and storage.tokens.access_token != first.access_token
            # revoke: the token no longer opens the hub
            token = storage.tokens.access_token
            assert storage.client is not None  # registered (RFC 7591)
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"{hub.base}/oauth/revoke",
                    data={
                        "token": token,
                        "client_id": storage.client.client_id,
                        "client_secret": storage.client.client_secret or "",
                    },
                )
                assert r.status_code == 200
                r = await http.post(
                    hub.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert r.status_code == 401


async def test_oauth_from_the_legacy_sse_entry(tmp_path: Path) -> None:
    """A client that starts at /sse (legacy HTTP+SSE) gets there too: the SDKs (Python's and TypeScript's)
    accept protected resource metadata only for a resource their URL lies under, so /sse's challenge
    names metadata for /sse, and a token asked for that resource opens every entry (it is the hub's).
    Before, the challenge named /mcp's metadata and both SDKs gave up: 'Protected resource .../mcp
    does not match expected .../sse'."""
    cmd = fixture_command()
    config: dict[str, Any] = {
        "mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"auth": {"oauth": True, "oauthConsent": "auto"}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    got: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:  # the "browser"
        got.update(parse_qsl(urlsplit(url).query))
        async with httpx.AsyncClient() as browser:
            r = await browser.get(url)
        assert r.status_code == 302, r.text
        got.update(parse_qsl(urlsplit(r.headers["location"]).query))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=got["code"], state=got["state"], iss=got.get("iss"))

    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub:
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{hub.base}/sse")
                assert r.status_code == 401
                assert (
                    f'resource_metadata="{hub.base}/.well-known/oauth-protected-resource/sse"'
                    in (r.headers["www-authenticate"])
                )
                prm = (await http.get(f"{hub.base}/.well-known/oauth-protected-resource/sse")).json()
                assert prm["resource"] == f"{hub.base}/sse"
                assert (await http.get(f"{hub.base}/.well-known/oauth-protected-resource/mcp")).json()[
                    "resource"
                ] == hub.url
            storage = MemoryTokenStorage()
            provider = OAuthClientProvider(
                server_url=f"{hub.base}/sse",
                client_metadata=OAuthClientMetadata(client_name="sdk", redirect_uris=["http://127.0.0.1:33418/cb"]),
                storage=storage,
                redirect_handler=redirect_handler,
                callback_handler=callback_handler,
            )
            async with Client(sse_client(f"{hub.base}/sse", auth=provider), mode="legacy", cache=None) as c:
                result = await c.call_tool("echo", {"message": "over sse"})
                item = result.content[0]
                assert isinstance(item, types.TextContent) and item.text == "over sse"
            assert got["resource"] == f"{hub.base}/sse"
            assert storage.tokens is not None
            # the token is the hub's: it opens /mcp as well
            async with httpx.AsyncClient() as http:
                init = {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                }
                r = await http.post(
                    hub.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
                    headers={"authorization": f"Bearer {storage.tokens.access_token}"},
                )
                assert r.status_code == 200, r.text


async def test_a_rebound_host_cannot_reach_the_authorization_pages(tmp_path: Path) -> None:
    """DNS rebinding: a page on another site, resolved to 127.0.0.1, must not load the consent page."""
    cmd = fixture_command()
    config: dict[str, Any] = {
        "mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": {"auth": {"oauth": True}},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    with anyio.fail_after(60):
        async with running_hub(config, config_path=path, wait=False) as hub, httpx.AsyncClient() as http:
            rebound = {"host": "evil.example"}
            for target in (
                "/oauth/authorize?client_id=x",
                "/oauth/upstream",
                "/.well-known/oauth-protected-resource",
                "/health",  # it may carry upstream authorization links
            ):
                r = await http.get(f"{hub.base}{target}", headers=rebound)
                assert r.status_code == 421, (target, r.status_code)
            assert (await http.get(f"{hub.base}/health/live", headers=rebound)).status_code == 200  # probes
            ok = await http.get(f"{hub.base}/.well-known/oauth-authorization-server")
            assert ok.status_code == 200


class TokenClock:
    """The built-in authorization server's clock, moved on by hand: its tokens expire without a wait."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def oauth_tokens(http: httpx.AsyncClient, hub: RunningHub) -> tuple[str, dict[str, Any]]:
    """A public client registered, authorized (consent "auto") and its code exchanged: its id, the tokens."""
    doc = {"redirect_uris": ["http://127.0.0.1:33418/cb"], "token_endpoint_auth_method": "none"}
    client_id = (await http.post(f"{hub.base}/oauth/register", json=doc)).json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": doc["redirect_uris"][0]}
    params |= {"state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}
    r = await http.get(f"{hub.base}/oauth/authorize", params=params)
    code = dict(parse_qsl(urlsplit(r.headers["location"]).query))["code"]
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id, "code_verifier": verifier}
    r = await http.post(f"{hub.base}/oauth/token", data={**form, "redirect_uri": doc["redirect_uris"][0]})
    assert r.status_code == 200, r.text
    return client_id, r.json()


@pytest.mark.parametrize("end", ["grant revoked", "token revoked", "grant expired", "never"])
async def test_an_sse_session_lives_while_its_oauth_grant_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """An /sse session is its stream. It was ended at the expiry of the access token it was opened with,
    however often its client refreshed (FastMCP's SSETransport then failed every call: 'Connection
    closed'). Now it lives while the token's grant does: past the token's expiry and two refreshes (the
    token itself forgotten by then), calls made with the refreshed token answered on it; revoking the
    grant, or the token, or the grant's expiry still ends it at the next check."""
    monkeypatch.setattr(gate_module, "RECHECK", 0.05)
    checks, checked = anyio.create_memory_object_stream[bool](1000)
    events, received = anyio.create_memory_object_stream[tuple[str, str]](100)
    with anyio.fail_after(60), checks, checked, events, received:
        async with oauth_hub(tmp_path, "fx", fixture_command()) as hub, httpx.AsyncClient(timeout=30) as http:
            gate, clock = hub.app.gate, TokenClock()
            gate.oauth.grants.clock = clock
            original = gate.holds

            async def holds(scope: Any, principal: Any) -> bool:  # each check the stream's guard makes, seen
                held = await original(scope, principal)
                checks.send_nowait(held)
                return held

            monkeypatch.setattr(gate, "holds", holds)

            async def next_checks(count: int) -> list[bool]:
                """The next `count` checks' answers (up to the first refusal, which ends the stream)."""
                with contextlib.suppress(anyio.WouldBlock):
                    while True:  # those made before now: not counted
                        checked.receive_nowait()
                seen: list[bool] = []
                while len(seen) < count and all(seen):
                    seen.append(await checked.receive())
                return seen

            client_id, first = await oauth_tokens(http, hub)
            ended = anyio.Event()

            async def listen() -> None:
                auth = {"authorization": f"Bearer {first['access_token']}", "accept": "text/event-stream"}
                async with http.stream("GET", f"{hub.base}/sse", headers=auth) as r:
                    assert r.status_code == 200
                    kind = ""
                    async for line in r.aiter_lines():
                        if line.startswith("event:"):
                            kind = line.partition(":")[2].strip()
                        elif line.startswith("data:"):
                            await events.send((kind, line.partition(":")[2].strip()))
                ended.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                kind, endpoint = await received.receive()
                assert kind == "endpoint"
                assert await next_checks(2) == [True, True]
                clock.now += 15 * 60 + 1  # the stream's access token expired
                if end == "token revoked":  # (RFC 7009 on it, before it is forgotten)
                    form = {"token": first["access_token"], "client_id": client_id}
                    assert (await http.post(f"{hub.base}/oauth/revoke", data=form)).status_code == 200
                    await ended.wait()
                    return
                tokens = first
                for _ in range(2):  # two refreshes: the stream's token is forgotten (a grant keeps its 2 newest)
                    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
                    r = await http.post(f"{hub.base}/oauth/token", data={**form, "client_id": client_id})
                    assert r.status_code == 200, r.text
                    tokens = r.json()
                with pytest.raises(InvalidToken):
                    await gate.verify(first["access_token"])
                assert await next_checks(3) == [True, True, True]
                assert not ended.is_set()
                # the session is alive: a call with the refreshed token is answered on the stream
                auth = {"authorization": f"Bearer {tokens['access_token']}"}
                ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
                assert (await http.post(f"{hub.base}{endpoint}", json=ping, headers=auth)).status_code == 202
                while (message := await received.receive())[0] != "message":
                    pass
                assert json.loads(message[1]) == {"jsonrpc": "2.0", "id": 7, "result": {}}
                if end == "never":
                    assert await next_checks(2) == [True, True]
                    tg.cancel_scope.cancel()
                else:
                    if end == "grant revoked":
                        form = {"token": tokens["refresh_token"], "client_id": client_id}
                        assert (await http.post(f"{hub.base}/oauth/revoke", data=form)).status_code == 200
                    else:  # its newest refresh token expired: no refresh is possible any more
                        clock.now += 30 * 86400 + 1
                    await ended.wait()
