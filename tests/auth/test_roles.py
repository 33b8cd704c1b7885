"""Roles: inheritance expanded once, resolved at the gate, granting exactly their scopes end to end.

Unit: expansion with inheritance, the rewriting of key / JWT / OAuth principals, an unknown role
(grants nothing, audited), config errors. End to end: a hub with API keys and a JWT issuer,
real fixture upstream processes, raw HTTP clients: each role sees and calls exactly what its
scopes allow and nothing more, and the operator role opens the admin API but not /mcp.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from onemcp.auth.principal import Principal
from onemcp.auth.roles import Roles, expand
from onemcp.config.auth_settings import Role
from onemcp.config.model import HubConfig
from support.credentials import JwtIssuer, jwks_server
from support.hub import HEADERS, INIT, RunningHub, running_hub

DEADLINE = 30.0
ROLES: dict[str, Any] = {
    "viewer": {"scopes": ["operator"]},
    "reader": {"scopes": ["server:alpha"]},
    "developer": {"inherits": ["reader", "viewer"], "scopes": ["tool:beta/echo"]},
}


def roles() -> Roles:
    return Roles({n: Role.model_validate(r) for n, r in ROLES.items()}, {"client-1": ["reader"]})


def test_inheritance_is_expanded_once() -> None:
    scopes = expand({n: Role.model_validate(r) for n, r in ROLES.items()})
    assert scopes["developer"] == {"server:alpha", "operator", "tool:beta/echo"}
    assert scopes["reader"] == {"server:alpha"}


def test_a_principal_gets_its_roles_scopes_in_place_of_the_roles(caplog: pytest.LogCaptureFixture) -> None:
    key = Principal("key:1", frozenset({"role:developer", "mcp"}), kind="key")
    assert roles().resolve(key).scopes == {"mcp", "server:alpha", "operator", "tool:beta/echo"}
    oauth = Principal("oauth:client-1", frozenset({"mcp"}), kind="oauth", labels={"client_id": "client-1"})
    assert roles().resolve(oauth).scopes == {"mcp", "server:alpha"}  # clientRoles
    plain = Principal("key:2", frozenset({"mcp"}), kind="key")
    assert roles().resolve(plain) is plain
    with caplog.at_level(logging.INFO, logger="onemcp.audit"):
        gone = roles().resolve(Principal("key:3", frozenset({"role:removed"}), kind="key"))
    assert gone.scopes == frozenset() and "role=removed (grants nothing)" in caplog.text


@pytest.mark.parametrize(
    ("auth", "complaint"),
    [
        ({"roles": {"a": {"inherits": ["nope"]}}}, "roles.a.inherits: no role 'nope'"),
        ({"roles": {"a": {"inherits": ["b"]}, "b": {"inherits": ["a"]}}}, "inheritance cycle a -> b -> a"),
        ({"roles": {"a": {"scopes": ["server:x", "superuser"]}}}, "unknown scope 'superuser'"),
        ({"roles": {"a": {"scopes": ["role:b"]}, "b": {}}}, "inherits: ['b']"),
        ({"roles": {"a": {}}, "clientRoles": {"c": ["b"]}}, "clientRoles.c: no role 'b'"),
        ({"roles": {"a": {"scope": ["mcp"]}}}, "scope"),  # a misspelt field is refused, not ignored
    ],
)
def test_bad_roles_are_refused_with_the_reason(auth: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        HubConfig.model_validate({"onemcp": {"auth": auth}})
    assert complaint in str(refused.value)


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


async def rpc(http: httpx.AsyncClient, hub: RunningHub, token: str, method: str, **params: Any) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {token}"}
    r = await http.post(hub.url, json=INIT, headers={**HEADERS, **auth})
    assert r.status_code == 200, r.text
    h = {**HEADERS, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    reply = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": method, "params": params}, headers=h)
    doc: dict[str, Any] = reply.json()
    return doc


async def listed(http: httpx.AsyncClient, hub: RunningHub, token: str) -> set[str]:
    return {t["name"] for t in (await rpc(http, hub, token, "tools/list"))["result"]["tools"]}


@pytest.mark.anyio
async def test_each_role_grants_exactly_its_scopes_over_keys_and_jwts(tmp_path: Path) -> None:
    issuer = JwtIssuer("https://issuer.test", "http://hub.test/mcp")
    with anyio.fail_after(DEADLINE):
        async with jwks_server(issuer.jwk) as jwks_url:
            auth = {
                "apiKeys": True,
                "jwt": {"jwksUrl": jwks_url, "issuer": "https://issuer.test", "rolesClaim": "groups"},
                "publicUrl": "http://hub.test/mcp",
                "roles": ROLES,
            }
            config = {"mcpServers": {"alpha": stdio(), "beta": stdio()}, "onemcp": {"auth": auth}}
            path = tmp_path / "mcp.json"
            path.write_text(json.dumps(config))
            async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=20) as http:
                store = KeyStore(tmp_path / "keys.db")
                reader = store.create("r", ["role:reader"])
                developer = store.create("d", ["role:developer"])
                viewer = store.create("v", ["role:viewer"])
                alpha = await listed(http, hub, reader)
                assert alpha and all(name.startswith("alpha__") for name in alpha)
                refused = await rpc(http, hub, reader, "tools/call", name="beta__echo", arguments={"message": "x"})
                assert "error" in refused, refused
                assert await listed(http, hub, developer) == alpha | {"beta__echo"}  # inherited + its own
                called = await rpc(http, hub, developer, "tools/call", name="beta__echo", arguments={"message": "x"})
                assert called["result"]["content"][0]["text"] == "x"
                # JWT: the roles come from the configured claim, a string or a list
                by_claim = issuer.token(None, groups=["reader"])
                assert await listed(http, hub, by_claim) == alpha
                assert await listed(http, hub, issuer.token(None, groups="developer")) == alpha | {"beta__echo"}
                # the operator scope alone opens the admin API (read) but is no way into /mcp
                api = f"{hub.base}/api/v1/servers"
                assert (await http.get(api, headers={"authorization": f"Bearer {viewer}"})).status_code == 200
                assert (await http.get(api, headers={"authorization": f"Bearer {reader}"})).status_code == 403
                r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {viewer}"})
                assert r.status_code == 403


@pytest.mark.anyio
async def test_an_oauth_clients_roles_reach_every_token_it_was_issued(tmp_path: Path) -> None:
    from support.credentials import oauth_token

    resource = "http://hub.test/mcp"
    servers = {"alpha": stdio(), "beta": stdio()}
    auth: dict[str, Any] = {"oauth": True, "oauthConsent": "auto", "publicUrl": resource, "roles": ROLES}
    path = tmp_path / "mcp.json"
    with anyio.fail_after(DEADLINE):
        config = {"mcpServers": servers, "onemcp": {"auth": auth}}
        path.write_text(json.dumps(config))
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=20) as http:
            issued = await oauth_token(http, hub.base, resource, ["mcp"])
            token, client = str(issued["access_token"]), str(issued["client_id"])
            everything = await listed(http, hub, token)
            assert any(n.startswith("beta__") for n in everything)  # no role yet: scope mcp sees all
        # the operator gives that client the reader role (roles apply when the hub starts)
        config = {"mcpServers": servers, "onemcp": {"auth": {**auth, "clientRoles": {client: ["reader"]}}}}
        path.write_text(json.dumps(config))
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=20) as http:
            narrowed = await listed(http, hub, token)  # the same token, issued before
            assert narrowed and all(n.startswith("alpha__") for n in narrowed), narrowed
