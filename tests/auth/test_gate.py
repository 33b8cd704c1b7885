"""The hub as a resource server: API keys, JWTs from a JWKS, scopes, sessions, limits."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fixtures.launch import fixture_command
from onemcp.auth import gate as gate_module
from onemcp.auth.gate import Gate
from onemcp.auth.keys import KeyStore
from onemcp.auth.roles import Roles
from onemcp.config.auth_settings import AuthSettings, Role
from support.credentials import jwks_server
from support.hub import HEADERS, INIT, RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


SERVERS = {"web": stdio(tags=["net"]), "git": stdio(tags=["vcs"])}


def call(name: str, rid: int = 2, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def session(http: httpx.AsyncClient, hub: RunningHub, token: str | None) -> dict[str, str]:
    auth = {"authorization": f"Bearer {token}"} if token else {}
    r = await http.post(hub.url, json=INIT, headers={**HEADERS, **auth})
    assert r.status_code == 200, r.text
    headers = {**HEADERS, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


@asynccontextmanager
async def keyed_hub(tmp_path: Path, **auth: Any) -> AsyncIterator[tuple[RunningHub, KeyStore]]:
    path = tmp_path / "mcp.json"
    config = {"mcpServers": SERVERS, "onemcp": {"auth": {"apiKeys": True, **auth}}}
    path.write_text(json.dumps(config))
    async with running_hub(config, config_path=path) as hub:
        yield hub, KeyStore(tmp_path / "keys.db")


async def test_api_keys_matrix(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient() as http:
            full = keys.create("full", ["mcp"])
            git_only = keys.create("git", ["server:git"])
            one_tool = keys.create("one", ["tool:web/echo"])
            expired = keys.create("old", ["mcp"], expires=time.time() - 1)
            revoked = keys.create("gone", ["mcp"])
            keys.revoke(revoked.split("_")[1])
            admin = keys.create("ops", ["admin"])
            operator = keys.create("watch", ["operator"])

            # no token / unknown / expired / revoked: 401 with the challenge
            for token in (None, "omk_nope_nope", expired, revoked, "not-a-known-format"):
                auth = {"authorization": f"Bearer {token}"} if token else {}
                r = await http.post(hub.url, json=INIT, headers={**HEADERS, **auth})
                assert r.status_code == 401, token
                challenge = r.headers["www-authenticate"]
                assert (
                    challenge.startswith("Bearer ") and "resource_metadata=" in challenge and 'scope="mcp"' in challenge
                )
                if token:
                    assert 'error="invalid_token"' in challenge
            # a token in the query string is not a credential
            r = await http.post(f"{hub.url}?access_token={full}", json=INIT, headers=HEADERS)
            assert r.status_code == 401

            # protected resource metadata at both well-known paths
            for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
                doc = (await http.get(f"{hub.base}{path}")).json()
                assert doc["resource"].endswith("/mcp") and doc["bearer_methods_supported"] == ["header"]

            # full access
            h = await session(http, hub, full)
            names = {
                t["name"]
                for t in (
                    await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=h)
                ).json()["result"]["tools"]
            }
            assert "web__echo" in names and "git__echo" in names
            # server scope: lists filtered, other servers unknown
            g = await session(http, hub, git_only)
            listed = (
                await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=g)
            ).json()
            assert {t["name"].split("__")[0] for t in listed["result"]["tools"]} == {"git"}
            r = await http.post(hub.url, json=call("web__echo", message="x"), headers=g)
            assert r.json()["error"]["code"] == -32602
            assert (await http.post(hub.url, json=call("git__echo", message="ok"), headers=g)).json()["result"]
            # tool scope: that tool works; another tool of the same server is 403 insufficient_scope
            t = await session(http, hub, one_tool)
            assert (await http.post(hub.url, json=call("web__echo", message="ok"), headers=t)).json()["result"]
            r = await http.post(hub.url, json=call("web__sleep", seconds=0), headers=t)
            assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
            assert 'scope="tool:web/sleep"' in r.headers["www-authenticate"]
            # another principal's session does not exist for it
            stolen = {**g, "authorization": f"Bearer {full}"}
            r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}, headers=stolen)
            assert r.status_code == 404
            # the probes stay open; /health (every server, instances, pins) and /metrics are the operator's
            for probe in ("/health/live", "/health/ready"):
                assert (await http.get(f"{hub.base}{probe}")).status_code == 200
            assert (await http.get(f"{hub.base}/health/ready")).json() == {"ready": True}  # naming no server
            assert (await http.get(f"{hub.base}/health")).status_code == 401
            r = await http.get(f"{hub.base}/health", headers={"authorization": f"Bearer {full}"})
            assert r.status_code == 403 and 'scope="operator"' in r.headers["www-authenticate"]
            r = await http.get(f"{hub.base}/health", headers={"authorization": f"Bearer {admin}"})
            assert r.status_code == 200 and set(r.json()["upstreams"]) == {"web", "git"}
            r = await http.get(f"{hub.base}/metrics", headers={"authorization": f"Bearer {full}"})
            assert r.status_code == 403 and 'scope="operator"' in r.headers["www-authenticate"]
            assert r.json() == {"error": "insufficient_scope", "scope": "operator"}
            # a Prometheus scraper holds a read-only key, as a /health reader does: not one that changes the hub
            for reader in (operator, admin):
                r = await http.get(f"{hub.base}/metrics", headers={"authorization": f"Bearer {reader}"})
                assert r.status_code == 200 and b"onemcp_upstream_requests_total" in r.content
            r = await http.get(f"{hub.base}/health", headers={"authorization": f"Bearer {operator}"})
            assert r.status_code == 200
            # the read-only key changes nothing: the admin API still needs admin for that
            r = await http.post(f"{hub.base}/api/v1/reload", headers={"authorization": f"Bearer {operator}"})
            assert r.status_code == 403 and r.json()["scope"] == "admin"


async def test_rate_limit_and_quota(tmp_path: Path) -> None:
    auth = {
        "rateLimit": {"requestsPerMinute": 60, "burst": 12},
        "quotas": [{"tool": "web/echo", "calls": 2, "window": 1}],
    }
    with anyio.fail_after(DEADLINE):
        async with keyed_hub(tmp_path, **auth) as (hub, keys), httpx.AsyncClient() as http:
            key = keys.create("k", ["mcp"])
            h = await session(http, hub, key)  # 2 requests used
            texts = []
            for i in range(3):
                r = await http.post(hub.url, json=call("web__echo", rid=i, message="q"), headers=h)
                texts.append(r.json()["result"])
            assert not texts[0].get("isError") and not texts[1].get("isError")
            refused = texts[2]
            assert refused["isError"] and "Quota exceeded" in refused["content"][0]["text"]
            assert "Retry in" in refused["content"][0]["text"]
            # recovery after the window (the quota's, not a sleep in the test: poll)
            while True:
                r = await http.post(hub.url, json=call("web__echo", rid=9, message="again"), headers=h)
                if r.status_code == 429:
                    break  # the rate limit is the next thing to hit: that is checked below
                if not r.json()["result"].get("isError"):
                    break
                await anyio.sleep(0.1)  # allowed-sleep: polling with a deadline
            # the per-principal rate limit: 429 with Retry-After once the burst is spent
            statuses = []
            for _ in range(15):
                r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=h)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                    break
            assert 429 in statuses


async def test_results_over_the_limit_are_truncated_with_a_marker(tmp_path: Path) -> None:
    config = {"mcpServers": SERVERS, "onemcp": {"maxResultBytes": 10}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient() as http:
            h = await session(http, hub, None)
            result = (await http.post(hub.url, json=call("web__echo", message="x" * 50), headers=h)).json()["result"]
            assert result["content"][0]["text"] == "x" * 10
            assert "truncated, 40 bytes omitted" in result["content"][-1]["text"]
            assert "isError" not in result  # plain text cut: still the tool's result
            # A cut result loses its structuredContent: a tool with an outputSchema must return it, so MCP
            # clients (both SDKs) refuse the result unless it is an error. Before, it was not marked one and
            # the TypeScript SDK's callTool threw "has an output schema but did not return structured content".
            r = await http.post(hub.url, json=call("web__whoami", message="x" * 50), headers=h)
            result = r.json()["result"]
            assert "structuredContent" not in result and result["isError"] is True
            assert "structuredContent omitted" in result["content"][-1]["text"]


async def test_jwt_matrix(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    with anyio.fail_after(DEADLINE):
        async with jwks_server(jwk) as jwks_url:
            resource = "http://hub.test/mcp"
            auth = {"jwt": {"jwksUrl": jwks_url, "issuer": "https://issuer.test"}, "publicUrl": resource}
            config = {"mcpServers": SERVERS, "onemcp": {"auth": auth}}
            path = tmp_path / "mcp.json"
            path.write_text(json.dumps(config))
            async with running_hub(config, config_path=path) as hub, httpx.AsyncClient() as http:

                def token(signer: Any = key, **claims: Any) -> str:
                    base = {
                        "iss": "https://issuer.test",
                        "aud": resource,
                        "sub": "alice",
                        "scope": "mcp",
                        "exp": int(time.time()) + 300,
                    }
                    return jwt.encode({**base, **claims}, signer, algorithm="RS256", headers={"kid": "k1"})

                h = await session(http, hub, token())
                assert (await http.post(hub.url, json=call("git__echo", message="jwt"), headers=h)).json()["result"]
                for bad in (
                    token(signer=other),  # bad signature
                    token(aud="http://elsewhere/mcp"),  # a token for another resource
                    token(exp=int(time.time()) - 3600),  # expired beyond the leeway
                    token(iss="https://evil.test"),
                ):
                    r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {bad}"})
                    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
                # within the clock-skew leeway is fine
                skewed = token(exp=int(time.time()) - 10)
                r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {skewed}"})
                assert r.status_code == 200
                # scopes from the token narrow what it sees
                h = await session(http, hub, token(scope="tag:net"))
                listed = (
                    await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=h)
                ).json()
                assert {t["name"].split("__")[0] for t in listed["result"]["tools"]} == {"web"}


async def test_an_open_stream_ends_when_its_key_is_revoked_or_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET stream (legacy /mcp, /sse) was admitted once: it must not outlive the credential."""
    monkeypatch.setattr(gate_module, "RECHECK", 0.1)
    with anyio.fail_after(DEADLINE):
        async with keyed_hub(tmp_path) as (hub, keys), httpx.AsyncClient(timeout=None) as http:
            revoked, expiring = keys.create("r", ["mcp"]), keys.create("e", ["mcp"], time.time() + 1)
            kept = keys.create("k", ["mcp"])
            streams = {}
            async with anyio.create_task_group() as tg:

                async def hold(name: str, key: str, path: str) -> None:
                    if path == "/mcp":
                        headers = {**(await session(http, hub, key)), "accept": "text/event-stream"}
                    else:
                        headers = {"authorization": f"Bearer {key}", "accept": "text/event-stream"}
                    async with http.stream("GET", f"{hub.base}{path}", headers=headers) as r:
                        assert r.status_code == 200
                        streams[name] = "open"
                        async for _ in r.aiter_bytes():
                            pass
                    streams[name] = "ended"

                watcher = keys.create("w", ["operator"])  # the admin API's event stream: the same rule
                for name, key, path in (
                    ("revoked", revoked, "/mcp"),
                    ("expiring", expiring, "/sse"),
                    ("kept", kept, "/mcp"),
                    ("events", watcher, "/api/v1/events"),
                ):
                    tg.start_soon(hold, name, key, path)
                while len(streams) < 4:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the streams open)
                keys.revoke(revoked.split("_")[1])
                keys.revoke(watcher.split("_")[1])
                while any(streams[n] != "ended" for n in ("revoked", "expiring", "events")):
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the checks end them)
                assert streams["kept"] == "open"
                tg.cancel_scope.cancel()


async def test_a_stream_past_its_oauth_token_holds_only_what_its_grant_still_grants(tmp_path: Path) -> None:
    """A stream opened with a built-in OAuth token outlives the token while its grant lives (`Gate.holds`
    asks the grant then), but not a role change: once the client's roles no longer grant the scopes it
    was opened with, it ends, as a stream on a token that still verifies does."""
    base = "http://127.0.0.1:9"
    settings = AuthSettings.model_validate({"oauth": True, "oauthConsent": "auto"})
    gate = Gate(settings, tmp_path, f"{base}/mcp")
    now = [time.time()]
    gate.oauth.grants.clock = lambda: now[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate.oauth.app), base_url=base) as http:
        redirect = "http://127.0.0.1:5173/cb"
        doc = {"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}
        client_id = (await http.post("/oauth/register", json=doc)).json()["client_id"]
        verifier = "v" * 43
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "state": "s"}
        r = await http.get(
            "/oauth/authorize", params={**params, "code_challenge": challenge, "code_challenge_method": "S256"}
        )
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id, "code_verifier": verifier}
        tokens = (await http.post("/oauth/token", data={**form, "redirect_uri": redirect})).json()
    gate.roles = Roles({"dev": Role(scopes=["server:web"])}, {client_id: ["dev"]})
    token = tokens["access_token"]
    scope: dict[str, Any] = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}
    principal = await gate.verify(token)
    assert principal.scopes == {"mcp", "server:web"} and principal.grant is not None
    now[0] += 15 * 60 + 1  # the token expired: its grant holds the stream
    assert await gate.holds(scope, principal)
    gate.roles = Roles({"dev": Role(scopes=["server:git"])}, {client_id: ["dev"]})  # (roles changed)
    assert not await gate.holds(scope, principal)
    gate.oauth.close()


def test_automatic_oauth_consent_is_warned_of(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`oauthConsent: auto` hands an admin token to any page that asks (registration and token
    endpoints allow cross-origin calls): documented as for tests only, it started without a word."""
    from onemcp.config.auth_settings import AuthSettings

    with caplog.at_level("WARNING", logger="onemcp.auth"):
        quiet = gate_module.Gate(AuthSettings.model_validate({"oauth": True}), tmp_path, "http://127.0.0.1:3050/mcp")
        quiet.oauth.close()
        assert not caplog.records
        gate = gate_module.Gate(
            AuthSettings.model_validate({"oauth": True, "oauthConsent": "auto"}), tmp_path, "http://127.0.0.1:3050/mcp"
        )
    assert [r.getMessage() for r in caplog.records] == [
        'oauthConsent is "auto": every authorization is approved at once, so any web page open in a browser'
        " that reaches this hub can get an admin token (for tests only)"
    ]
    gate.oauth.close()


async def test_an_unauthenticated_request_s_path_is_audited_by_its_start(tmp_path: Path) -> None:
    """Anyone may send a 60,000-character path and be refused: its audit line repeated it whole, twice (as
    `entry` and `path`), so unauthenticated requests could fill the audit log and rotate its history away."""
    from support.audit import audit_lines

    long_path = "/health/" + "p" * 60_000  # anything under /health asks for a credential first
    with anyio.fail_after(DEADLINE):
        async with keyed_hub(tmp_path) as (hub, _), httpx.AsyncClient() as http:
            with audit_lines() as lines:
                assert (await http.get(f"{hub.base}{long_path}")).status_code == 401
    [denied] = [line for line in lines if line.startswith("auth denied")]
    assert len(denied) < 600 and "... (60008 characters)" in denied, denied[:300]
