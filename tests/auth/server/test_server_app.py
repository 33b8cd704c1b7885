"""The built-in OAuth 2.1 authorization server, over the wire: metadata, registration, PKCE codes,
tokens with rotation and reuse detection, revocation, expiry, the consent page and its operator key,
metadata-document clients, and the MCP SDK's own OAuth client running the whole dance."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
import redis
import uvicorn

from onemcp.auth.gate import Gate, RateLimiter
from onemcp.auth.keys import KeyStore
from onemcp.auth.principal import InvalidToken, Unconfirmed
from onemcp.auth.server import authorize as authorize_module
from onemcp.auth.server import directory as directory_module
from onemcp.auth.server import shared as shared_state
from onemcp.auth.server.app import OAuthServer
from onemcp.auth.server.store import KEEP_ACCESS, KEEP_REFRESH, OAuthStore
from onemcp.config import sqlite as sqlite_module
from onemcp.config.auth_settings import AuthSettings
from onemcp.http.asgi import Receive, Scope, Send, send_json
from support.audit import audit_lines
from support.clock import Clock
from support.held_redis import held_redis
from support.held_sqlite import BUSY, held_sqlite
from support.services import NEEDS_REDIS, redis_server

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:9"  # in-process tests never connect to it
RESOURCE = f"{ISSUER}/mcp"
REDIRECT = "http://127.0.0.1:5173/callback"
FORM = {"content-type": "application/x-www-form-urlencoded"}
NOW = 1_800_000_000.0  # where the tests' clocks start (a Unix time: tokens carry it)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Harness:
    """One server on a temporary database, an httpx client bound to it in-process, and flow helpers."""

    def __init__(self, server: OAuthServer, http: httpx.AsyncClient, clock: Clock) -> None:
        self.server = server
        self.http = http
        self.clock = clock

    async def register(self, **fields: Any) -> dict[str, Any]:
        doc = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Test", **fields}
        r = await self.http.post("/oauth/register", json=doc)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def authorize(self, client_id: str, challenge: str | None, **extra: str) -> httpx.Response:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st4te"}
        if challenge is not None:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        return await self.http.get("/oauth/authorize", params={**params, **extra})

    async def code(self, client_id: str, **extra: str) -> tuple[str, str]:
        """A fresh code (consent "auto") and its verifier."""
        verifier, challenge = pkce()
        r = await self.authorize(client_id, challenge, **extra)
        assert r.status_code == 302, r.text
        got = query(r.headers["location"])
        assert got["state"] == "st4te" and got["iss"] == ISSUER, got
        return got["code"], verifier

    async def token(self, basic: tuple[str, str] | None = None, /, **form: str) -> httpx.Response:
        auth = httpx.USE_CLIENT_DEFAULT if basic is None else basic
        return await self.http.post("/oauth/token", data=form, headers=FORM, auth=auth)

    async def tokens(self, client_id: str, **extra: str) -> dict[str, Any]:
        code, verifier = await self.code(client_id)
        r = await self.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            client_id=client_id,
            code_verifier=verifier,
            resource=RESOURCE,
            **extra,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def refresh(self, client_id: str, refresh_token: str, **extra: str) -> httpx.Response:
        return await self.token(grant_type="refresh_token", refresh_token=refresh_token, client_id=client_id, **extra)

    async def valid(self, access_token: str) -> bool:
        try:
            return await self.server.verify(access_token) is not None
        except InvalidToken:
            return False


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[str]:
    """One redis-server for this file's runs over the replicas' store (flushed before each test)."""
    with redis_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=NEEDS_REDIS)])
def state(request: pytest.FixtureRequest) -> str | None:
    """Every test of the server runs over both stores: SQLite (one hub) and the Redis replicas share."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("shared_redis")
    flush(url)
    return url


def flush(url: str) -> None:
    """Empty the test's Redis, closing the connection (one left to the garbage collector is an unraisable
    ResourceWarning in whichever test happens to collect it)."""
    with redis.Redis.from_url(url) as client:
        client.flushdb()


@pytest.fixture
def make(tmp_path: Path, state: str | None) -> Iterator[Callable[..., Harness]]:
    made: list[tuple[OAuthServer, httpx.AsyncClient]] = []

    def factory(**options: Any) -> Harness:
        clock = Clock(NOW)
        issuer = options.pop("issuer", ISSUER)
        options = {"scopes_supported": ["mcp", "admin"], "consent": "auto", "clock": clock, "shared": state, **options}
        server = OAuthServer(tmp_path / "oauth.db", issuer, f"{issuer}/mcp", **options)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=issuer)
        made.append((server, http))
        return Harness(server, http, clock)

    yield factory
    for server, _ in made:
        server.close()


@pytest.fixture
def oauth(make: Callable[..., Harness]) -> Harness:
    return make()


# ------------------------------------------------------------------ metadata
@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
async def test_metadata_document(oauth: Harness, path: str) -> None:
    r = await oauth.http.get(path)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/oauth/authorize"
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["registration_endpoint"] == f"{ISSUER}/oauth/register"
    assert doc["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert doc["response_types_supported"] == ["code"]
    assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint_auth_methods_supported"] == ["none", "client_secret_post", "client_secret_basic"]
    assert doc["scopes_supported"] == ["mcp", "admin"]
    assert doc["client_id_metadata_document_supported"] is True


async def test_issuer_with_a_path_serves_metadata_at_the_inserted_path(tmp_path: Path) -> None:
    server = OAuthServer(
        tmp_path / "db", "https://hub.example/tenant", "https://hub.example/tenant/mcp", scopes_supported=["mcp"]
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.app), base_url="https://hub.example"
        ) as h:
            r = await h.get("/.well-known/oauth-authorization-server/tenant")
            assert r.json()["token_endpoint"] == "https://hub.example/tenant/oauth/token"
            assert (await h.get("/tenant/.well-known/openid-configuration")).status_code == 200
            assert (await h.get("/.well-known/oauth-authorization-server")).status_code == 404
            assert server.handles("/tenant/oauth/token") and not server.handles("/oauth/token")
    finally:
        server.close()


async def test_wrong_method_and_preflight(oauth: Harness) -> None:
    r = await oauth.http.get("/oauth/token")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await oauth.http.options("/oauth/token")
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"


# -------------------------------------------------------------- registration
async def test_register_public_client(oauth: Harness) -> None:
    client = await oauth.register()
    assert client["client_id"] and "client_secret" not in client
    assert client["token_endpoint_auth_method"] == "none"
    assert client["redirect_uris"] == [REDIRECT]
    assert client["grant_types"] == ["authorization_code", "refresh_token"]


async def test_register_defaults_to_a_confidential_client(oauth: Harness) -> None:
    r = await oauth.http.post("/oauth/register", json={"redirect_uris": ["https://app.example/cb"]})
    assert r.status_code == 201
    body = r.json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_secret"] and body["client_secret_expires_at"] == 0


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["myapp:/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}, "invalid_client_metadata"),
        ({"redirect_uris": [REDIRECT], "response_types": ["token"]}, "invalid_client_metadata"),
        ([1, 2], "invalid_client_metadata"),
    ],
)
async def test_register_rejects(oauth: Harness, doc: Any, error: str) -> None:
    r = await oauth.http.post("/oauth/register", json=doc)
    assert r.status_code == 400
    assert r.json()["error"] == error


async def test_register_accepts_loopback_http(oauth: Harness) -> None:
    uris = ["http://localhost:3000/cb", "http://127.0.0.1/cb", "http://[::1]:8080/cb"]
    client = await oauth.register(redirect_uris=uris)
    assert client["redirect_uris"] == uris


async def test_register_rejects_a_body_that_is_not_json(oauth: Harness) -> None:
    r = await oauth.http.post("/oauth/register", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"


# ------------------------------------------------------------ code and tokens
async def test_code_flow_issues_tokens_the_verifier_accepts(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["scope"] == "mcp"
    assert tokens["refresh_token"] != tokens["access_token"]
    principal = await oauth.server.verify(tokens["access_token"])
    assert principal is not None
    assert principal.id == f"oauth:{client_id}"
    assert principal.kind == "oauth"
    assert principal.scopes == frozenset({"mcp"})
    assert principal.expires == oauth.clock.now + 900


async def test_token_reply_is_not_cached(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id)
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id, code_verifier=verifier
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"


async def test_requested_scopes_are_granted(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id, scope="mcp admin")
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id, code_verifier=verifier
    )
    assert r.json()["scope"] == "mcp admin"
    principal = await oauth.server.verify(r.json()["access_token"])
    assert principal is not None and principal.is_admin


@pytest.mark.parametrize(
    ("scope", "named"),
    [("mcp root", "unsupported scope: root"), ("tag:dev", "unsupported scope: tag:dev"), (" ", "no scope requested")],
)
async def test_unknown_scope_is_refused_by_redirect_naming_the_scopes_granted(
    oauth: Harness, scope: str, named: str
) -> None:
    """Trial s39-h16: `scope=tag:dev` was "unsupported scope: tag:dev", and nothing said which scopes the
    server grants; a blank scope was "unsupported scope: " (naming nothing)."""
    client_id = (await oauth.register())["client_id"]
    r = await oauth.authorize(client_id, pkce()[1], scope=scope)
    assert r.status_code == 302
    got = query(r.headers["location"])
    assert got["error"] == "invalid_scope" and got["state"] == "st4te" and got["iss"] == ISSUER
    said = got["error_description"]
    assert said.startswith(f"{named}; this server grants: mcp admin (narrower access for a client:"), said
    assert "onemcp.auth.clientRoles" in said, said


@pytest.mark.parametrize(
    "params",
    [
        {},  # no code_challenge at all
        {"code_challenge_method": "S256"},
        {"code_challenge": "x" * 43},  # no method
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "short", "code_challenge_method": "S256"},
    ],
)
async def test_pkce_s256_is_required(oauth: Harness, params: dict[str, str]) -> None:
    client_id = (await oauth.register())["client_id"]
    r = await oauth.authorize(client_id, None, **params)
    assert r.status_code == 302
    got = query(r.headers["location"])
    assert got["error"] == "invalid_request"
    assert "code" not in got


async def test_response_type_must_be_code(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    r = await oauth.authorize(client_id, pkce()[1], response_type="token")
    assert query(r.headers["location"])["error"] == "unsupported_response_type"


@pytest.mark.parametrize("bad", [{"response_type": "token"}, {"scope": "root"}])
async def test_a_request_error_is_not_an_open_redirect_to_a_registered_web_uri(
    oauth: Harness, bad: dict[str, str]
) -> None:
    """RFC 9700 §4.11.2: anyone may register a client (cross-origin, no credential) with its own https
    redirect URI, then send people to `/oauth/authorize?client_id=<it>&response_type=token`: the hub
    answered 302 to that URI at once, an open redirector on the hub's origin. The error now shows on a
    page of the hub's, with the way back as a link the person follows or not; a loopback (native app)
    URI is on the person's own machine and is still sent back at once (the tests above)."""
    web = "https://app.example/cb"
    client_id = (await oauth.register(redirect_uris=[web]))["client_id"]
    r = await oauth.authorize(client_id, pkce()[1], redirect_uri=web, **bad)
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html") and r.headers["x-frame-options"] == "DENY"
    link = re.search(r'<a href="([^"]+)">', r.text)
    assert link is not None, r.text
    back = html.unescape(link.group(1))
    assert back.startswith(web + "?") and query(back)["state"] == "st4te" and query(back)["iss"] == ISSUER
    assert query(back)["error"] in ("unsupported_response_type", "invalid_scope")
    assert "app.example" in r.text


async def test_wrong_verifier_is_invalid_grant(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, _ = await oauth.code(client_id)
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id, code_verifier=pkce()[0]
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_missing_verifier_is_invalid_request(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, _ = await oauth.code(client_id)
    r = await oauth.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_code_reuse_is_refused_and_revokes_what_it_issued(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    first = await oauth.token(**form)
    assert first.status_code == 200
    assert await oauth.valid(first.json()["access_token"])
    again = await oauth.token(**form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not await oauth.valid(first.json()["access_token"])
    assert (await oauth.refresh(client_id, first.json()["refresh_token"])).json()["error"] == "invalid_grant"


async def test_code_is_bound_to_client_and_redirect_uri(oauth: Harness) -> None:
    a = (await oauth.register())["client_id"]
    b = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(a)
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=b, code_verifier=verifier
    )
    assert r.json()["error"] == "invalid_grant"
    code, verifier = await oauth.code(a)
    r = await oauth.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:5173/other",
        client_id=a,
        code_verifier=verifier,
    )
    assert r.json()["error"] == "invalid_grant"


async def test_code_expires_after_a_minute(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id)
    oauth.clock.now += 61
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id, code_verifier=verifier
    )
    assert r.json() == {"error": "invalid_grant", "error_description": "authorization code expired"}


async def test_resource_must_be_the_hub(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    r = await oauth.authorize(client_id, pkce()[1], resource="https://other.example/mcp")
    assert query(r.headers["location"])["error"] == "invalid_target"
    # the same resource, spelled with an upper-case host and a trailing slash, is the hub
    code, verifier = await oauth.code(client_id, resource="HTTP://127.0.0.1:9/mcp/")
    r = await oauth.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=client_id,
        code_verifier=verifier,
        resource="https://other.example/mcp",
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


async def test_tokens_for_another_resource_do_not_verify(
    make: Callable[..., Harness], tmp_path: Path, state: str | None
) -> None:
    oauth = make()
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    other = OAuthServer(
        tmp_path / "oauth.db", ISSUER, "http://127.0.0.1:9/elsewhere", scopes_supported=["mcp"], shared=state
    )
    try:
        with pytest.raises(InvalidToken, match="another resource"):
            await other.verify(tokens["access_token"])
    finally:
        other.close()


async def test_unknown_client_and_bad_redirect_are_not_redirected(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    r = await oauth.authorize("nobody", pkce()[1])
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    r = await oauth.authorize(client_id, pkce()[1], redirect_uri="https://evil.example/cb")
    assert r.status_code == 400 and "location" not in r.headers
    r = await oauth.http.get("/oauth/authorize", params={"client_id": "nobody"}, headers={"accept": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_loopback_redirect_may_use_any_port(oauth: Harness) -> None:
    client_id = (await oauth.register(redirect_uris=["http://127.0.0.1/callback"]))["client_id"]
    challenge = pkce()[1]
    r = await oauth.authorize(client_id, challenge, redirect_uri="http://127.0.0.1:49152/callback")
    assert r.status_code == 302
    assert r.headers["location"].startswith("http://127.0.0.1:49152/callback?code=")
    r = await oauth.authorize(client_id, challenge, redirect_uri="http://127.0.0.1:49152/elsewhere")
    assert r.status_code == 400
    for sneaky in ("http://evil.test\\@127.0.0.1:9999/callback", "http://evil.test@127.0.0.1:9999/callback"):
        r = await oauth.authorize(client_id, challenge, redirect_uri=sneaky)  # a browser would go to evil.test
        assert r.status_code == 400 and "location" not in r.headers, sneaky


async def test_single_registered_redirect_may_be_omitted(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "code_challenge": challenge}
    r = await oauth.http.get("/oauth/authorize", params={**params, "code_challenge_method": "S256"})
    assert r.headers["location"].startswith(REDIRECT)
    code = query(r.headers["location"])["code"]
    r = await oauth.token(grant_type="authorization_code", code=code, client_id=client_id, code_verifier=verifier)
    assert r.status_code == 200, r.text


async def test_unsupported_grant_and_bad_content_type(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    r = await oauth.token(grant_type="password", client_id=client_id)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await oauth.http.post("/oauth/token", json={"grant_type": "authorization_code"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await oauth.http.post("/oauth/token", content=b"x" * 70_000, headers=FORM)
    assert r.status_code == 413


async def test_every_endpoint_answers_413_to_a_body_too_large(oauth: Harness) -> None:
    """Hunt B (limits): the consent form's POST to /oauth/authorize answered 400 to a body over the limit,
    where the other endpoints said 413."""
    for path in ("/oauth/authorize", "/oauth/token", "/oauth/revoke", "/oauth/register"):
        r = await oauth.http.post(path, content=b"x" * 70_000, headers={**FORM, "accept": "application/json"})
        assert r.status_code == 413, (path, r.status_code, r.text)
        assert r.json()["error"] == "invalid_request"


# -------------------------------------------------------- client authentication
async def test_confidential_client_authenticates_basic_or_post(oauth: Harness) -> None:
    client = await oauth.register(token_endpoint_auth_method="client_secret_basic")
    client_id, secret = client["client_id"], client["client_secret"]
    code, verifier = await oauth.code(client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    r = await oauth.token((client_id, "wrong"), **form)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    code, verifier = await oauth.code(client_id)
    form |= {"code": code, "code_verifier": verifier}
    r = await oauth.token((client_id, secret), **form)
    assert r.status_code == 200, r.text
    refreshed = await oauth.refresh(client_id, r.json()["refresh_token"], client_secret=secret)
    assert refreshed.status_code == 200, refreshed.text
    r = await oauth.refresh(client_id, refreshed.json()["refresh_token"])  # no secret
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_public_client_may_not_present_a_secret_and_unknown_clients_fail(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    r = await oauth.token(client_id=client_id, client_secret="guess", **form)
    assert r.status_code == 401
    r = await oauth.token(client_id="nobody", **form)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = await oauth.token(**form)
    assert r.status_code == 401


# ------------------------------------------------------------------- refresh
async def test_refresh_rotates_and_reuse_revokes_the_family(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    first = await oauth.tokens(client_id)
    r = await oauth.refresh(client_id, first["refresh_token"], resource=RESOURCE)
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert await oauth.valid(second["access_token"]) and await oauth.valid(first["access_token"])

    replay = await oauth.refresh(client_id, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # the thief's replay took the whole grant down: the legitimate client's newest tokens too
    assert not await oauth.valid(second["access_token"])
    assert not await oauth.valid(first["access_token"])
    r = await oauth.refresh(client_id, second["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # other grants of the same client are untouched
    other = await oauth.tokens(client_id)
    assert await oauth.valid(other["access_token"])


async def test_a_grant_keeps_only_its_newest_tokens(oauth: Harness) -> None:
    """Each refresh left its tokens behind (an access token kept a day past its expiry, a spent refresh token
    31 days): a client refreshing in a loop grew the store by two rows a refresh, 2,000 rows for 1,000. A
    grant keeps its newest access tokens (the new one and the one before it, for requests still carrying
    it) and its newest spent refresh tokens (their reuse still revokes the grant); older ones are unknown."""
    client_id = (await oauth.register())["client_id"]
    issued = [await oauth.tokens(client_id)]
    for _ in range(KEEP_REFRESH + 2):
        r = await oauth.refresh(client_id, issued[-1]["refresh_token"])
        assert r.status_code == 200, r.text
        issued.append(r.json())
    assert await oauth.valid(issued[-1]["access_token"]) and await oauth.valid(issued[-KEEP_ACCESS]["access_token"])
    assert not await oauth.valid(issued[-KEEP_ACCESS - 1]["access_token"])
    assert not await oauth.valid(issued[0]["access_token"])
    r = await oauth.refresh(client_id, issued[0]["refresh_token"])  # forgotten: unknown, the grant lives on
    assert r.json() == {"error": "invalid_grant", "error_description": "unknown refresh token"}
    r = await oauth.refresh(client_id, issued[-KEEP_REFRESH]["refresh_token"])  # spent and kept: a reuse
    assert r.json()["error_description"] == "refresh token already used; the grant is revoked"
    r = await oauth.refresh(client_id, issued[-1]["refresh_token"])
    assert r.json()["error"] == "invalid_grant"


async def test_refresh_may_narrow_scopes_but_not_widen_them(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id, scope="mcp admin")
    r = await oauth.token(
        grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id=client_id, code_verifier=verifier
    )
    narrowed = await oauth.refresh(client_id, r.json()["refresh_token"], scope="mcp")
    assert narrowed.json()["scope"] == "mcp"
    # the rotated refresh token keeps the original grant
    again = await oauth.refresh(client_id, narrowed.json()["refresh_token"])
    assert again.json()["scope"] == "mcp admin"
    wider = await oauth.refresh(client_id, again.json()["refresh_token"], scope="mcp admin root")
    assert wider.json()["error"] == "invalid_scope"


async def test_refresh_token_belongs_to_its_client(oauth: Harness) -> None:
    a = (await oauth.register())["client_id"]
    b = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(a)
    r = await oauth.refresh(b, tokens["refresh_token"])
    assert r.json()["error"] == "invalid_grant"
    assert (await oauth.refresh(a, tokens["refresh_token"])).status_code == 200


async def test_client_without_refresh_grant_gets_no_refresh_token(oauth: Harness) -> None:
    client_id = (await oauth.register(grant_types=["authorization_code"]))["client_id"]
    tokens = await oauth.tokens(client_id)
    assert "refresh_token" not in tokens


# -------------------------------------------------------------------- expiry
async def test_access_token_expires(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    oauth.clock.now += 899
    assert await oauth.valid(tokens["access_token"])
    oauth.clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        await oauth.server.verify(tokens["access_token"])
    # a refresh brings a new one
    r = await oauth.refresh(client_id, tokens["refresh_token"])
    assert await oauth.valid(r.json()["access_token"])


async def test_refresh_token_expires_after_thirty_days(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    oauth.clock.now += 30 * 86400 + 1
    r = await oauth.refresh(client_id, tokens["refresh_token"])
    assert r.json() == {"error": "invalid_grant", "error_description": "refresh token expired"}


async def test_ttls_are_configurable(make: Callable[..., Harness]) -> None:
    oauth = make(access_token_ttl=60)
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    assert tokens["expires_in"] == 60
    oauth.clock.now += 61
    assert not await oauth.valid(tokens["access_token"])


async def test_foreign_tokens_are_not_ours(oauth: Harness) -> None:
    assert await oauth.server.verify("omk_abc_def") is None
    assert await oauth.server.verify("eyJ.a.b") is None
    with pytest.raises(InvalidToken, match="unknown"):
        await oauth.server.verify("omat_forged")


async def test_tokens_survive_a_restart(make: Callable[..., Harness]) -> None:
    first = make()
    client_id = (await first.register())["client_id"]
    tokens = await first.tokens(client_id)
    second = make()
    assert await second.valid(tokens["access_token"])
    assert (await second.refresh(client_id, tokens["refresh_token"])).status_code == 200


async def test_a_grant_stands_for_its_streams_while_it_lives(oauth: Harness) -> None:
    """What the gate asks of a stream opened with one of our access tokens, once that expired or was
    forgotten: the grant's principal while the grant lives (not revoked, its newest refresh token
    unexpired), in either store; None once the grant, or that token, was revoked, or no refresh is left."""
    server = oauth.server

    async def granted(token: str, family: str) -> Any:
        return await server.io(server.grants.granted, token, family)

    async def family_of(token: str) -> str:
        principal = await server.verify(token)
        assert principal is not None and principal.grant is not None
        return principal.grant

    client_id = (await oauth.register())["client_id"]
    code, verifier = await oauth.code(client_id, scope="mcp admin")
    form = {"code": code, "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier}
    first = (await oauth.token(grant_type="authorization_code", **form)).json()
    family = await family_of(first["access_token"])
    oauth.clock.now += 901  # expired
    assert not await oauth.valid(first["access_token"])
    principal = await granted(first["access_token"], family)
    assert principal.id == f"oauth:{client_id}" and principal.scopes == {"mcp", "admin"}
    tokens = first
    for scope in ("mcp", "mcp"):  # two refreshes (narrowed): the first access token is forgotten
        r = await oauth.refresh(client_id, tokens["refresh_token"], scope=scope)
        assert r.status_code == 200, r.text
        tokens = r.json()
    assert not await oauth.valid(first["access_token"])
    assert (await granted(first["access_token"], family)).scopes == {"mcp", "admin"}  # the grant's scopes
    other = await oauth.tokens(client_id)  # another grant's token does not speak for this one
    assert await granted(other["access_token"], family) is None
    # revoking a token (known) ends what it opened; revoking the grant ends them all
    other_family = await family_of(other["access_token"])
    assert await granted(other["access_token"], other_family) is not None
    r = await oauth.http.post("/oauth/revoke", data={"token": other["access_token"], "client_id": client_id})
    assert r.status_code == 200
    assert await granted(other["access_token"], other_family) is None
    r = await oauth.http.post("/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id})
    assert r.status_code == 200
    assert await granted(first["access_token"], family) is None
    # no refresh left: the grant ends with its refresh token, or with its access token when it has none
    second = await oauth.tokens(client_id)
    second_family = await family_of(second["access_token"])
    assert await granted(second["access_token"], second_family) is not None
    no_refresh_id = (await oauth.register(grant_types=["authorization_code"]))["client_id"]
    bare = await oauth.tokens(no_refresh_id)
    assert await granted(bare["access_token"], await family_of(bare["access_token"])) is None
    oauth.clock.now += 30 * 86400 + 1
    assert await granted(second["access_token"], second_family) is None


# ---------------------------------------------------------------- revocation
async def test_revoking_an_access_token(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    r = await oauth.http.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": client_id})
    assert r.status_code == 200
    assert not await oauth.valid(tokens["access_token"])
    # the refresh token lives on
    assert (await oauth.refresh(client_id, tokens["refresh_token"])).status_code == 200


async def test_revoking_a_refresh_token_ends_the_grant(oauth: Harness) -> None:
    client_id = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(client_id)
    r = await oauth.http.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": client_id},
    )
    assert r.status_code == 200
    assert not await oauth.valid(tokens["access_token"])
    assert (await oauth.refresh(client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_revocation_answers_200_for_unknown_tokens_and_ignores_other_clients(oauth: Harness) -> None:
    a = (await oauth.register())["client_id"]
    b = (await oauth.register())["client_id"]
    tokens = await oauth.tokens(a)
    assert (await oauth.http.post("/oauth/revoke", data={"token": "omat_nothing", "client_id": a})).status_code == 200
    assert (await oauth.http.post("/oauth/revoke", data={"token": "whatever"})).status_code == 200
    r = await oauth.http.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": b})
    assert r.status_code == 200
    assert await oauth.valid(tokens["access_token"])
    r = await oauth.http.post("/oauth/revoke", data={"client_id": a})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# ------------------------------------------------------------- consent page
async def consent_form(oauth: Harness, client_id: str, challenge: str) -> tuple[dict[str, str], httpx.Response]:
    r = await oauth.authorize(client_id, challenge, scope="mcp admin")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"
    page = r.text
    fields = {name: page.split(f'name={name} value="', 1)[1].split('"', 1)[0] for name in ("request_id", "csrf")}
    return fields, r


async def test_consent_page_approve(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register(client_name="Claude <script>"))["client_id"]
    verifier, challenge = pkce()
    fields, page = await consent_form(oauth, client_id, challenge)
    assert "Claude &lt;script&gt;" in page.text and "<script>" not in page.text
    assert "<code>admin</code>" in page.text and "127.0.0.1:5173" in page.text
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "approve"})  # cookie kept by the client
    assert r.status_code == 303
    got = query(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT) and got["state"] == "st4te" and got["iss"] == ISSUER
    token = await oauth.token(
        grant_type="authorization_code",
        code=got["code"],
        redirect_uri=REDIRECT,
        client_id=client_id,
        code_verifier=verifier,
    )
    assert token.json()["scope"] == "mcp admin"
    # one answer per page
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert r.status_code == 400


async def test_consent_page_deny(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "deny"})
    assert r.status_code == 303
    got = query(r.headers["location"])
    assert got["error"] == "access_denied" and got["state"] == "st4te" and "code" not in got


async def test_consent_needs_the_csrf_token_and_the_cookie(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    r = await oauth.http.post("/oauth/authorize", data={**fields, "csrf": "forged", "decision": "approve"})
    assert r.status_code == 400 and "location" not in r.headers
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    oauth.http.cookies.clear()  # a cross-site form post arrives without the SameSite=Strict cookie
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert r.status_code == 400 and "location" not in r.headers
    r = await oauth.http.post("/oauth/authorize", data={"request_id": "made-up", "csrf": "x", "decision": "approve"})
    assert r.status_code == 400


async def test_consent_page_expires(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    oauth.clock.now += 601
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert r.status_code == 400


async def test_a_flood_of_authorization_requests_cannot_cancel_or_block_the_operators_page(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unauthenticated GETs of /oauth/authorize used to evict the oldest pending consent (the operator's)
    at 1,000. Now one address holds at most PER_SOURCE pages, the table PENDING_LIMIT, and a request
    beyond either is a 429 with Retry-After: a page already shown is never dropped (both stores)."""
    for module in (authorize_module, shared_state):  # small bounds, the same rules
        monkeypatch.setattr(module, "PER_SOURCE", 5)
        monkeypatch.setattr(module, "PENDING_LIMIT", 12)
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])  # the operator's page, from 127.0.0.1

    def at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=oauth.server.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=ISSUER)

    flooders = [Harness(oauth.server, at(f"203.0.113.{n}"), oauth.clock) for n in range(3)]
    challenge = pkce()[1]
    statuses = [(await flooders[0].authorize(client_id, challenge)).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    refused = await flooders[0].http.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT}
        | {"code_challenge": challenge, "code_challenge_method": "S256"},
        headers={"accept": "application/json"},
    )
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "temporarily_unavailable"
    assert "authorization requests from this address" in refused.json()["error_description"]
    # other addresses fill the rest (1 + 5 + 5 + 1 = 12); then the table is full for everyone, said so
    assert [(await f.authorize(client_id, challenge)).status_code for f in flooders[1:] for _ in range(5)] == [
        200
    ] * 6 + [429] * 4
    full = await oauth.authorize(client_id, challenge)
    assert full.status_code == 429 and "authorization requests" in full.text and "retry-after" in full.headers
    r = await approve(oauth, fields)  # the operator's page, shown before the flood, still answers
    assert r.status_code == 303 and "code" in query(r.headers["location"])
    for flooder in flooders:
        await flooder.http.aclose()


# ------------------------------------------------ consent page: the operator key
def operator_cookie(oauth: Harness) -> Cookie | None:
    return next((c for c in oauth.http.cookies.jar if c.name == "onemcp_operator"), None)


def send_operator_cookie(oauth: Harness, value: str, like: Cookie) -> None:
    """The browser's operator cookie set to `value` (as its user could), where `like` was."""
    for cookie in [c for c in oauth.http.cookies.jar if c.name == "onemcp_operator"]:
        oauth.http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
    oauth.http.cookies.set("onemcp_operator", value, domain=like.domain, path=like.path)


def browser(oauth: Harness, base_url: str = ISSUER) -> Harness:
    """Another browser (its own cookies) on the same server."""
    return Harness(
        oauth.server,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=oauth.server.app), base_url=base_url),
        oauth.clock,
    )


async def approve(oauth: Harness, fields: dict[str, str], **extra: str) -> httpx.Response:
    return await oauth.http.post("/oauth/authorize", data={**fields, "decision": "approve", **extra})


def fields_of(page: httpx.Response) -> dict[str, str]:
    return {name: page.text.split(f'name={name} value="', 1)[1].split('"', 1)[0] for name in ("request_id", "csrf")}


async def form_and_key(oauth: Harness, keys: KeyStore) -> tuple[str, str, dict[str, str]]:
    """An admin key, a registered client, and the consent form its authorization request shows."""
    admin = keys.create("laptop", ["admin"])
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    return admin, client_id, fields


async def approved_with_key(oauth: Harness, keys: KeyStore) -> tuple[str, str]:
    """One consent approved with a typed admin key (the browser now holds the operator cookie)."""
    admin, client_id, fields = await form_and_key(oauth, keys)
    assert (await approve(oauth, fields, operator_key=admin)).status_code == 303
    return admin, client_id


@pytest.fixture
def keyed(make: Callable[..., Harness], tmp_path: Path) -> tuple[Harness, KeyStore]:
    """A consent-page server with operator policy "key" (on a host name: a loopback issuer sets no operator
    cookie); its keys are keys.db beside oauth.db."""
    return make(consent="page", operator="key", issuer="http://hub.example"), KeyStore(tmp_path / "keys.db")


async def test_loopback_operator_policy_asks_no_key(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, page = await consent_form(oauth, client_id, pkce()[1])
    assert "operator_key" not in page.text
    assert (await approve(oauth, fields)).status_code == 303


async def test_auto_consent_asks_no_operator_key(make: Callable[..., Harness]) -> None:
    oauth = make(consent="auto", operator="key")
    client_id = (await oauth.register())["client_id"]
    assert (await oauth.tokens(client_id))["access_token"]


async def test_operator_key_is_needed_to_approve(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    user = keys.create("user", ["mcp"])
    revoked = keys.create("old admin", ["admin"])
    assert keys.revoke(revoked.split("_")[1])
    expired = keys.create("stale admin", ["admin"], expires=time.time() - 1)
    client_id = (await oauth.register())["client_id"]
    verifier, challenge = pkce()
    fields, page = await consent_form(oauth, client_id, challenge)
    assert "type=password name=operator_key" in page.text
    refused: list[dict[str, str]] = [
        {},
        {"operator_key": "omk_123456789abc_not-the-secret"},
        {"operator_key": "not even a key"},
        {"operator_key": user},
    ]
    for left, extra in zip(range(4, 0, -1), refused, strict=True):
        r = await approve(oauth, fields, **extra)
        assert r.status_code == 403 and "location" not in r.headers, extra
        assert "operator_key" in r.text and f"Attempts left: {left}." in r.text
        again = fields_of(r)  # the same request, answerable again, with a fresh CSRF token
        assert again["request_id"] == fields["request_id"] and again["csrf"] != fields["csrf"]
        fields = again
    admin = keys.create("operator", ["admin"])
    r = await approve(oauth, fields, operator_key=revoked)
    assert r.status_code == 403  # the fifth refusal ends the request
    assert "cancelled" in r.text and "operator_key" not in r.text
    assert (await approve(oauth, fields, operator_key=admin)).status_code == 400

    fields, _ = await consent_form(oauth, client_id, challenge)
    r = await approve(oauth, fields, operator_key=expired)
    assert r.status_code == 403 and "Attempts left: 4." in r.text
    fields = fields_of(r)
    r = await approve(oauth, fields, operator_key=admin)
    assert r.status_code == 303
    got = query(r.headers["location"])
    token = await oauth.token(
        grant_type="authorization_code",
        code=got["code"],
        redirect_uri=REDIRECT,
        client_id=client_id,
        code_verifier=verifier,
    )
    assert token.status_code == 200 and token.json()["scope"] == "mcp admin"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("onemcp_operator="))
    assert "Max-Age=43200" in cookie and "Path=/oauth/authorize" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert admin.split("_", 2)[2] not in cookie  # omk_<id>_<secret>: the secret is never in it


async def test_admin_held_through_a_role_may_approve(tmp_path: Path, state: str | None) -> None:
    """The operator check resolves roles as the gate does everywhere: a key made with `--role boss`
    (boss = admin) approves, typed or remembered by its cookie; one whose role grants `operator` does not."""
    settings = AuthSettings.model_validate(
        {
            "apiKeys": True,
            "oauth": True,
            "oauthOperator": "key",
            "publicUrl": "http://hub.example/mcp",  # not loopback: the operator cookie is set
            "roles": {"boss": {"scopes": ["admin"]}, "viewer": {"scopes": ["operator"]}},
        }
    )
    gate = Gate(settings, tmp_path, None, shared_store=state)
    assert gate.keys is not None
    boss, viewer = gate.keys.create("boss", ["role:boss"]), gate.keys.create("viewer", ["role:viewer"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate.oauth.app), base_url="http://hub.example") as h:
        oauth = Harness(gate.oauth, h, Clock(NOW))
        client_id = (await oauth.register())["client_id"]
        fields, _ = await consent_form(oauth, client_id, pkce()[1])
        refused = await approve(oauth, fields, operator_key=viewer)
        assert refused.status_code == 403 and "Attempts left: 4." in refused.text
        approved = await approve(oauth, fields_of(refused), operator_key=boss)
        assert approved.status_code == 303 and "code" in query(approved.headers["location"]), approved.text
        fields, page = await consent_form(oauth, client_id, pkce()[1])  # the browser remembers the boss key
        assert "operator_key" not in page.text and "<code>boss</code>" in page.text
        assert (await approve(oauth, fields)).status_code == 303
    gate.oauth.close()


async def test_an_old_csrf_token_does_not_outlive_a_refusal(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    admin = keys.create("operator", ["admin"])
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    assert (await approve(oauth, fields, operator_key="omk_x_y")).status_code == 403
    r = await approve(oauth, fields, operator_key=admin)  # the page shown before the refusal
    assert r.status_code == 400 and "location" not in r.headers


async def test_deny_needs_no_operator_key(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, _ = keyed
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    r = await oauth.http.post("/oauth/authorize", data={**fields, "decision": "deny"})
    assert r.status_code == 303
    assert query(r.headers["location"])["error"] == "access_denied"


async def test_operator_cookie_skips_the_key_in_the_same_browser_only(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    _admin, client_id = await approved_with_key(oauth, keys)
    # the same browser: no key field, the page names the key, and approving needs nothing more
    fields, page = await consent_form(oauth, client_id, pkce()[1])
    assert "operator_key" not in page.text and "<code>laptop</code>" in page.text
    r = await approve(oauth, fields)
    assert r.status_code == 303 and "code" in query(r.headers["location"])
    assert not any(v.startswith("onemcp_operator=") for v in r.headers.get_list("set-cookie"))
    # another browser
    other = browser(oauth)
    async with other.http:
        fields, page = await consent_form(other, client_id, pkce()[1])
        assert "operator_key" in page.text
        assert (await approve(other, fields)).status_code == 403


async def test_operator_cookie_lasts_twelve_hours(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    _admin, client_id = await approved_with_key(oauth, keys)
    oauth.clock.now += 12 * 3600 + 1
    _fields, page = await consent_form(oauth, client_id, pkce()[1])
    assert "operator_key" in page.text
    assert operator_cookie(oauth) is None  # the page cleared the stale cookie


async def test_tampered_operator_cookie_is_refused(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    _admin, client_id = await approved_with_key(oauth, keys)
    genuine = operator_cookie(oauth)
    assert genuine is not None and genuine.value is not None
    key_id, expires, mac = genuine.value.split(".")
    forgeries = [
        f"{keys.create('user', ['mcp']).split('_')[1]}.{expires}.{mac}",  # another key's id
        f"{key_id}.{int(expires) + 86400}.{mac}",  # a longer life
        f"{key_id}.{expires}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # a changed MAC
        "garbage",
    ]
    with audit_lines() as lines:
        for forged in forgeries:
            send_operator_cookie(oauth, forged, like=genuine)
            fields, page = await consent_form(oauth, client_id, pkce()[1])
            assert "operator_key" in page.text and operator_cookie(oauth) is None, forged  # asked; cleared
            send_operator_cookie(oauth, forged, like=genuine)  # and sent anyway
            r = await approve(oauth, fields)
            assert r.status_code == 403 and "location" not in r.headers, forged
    assert sum("operator cookie is not genuine" in line for line in lines) == len(forgeries)


async def test_operator_cookie_of_a_revoked_key_is_refused(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    admin, client_id = await approved_with_key(oauth, keys)
    cookie = operator_cookie(oauth)
    assert cookie is not None and cookie.value is not None
    assert keys.revoke(admin.split("_")[1])
    fields, page = await consent_form(oauth, client_id, pkce()[1])
    assert "operator_key" in page.text and operator_cookie(oauth) is None  # shown the field; cookie cleared
    send_operator_cookie(oauth, cookie.value, like=cookie)  # sent anyway
    with audit_lines() as lines:
        r = await approve(oauth, fields)
    assert r.status_code == 403 and "location" not in r.headers
    assert any("auth denied" in line and "revoked" in line for line in lines)


async def test_operator_decisions_are_audited_without_the_key(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    admin = keys.create("laptop", ["admin"])
    wrong = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    with audit_lines() as lines:
        r = await approve(oauth, fields, operator_key=wrong)
        assert r.status_code == 403
        assert (await approve(oauth, fields_of(r), operator_key=admin)).status_code == 303
    key_id = admin.split("_")[1]
    assert any("auth denied" in line and "unknown API key" in line and "refused=1/5" in line for line in lines)
    assert any("auth allowed" in line and f"operator=key:{key_id}" in line for line in lines)
    assert any("oauth consent given" in line and f"operator=key:{key_id}" in line for line in lines)
    secrets_seen = [line for line in lines if admin.split("_", 2)[2] in line or wrong.split("_", 2)[2] in line]
    assert secrets_seen == []


async def test_operator_cookie_is_secure_over_https(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    admin = keys.create("laptop", ["admin"])
    client_id = (await oauth.register())["client_id"]
    secure = browser(oauth, "https://127.0.0.1:9")
    async with secure.http:
        fields, page = await consent_form(secure, client_id, pkce()[1])
        assert "; Secure" in page.headers["set-cookie"]
        r = await approve(secure, fields, operator_key=admin)
        assert r.status_code == 303
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("onemcp_operator="))
        assert "; Secure" in cookie


# ------------------------------------------------- client metadata documents
@asynccontextmanager
async def serving(factory: Callable[[str], Any]) -> AsyncIterator[str]:
    """Serve the ASGI app `factory(base_url)` on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(factory(base), lifespan="off", log_level="warning", access_log=False))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            try:
                yield base
            finally:
                server.should_exit = True
    finally:
        sock.close()


def documents(docs: dict[str, Callable[[str], Any]]) -> Callable[[str], Any]:
    """An app serving JSON documents by path; each is built from the server's own base URL."""

    def factory(base: str) -> Any:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            build = docs.get(scope["path"])
            if build is None:
                await send_json(send, 404, {})
            else:
                await send_json(send, 200, build(base))

        return app

    return factory


CIMD = documents(
    {
        "/client.json": lambda base: {
            "client_id": f"{base}/client.json",
            "client_name": "Metadata Client",
            "redirect_uris": [REDIRECT],
        },
        "/liar.json": lambda base: {"client_id": "https://someone.else/client.json", "redirect_uris": [REDIRECT]},
        "/secret.json": lambda base: {
            "client_id": f"{base}/secret.json",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    }
)


async def test_metadata_document_client_runs_the_flow(make: Callable[..., Harness]) -> None:
    oauth = make(allow_insecure_loopback_metadata=True)
    async with serving(CIMD) as base:
        client_id = f"{base}/client.json"
        tokens = await oauth.tokens(client_id)
        principal = await oauth.server.verify(tokens["access_token"])
        assert principal is not None and principal.id == f"oauth:{client_id}"
        r = await oauth.refresh(client_id, tokens["refresh_token"])
        assert r.status_code == 200


async def test_metadata_document_consent_names_the_document(make: Callable[..., Harness]) -> None:
    oauth = make(allow_insecure_loopback_metadata=True, consent="page")
    async with serving(CIMD) as base:
        _, page = await consent_form(oauth, f"{base}/client.json", pkce()[1])
        assert "Metadata Client" in page.text and f"{base}/client.json" in page.text


@pytest.mark.parametrize("path", ["/liar.json", "/secret.json", "/missing.json"])
async def test_bad_metadata_documents_are_refused(make: Callable[..., Harness], path: str) -> None:
    oauth = make(allow_insecure_loopback_metadata=True)
    async with serving(CIMD) as base:
        r = await oauth.authorize(f"{base}{path}", pkce()[1])
        assert r.status_code == 400 and "location" not in r.headers


async def test_metadata_document_redirect_uris_are_enforced(make: Callable[..., Harness]) -> None:
    oauth = make(allow_insecure_loopback_metadata=True)
    async with serving(CIMD) as base:
        r = await oauth.authorize(f"{base}/client.json", pkce()[1], redirect_uri="https://evil.example/cb")
        assert r.status_code == 400 and "location" not in r.headers


async def test_insecure_metadata_urls_need_the_flag(oauth: Harness) -> None:
    async with serving(CIMD) as base:
        r = await oauth.authorize(f"{base}/client.json", pkce()[1])
        assert r.status_code == 400 and "unknown client_id" in r.text


@pytest.mark.parametrize(
    "client_id",
    [
        "https://10.0.0.1/client.json",
        "https://127.0.0.1/client.json",
        "https://localhost/client.json",
        "https://[::1]/client.json",
        "https://app.example/",
        "https://app.example",
        "https://app.example/a/../client.json",
        "https://user@app.example/client.json",
    ],
)
async def test_metadata_urls_that_are_never_fetched(oauth: Harness, client_id: str) -> None:
    r = await oauth.authorize(client_id, pkce()[1])
    assert r.status_code == 400 and "location" not in r.headers
    assert "client_id URL" in r.text  # refused for its shape, before any fetch


# ---------------------------------------------------------- the SDK's client
async def test_mcp_sdk_oauth_client_provider(tmp_path: Path) -> None:
    """The SDK's `OAuthClientProvider` discovers (RFC 9728 then RFC 8414), registers (RFC 7591), authorizes
    with PKCE, exchanges the code, and retries with the token, against a minimal protected resource."""
    import httpx2
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    from support.oauth import MemoryTokenStorage

    servers: list[OAuthServer] = []

    def hub(base: str) -> Any:
        """The OAuth server, plus a stand-in protected resource at /mcp (the real one is the hub's gate)."""
        oauth = OAuthServer(tmp_path / "oauth.db", base, f"{base}/mcp", scopes_supported=["mcp"], consent="auto")
        servers.append(oauth)
        prm_url = f"{base}/.well-known/oauth-protected-resource/mcp"

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            if scope["path"] == "/.well-known/oauth-protected-resource/mcp":
                prm = {"resource": f"{base}/mcp", "authorization_servers": [base], "scopes_supported": ["mcp"]}
                await send_json(send, 200, prm)
            elif scope["path"] == "/mcp":
                auth = dict(scope["headers"]).get(b"authorization", b"").decode()
                principal = None
                if auth.startswith("Bearer "):
                    try:
                        principal = await oauth.verify(auth[7:])
                    except InvalidToken:
                        principal = None
                if principal is None:
                    challenge = f'Bearer resource_metadata="{prm_url}", scope="mcp"'.encode()
                    await send_json(send, 401, {"error": "unauthorized"}, [(b"www-authenticate", challenge)])
                else:
                    await send_json(send, 200, {"principal": principal.id, "scopes": sorted(principal.scopes)})
            else:
                await oauth.app(scope, receive, send)

        return app

    async with serving(hub) as base:
        got: dict[str, str] = {}
        visits: list[str] = []

        async def redirect_handler(url: str) -> None:
            # the "browser": consent is automatic, so the authorization endpoint answers with the redirect
            visits.append(url)
            async with httpx.AsyncClient() as browser:
                r = await browser.get(url)
            assert r.status_code == 302, r.text
            got.update(query(r.headers["location"]))

        async def callback_handler() -> AuthorizationCodeResult:
            return AuthorizationCodeResult(code=got["code"], state=got["state"], iss=got.get("iss"))

        storage = MemoryTokenStorage()
        provider = OAuthClientProvider(
            server_url=f"{base}/mcp",
            client_metadata=OAuthClientMetadata(
                client_name="sdk test", redirect_uris=["http://127.0.0.1:33418/callback"]
            ),
            storage=storage,
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        async with httpx2.AsyncClient(auth=provider, timeout=10) as client:
            r = await client.get(f"{base}/mcp")
        assert r.status_code == 200, r.text
        assert storage.client is not None and storage.tokens is not None
        assert r.json() == {"principal": f"oauth:{storage.client.client_id}", "scopes": ["mcp"]}
        assert storage.tokens.refresh_token is not None and storage.tokens.scope == "mcp"
        assert got["iss"] == base
        assert "code_challenge_method=S256" in visits[0] and "resource=" in visits[0]

        # The SDK refreshes when its own clock says the token expired; make it say so, then use it again:
        # it must take the rotated refresh token, and never go back to the browser.
        first = storage.tokens
        provider.context.token_expiry_time = 1.0  # (0 would read as "no expiry")
        async with httpx2.AsyncClient(auth=provider, timeout=10) as client:
            r = await client.get(f"{base}/mcp")
        assert r.status_code == 200, r.text
        assert storage.tokens is not None
        assert storage.tokens.access_token != first.access_token
        assert storage.tokens.refresh_token not in (None, first.refresh_token)
        assert len(visits) == 1
        # replaying the spent refresh token revokes the SDK's current grant
        registered = storage.client
        assert registered.client_secret is not None  # no auth method asked for: RFC 7591's client_secret_basic
        async with httpx.AsyncClient(base_url=base) as thief:
            form = {"grant_type": "refresh_token", "refresh_token": first.refresh_token or ""}
            replay = await thief.post("/oauth/token", data=form, auth=(registered.client_id, registered.client_secret))
        assert replay.json()["error"] == "invalid_grant"
        with pytest.raises(InvalidToken, match="revoked"):
            await servers[0].verify(storage.tokens.access_token)
    for server in servers:
        server.close()


# ------------------------------------------------------------------ findings of the review of the operator check
async def test_a_loopback_issuer_sets_no_operator_cookie(make: Callable[..., Harness], tmp_path: Path) -> None:
    """On a loopback host the cookie would reach every port of it (other local servers too): key every time."""
    oauth = make(consent="page", operator="key")
    admin = KeyStore(tmp_path / "keys.db").create("laptop", ["admin"])
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    assert (await approve(oauth, fields, operator_key=admin)).status_code == 303
    assert operator_cookie(oauth) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "same-site"},  # another port of this host, or a sibling subdomain
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://hub.example:9999"},
        {"origin": "null"},  # a sandboxed or opaque origin, not vouched for by Fetch metadata
    ],
)
async def test_a_consent_posted_from_another_origin_is_refused(
    keyed: tuple[Harness, KeyStore], headers: dict[str, str]
) -> None:
    oauth, keys = keyed
    admin, _client_id, fields = await form_and_key(oauth, keys)
    data = {**fields, "decision": "approve", "operator_key": admin}
    r = await oauth.http.post("/oauth/authorize", data=data, headers=headers)
    assert r.status_code == 400 and "location" not in r.headers and "another site" in r.text
    again = await oauth.http.post("/oauth/authorize", data=data)  # the request is gone, not retryable
    assert again.status_code == 400 and "location" not in again.headers


async def test_a_consent_posted_from_its_own_page_passes(keyed: tuple[Harness, KeyStore]) -> None:
    oauth, keys = keyed
    admin, _client_id, fields = await form_and_key(oauth, keys)
    own = {"sec-fetch-site": "same-origin", "origin": "http://hub.example"}
    data = {**fields, "decision": "approve", "operator_key": admin}
    assert (await oauth.http.post("/oauth/authorize", data=data, headers=own)).status_code == 303


async def test_loopback_policy_refuses_approvals_through_a_proxy(make: Callable[..., Harness]) -> None:
    oauth = make(consent="page")
    client_id = (await oauth.register())["client_id"]
    fields, _ = await consent_form(oauth, client_id, pkce()[1])
    r = await oauth.http.post(
        "/oauth/authorize", data={**fields, "decision": "approve"}, headers={"x-forwarded-for": "203.0.113.9"}
    )
    assert r.status_code == 400 and "location" not in r.headers and "oauthOperator" in r.text


async def test_an_unreadable_key_store_refuses_rather_than_fails(
    keyed: tuple[Harness, KeyStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    oauth, keys = keyed
    admin, _client_id, fields = await form_and_key(oauth, keys)
    checker = oauth.server.operators
    assert checker is not None

    async def broken(key: str) -> None:
        raise sqlite3.DatabaseError("file is not a database")  # a corrupt keys.db, a disk error

    monkeypatch.setattr(checker.keys, "verify", broken)
    with audit_lines() as lines:
        r = await approve(oauth, fields, operator_key=admin)
    assert r.status_code == 403 and "location" not in r.headers
    assert any("the key store cannot be read" in line for line in lines)


@pytest.mark.parametrize("uri", ["https://app.example/cb\x00", "https://app.example/c b", "https://app.example/\\cb"])
async def test_redirect_uris_with_control_characters_are_refused(oauth: Harness, uri: str) -> None:
    r = await oauth.http.post("/oauth/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri"


# ------------------------------------------------ replicas sharing one Redis
def replica(server: OAuthServer, browser_of: Harness) -> Harness:
    """`server` reached by the same browser (its cookies) as `browser_of`: a load balancer's next pick."""
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app),
        base_url=str(browser_of.http.base_url),
        cookies=browser_of.http.cookies.jar,
    )
    return Harness(server, http, browser_of.clock)


@NEEDS_REDIS
async def test_replicas_sharing_redis_honour_each_others_clients_pages_codes_tokens_and_revocations(
    shared_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush(shared_redis)
    keys = KeyStore(tmp_path / "keys.db")  # one key store for both (as RedisKeyStore is across replicas)
    options: dict[str, Any] = {"scopes_supported": ["mcp", "admin"], "consent": "page", "operator": "key"}
    clock = Clock(NOW)
    issuer = "http://hub.example"  # not loopback: the operator cookie is set
    a = OAuthServer(
        tmp_path / "a" / "oauth.db", issuer, f"{issuer}/mcp", keys=keys, clock=clock, shared=shared_redis, **options
    )
    b = OAuthServer(
        tmp_path / "b" / "oauth.db", issuer, f"{issuer}/mcp", keys=keys, clock=clock, shared=shared_redis, **options
    )
    on_a = Harness(a, httpx.AsyncClient(transport=httpx.ASGITransport(app=a.app), base_url=issuer), clock)
    on_b = replica(b, on_a)
    try:
        client_id = (await on_a.register())["client_id"]  # registered through A
        verifier, challenge = pkce()
        r = await on_b.authorize(client_id, challenge, scope="mcp admin")  # B knows the client
        assert r.status_code == 200 and "operator_key" in r.text
        fields = fields_of(r)
        admin = keys.create("operator", ["admin"])
        r = await approve(on_a, fields, operator_key=admin)  # the page B showed, answered on A
        assert r.status_code == 303, r.text
        assert operator_cookie(on_a) is not None
        code = query(r.headers["location"])["code"]
        exchange = {"code": code, "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier}
        r = await on_b.token(grant_type="authorization_code", **exchange)  # A's code, redeemed on B
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert await on_a.valid(tokens["access_token"]) and await on_b.valid(tokens["access_token"])
        r = await on_a.token(grant_type="authorization_code", **exchange)  # replayed on A: the grant dies
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        assert not await on_a.valid(tokens["access_token"])  # at once where it happened
        assert await on_b.valid(tokens["access_token"])  # B checked it less than VERIFY_CACHE_SECONDS ago
        monkeypatch.setattr(shared_state, "VERIFY_CACHE_SECONDS", 0.0)  # ... that long passed
        assert not await on_b.valid(tokens["access_token"])

        # a second authorization, approved on B by the cookie A set (the replicas share its key)
        verifier, challenge = pkce()
        r = await on_b.authorize(client_id, challenge, scope="mcp")
        assert r.status_code == 200 and "Approving as the operator key" in r.text
        r = await approve(on_b, fields_of(r))
        assert r.status_code == 303, r.text
        code = query(r.headers["location"])["code"]
        exchange = {"code": code, "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier}
        tokens = (await on_a.token(grant_type="authorization_code", **exchange)).json()
        fresh = (await on_b.refresh(client_id, tokens["refresh_token"])).json()  # A's refresh token, rotated on B
        assert await on_a.valid(fresh["access_token"])
        r = await on_a.refresh(client_id, tokens["refresh_token"])  # the spent one again, on A
        assert r.status_code == 400 and "already used" in r.json()["error_description"]
        assert not await on_b.valid(fresh["access_token"])  # the whole family, on every replica
    finally:
        for harness in (on_a, on_b):
            await harness.http.aclose()
        a.close()
        b.close()


class _Later:
    """The `time` module as the shared store sees it, `ahead` seconds later on the monotonic clock."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


@NEEDS_REDIS
async def test_without_redis_the_server_answers_503_and_only_tokens_checked_lately_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Redis cannot be reached, the endpoints answer 503; an access token this replica checked in
    Redis within auth.redisOutageGrace still verifies (a refresh tried meanwhile does not end that), and
    any other is `Unconfirmed` (the gate's 503, not 401), as is that one once the grace is over."""
    with redis_server() as url:
        server = OAuthServer(
            tmp_path / "oauth.db",
            ISSUER,
            RESOURCE,
            scopes_supported=["mcp"],
            consent="auto",
            shared=url,
            outage_grace=30,
        )
        oauth = Harness(
            server, httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER), Clock(NOW)
        )
        client_id = (await oauth.register())["client_id"]
        tokens, unchecked = await oauth.tokens(client_id), await oauth.tokens(client_id)
        assert await oauth.valid(tokens["access_token"])
    try:  # redis-server stopped
        r = await oauth.http.post(
            "/oauth/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
        assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
        r = await oauth.refresh(client_id, tokens["refresh_token"])
        assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
        monkeypatch.setattr(shared_state, "VERIFY_CACHE_SECONDS", 0.0)  # every token is asked of Redis again
        assert await server.verify(tokens["access_token"]) is not None
        with pytest.raises(Unconfirmed, match="cannot be reached"):
            await server.verify(unchecked["access_token"])
        monkeypatch.setattr(shared_state, "time", _Later(31))
        with pytest.raises(Unconfirmed, match="cannot be reached"):
            await server.verify(tokens["access_token"])
        r = await oauth.authorize(client_id, pkce()[1])
        assert r.status_code == 503
    finally:
        await oauth.http.aclose()
        server.close()


async def test_a_flood_of_registrations_makes_room_from_clients_that_never_got_a_code(
    oauth: Harness, monkeypatch: pytest.MonkeyPatch, state: str | None
) -> None:
    """Anyone may register: at the cap, the oldest client that never got a code gives way (not a used one),
    over SQLite and over Redis alike (with Redis a flood used to close registration for good)."""
    monkeypatch.setattr(directory_module, "MAX_CLIENTS", 3)
    used = (await oauth.register())["client_id"]
    await oauth.tokens(used)
    idle = [(await oauth.register())["client_id"] for _ in range(2)]
    r = await oauth.http.post(
        "/oauth/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    )
    assert r.status_code == 400 and "registers no more clients" in r.text  # all three are young
    oauth.clock.now += directory_module.UNUSED_CLIENT_AGE + 1
    newer = [(await oauth.register())["client_id"] for _ in range(2)]  # each pushes out one idle client
    assert oauth.server.store.client(used) is not None
    assert all(oauth.server.store.client(c) is None for c in idle)
    assert all(oauth.server.store.client(c) is not None for c in newer)
    oauth.clock.now += 86400 * 2
    oauth.server.store.purge(oauth.clock.now)  # a day after, unused registrations are forgotten anyway
    if isinstance(oauth.server.store, OAuthStore):
        assert await oauth.server.store.writes.flush()  # (on the file's writer thread)
    assert all(oauth.server.store.client(c) is None for c in newer) and oauth.server.store.client(used) is not None


async def test_clients_registered_before_redis_indexed_unused_ones_give_way_too(
    make: Callable[..., Harness], state: str | None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Clients a Redis store registered before it indexed the unused ones (`clients:unused`) were never
    evicted nor forgotten: the first eviction after the upgrade indexes those that never got a code."""
    if state is None:
        pytest.skip("SQLite finds unused clients by query: it has no index to miss")
    raw = redis.Redis.from_url(state)
    request.addfinalizer(raw.close)
    monkeypatch.setattr(directory_module, "MAX_CLIENTS", 3)
    before = make()  # a replica of before the index
    used = (await before.register())["client_id"]
    await before.tokens(used)
    coded = (await before.register())["client_id"]  # a code it has not redeemed yet
    assert (await before.authorize(coded, pkce()[1])).status_code == 302
    idle = (await before.register())["client_id"]
    raw.delete(shared_state.UNUSED, shared_state.INDEXED)  # as that store left them
    oauth = make()  # upgraded
    oauth.clock.now += directory_module.UNUSED_CLIENT_AGE + 1
    register = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    r = await oauth.http.post("/oauth/register", json=register)
    assert r.status_code == 201, r.text  # the idle one gave way
    store = oauth.server.store
    assert store.client(idle) is None
    assert store.client(used) is not None and store.client(coded) is not None
    r = await oauth.http.post("/oauth/register", json=register)
    assert r.status_code == 400  # the new one is young, the others got a code: none gives way
    assert raw.zscore(shared_state.UNUSED, used) is None and raw.zscore(shared_state.UNUSED, coded) is None
    # done once per Redis: another replica does not scan again (an entry it would have found stays out)
    raw.sadd("onemcp:oauth:clients:dcr", "unindexed")
    assert make().server.store.evict_unused_client(oauth.clock.now - 1) is False
    assert raw.zscore(shared_state.UNUSED, "unindexed") is None


@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/client.json",  # 127.0.0.1 as one number
        "https://0x7f000001/client.json",
        "https://127.1/client.json",
        "https://0177.0.0.1/client.json",  # octal: httpx would not even parse it (it was a 500)
        "https://0/client.json",
    ],
)
def test_a_metadata_document_url_naming_an_address_another_way_is_refused(url: str) -> None:
    from onemcp.auth.server.clients import metadata_url_problem

    assert metadata_url_problem(url, allow_insecure_loopback=False) == (
        "a client_id URL names its host by name or as a dotted IPv4 address"
    )
    assert metadata_url_problem("https://client.example/meta.json", allow_insecure_loopback=False) is None


@pytest.mark.parametrize(
    ("resolved", "said"),
    [
        (["10.0.0.5"], "its host resolves to no public address"),
        (["93.184.215.14", "127.0.0.1"], "its host resolves to no public address"),
        ([], "its host resolves to no public address"),  # (no such name: said the same way)
        (["93.184.215.14"], "the document fetched"),
    ],
)
async def test_a_metadata_document_is_fetched_only_from_a_host_that_resolves_publicly(
    oauth: Harness, monkeypatch: pytest.MonkeyPatch, resolved: list[str], said: str
) -> None:
    """Anyone can make the hub fetch a client_id URL (a GET /oauth/authorize, a link or an <img> on any web
    page): an address written as an IP was refused when private, but a name was fetched wherever it
    resolved, so `https://intranet.corp/x` reached the hub's own network, and the error said whether it
    answered (HTTP 404), did not resolve or was no JSON: a map of it for anyone who can reach the hub."""
    from onemcp.auth.server import clients

    fetched: list[str] = []

    async def addresses(host: str, port: int, *_: Any) -> list[str]:
        assert (host, port) == ("intranet.example", 443)
        return resolved

    async def fetch(url: str, **_: Any) -> bytes:
        fetched.append(url)
        return b"the document fetched"

    monkeypatch.setattr(clients, "addresses", addresses)
    monkeypatch.setattr(clients, "fetch", fetch)
    url = "https://intranet.example/client.json"
    r = await oauth.authorize(url, pkce()[1])
    assert r.status_code == 400
    if said == "the document fetched":
        assert fetched == [url] and "is not JSON" in r.text
    else:
        assert fetched == [] and said in r.text, r.text


@pytest.mark.parametrize("host", ["\u2603-.example", "a\u200db.example"])
async def test_a_metadata_document_host_that_is_no_dns_name_is_refused_not_a_500(
    oauth: Harness, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """A client_id host that cannot be written as a DNS name (IDNA refuses it: a label ending in a hyphen,
    a joiner) made the resolution raise `idna.IDNAError`, not OSError: a 500 to anyone who sends the link."""
    from onemcp.auth.server import clients

    fetched: list[str] = []

    async def fetch(url: str, **_: Any) -> bytes:
        fetched.append(url)
        return b"{}"

    monkeypatch.setattr(clients, "fetch", fetch)
    r = await oauth.authorize(f"https://{host}/client.json", pkce()[1])
    assert r.status_code == 400, r.text
    assert "its host resolves to no public address" in r.text and fetched == []


async def test_a_metadata_document_host_whose_resolution_does_not_end_is_refused_within_the_deadline(
    oauth: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """METADATA_TIMEOUT bounds the whole fetch: a name whose servers never answer (anyone can make the
    hub resolve one) is refused then, not waited on for as long as the resolver tries."""
    from onemcp.auth.server import clients, lookup

    answer = threading.Event()

    def system_lookup(host: str, port: int) -> list[str]:
        answer.wait(10)
        return ["93.184.215.14"]

    monkeypatch.setattr(clients, "METADATA_TIMEOUT", 0.01)
    monkeypatch.setattr(lookup, "system_lookup", system_lookup)
    try:
        with anyio.fail_after(10):
            r = await oauth.authorize("https://slow.example/client.json", pkce()[1])
    finally:
        answer.set()
    assert r.status_code == 400, r.text
    assert "its host resolves to no public address" in r.text


async def test_a_redis_that_does_not_answer_is_asked_once_then_skipped_for_a_while(tmp_path: Path) -> None:
    """The shared store holds every answer: a token is checked on a worker thread while the loop goes on,
    and refused with the reason at Redis's deadline; for a few seconds the next requests are answered at
    once (503 temporarily_unavailable, a token refused), Redis not asked (the Redis link's breaker)."""
    with held_redis() as stub:
        server = OAuthServer(tmp_path / "oauth.db", ISSUER, f"{ISSUER}/mcp", scopes_supported=["mcp"], shared=stub.url)
        refused: list[str] = []

        async def check() -> None:
            with pytest.raises(InvalidToken) as caught:
                await server.verify("omat_" + "a" * 43)
            refused.append(str(caught.value))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(check)
                await anyio.to_thread.run_sync(stub.received.wait)
                assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request, meanwhile
                assert not refused
            assert refused == ["the token store (Redis) cannot be reached"]
            asked = list(stub.commands)
            with pytest.raises(InvalidToken, match=r"the token store \(Redis\) cannot be reached"):
                await server.verify("omat_" + "b" * 43)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER) as http:
                r = await http.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:9/cb"]})
            assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
        assert stub.commands == asked  # not asked again
        server.close()


async def test_the_callers_own_text_comes_back_in_an_error_cut_to_its_start(oauth: Harness) -> None:
    """A client_id, a grant_type, a scope or a parameter's name: the caller's text of any length (up to the
    URL or body limit) is repeated cut to its start and its length, never whole."""
    long = "x" * 20_000
    r = await oauth.http.get(
        "/oauth/authorize", params={"client_id": long, "response_type": "code"}, headers={"accept": "application/json"}
    )
    assert r.status_code == 400 and "unknown client_id 'xxx" in r.json()["error_description"]
    assert "(20002 characters)" in r.text and len(r.text) < 1000
    r = await oauth.http.get("/oauth/authorize", params={"client_id": long, "response_type": "code"})
    assert r.status_code == 400 and "(20002 characters)" in r.text and len(r.text) < 10_000  # the HTML page
    client_id = (await oauth.register())["client_id"]
    r = await oauth.token(grant_type=long, client_id=client_id)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    assert "(20002 characters)" in r.text and len(r.text) < 1000
    r = await oauth.http.post("/oauth/token", content=f"{long}=1&{long}=2".encode(), headers=FORM)
    assert r.status_code == 400 and "(20000 characters)" in r.text and len(r.text) < 1000
    r = await oauth.authorize(client_id, pkce()[1], scope=long)
    assert r.status_code == 302
    got = query(r.headers["location"])
    assert got["error"] == "invalid_scope" and "(20000 characters)" in got["error_description"]
    assert len(r.headers["location"]) < 1000


@asynccontextmanager
async def _on_its_own_file(tmp_path: Path) -> AsyncIterator[Harness]:
    """A server on oauth.db alone, no shared store (what these tests lock is that file), granting mcp."""
    clock = Clock(NOW)
    server = OAuthServer(tmp_path / "oauth.db", ISSUER, RESOURCE, scopes_supported=["mcp"], consent="auto", clock=clock)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER)
    try:
        yield Harness(server, http, clock)
    finally:
        await http.aclose()
        server.close()


async def test_oauth_db_held_by_another_process_stalls_no_other_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The authorization server wrote oauth.db on the event loop: while another process held its write lock
    (the CLI, a second hub on the config directory), a registration, a code or a token waited there up to the
    busy timeout (30 s), every client of the hub with it, then failed. They wait on a worker thread now (the
    caller needs them stored: a client uses a token the moment it has it), and a token check, a read, runs
    meanwhile; each is answered once the lock is free, and what was issued verifies at once."""
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", BUSY)
    async with _on_its_own_file(tmp_path) as oauth:
        client_id = (await oauth.register())["client_id"]
        earlier = (await oauth.tokens(client_id))["access_token"]
        code, verifier = await oauth.code(client_id)
        exchange = {"client_id": client_id, "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
        answers: list[httpx.Response] = []
        with anyio.fail_after(10), held_sqlite(tmp_path / "oauth.db") as release:
            async with anyio.create_task_group() as tg:

                async def asked(call: Callable[[], Any]) -> None:
                    answers.append(await call())

                tg.start_soon(asked, lambda: oauth.token(grant_type="authorization_code", **exchange))
                tg.start_soon(asked, lambda: oauth.http.post("/oauth/register", json={"redirect_uris": [REDIRECT]}))
                await anyio.wait_all_tasks_blocked()  # both wait for the lock (on their threads)
                assert await oauth.valid(earlier)  # a token check, meanwhile
                assert (await oauth.http.get("/.well-known/oauth-authorization-server")).status_code == 200
                assert answers == []
                release()
        assert sorted(r.status_code for r in answers) == [200, 201], [r.text for r in answers]
        issued = next(r for r in answers if r.status_code == 200).json()
        assert await oauth.valid(issued["access_token"])


async def test_oauth_db_held_past_its_busy_timeout_is_a_clear_503_and_spends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that waited the whole busy timeout for another process's lock raised sqlite3's "database is
    locked" out of the handler: a bare 500 (the ASGI boundary's). It is the OAuth error a client knows to try
    again on (503 temporarily_unavailable), and nothing was done: the same code exchanges once the lock is free."""
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", 0.05)
    async with _on_its_own_file(tmp_path) as oauth:
        client_id = (await oauth.register())["client_id"]
        code, verifier = await oauth.code(client_id)
        exchange = {"client_id": client_id, "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}
        with anyio.fail_after(10), held_sqlite(tmp_path / "oauth.db"):
            r = await oauth.token(grant_type="authorization_code", **exchange)
            assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable", r.text
            r = await oauth.http.post("/oauth/register", json={"redirect_uris": [REDIRECT]})
            assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable", r.text
        r = await oauth.token(grant_type="authorization_code", **exchange)
        assert r.status_code == 200 and await oauth.valid(r.json()["access_token"]), r.text
