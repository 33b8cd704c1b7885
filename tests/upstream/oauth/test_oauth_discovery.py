"""Discovery and the OAuth client steps, against scripted authorization servers (httpx MockTransport)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from onemcp.upstream.oauth.discovery import (
    DiscoveryError,
    as_metadata_urls,
    covers,
    discover,
    parse_challenge,
    prm_urls,
)
from onemcp.upstream.oauth.flow import (
    FlowError,
    Registration,
    authorize_url,
    check_response_issuer,
    choose_auth_method,
    exchange_code,
    pkce_pair,
    register,
)

pytestmark = pytest.mark.anyio
SERVER = "https://mcp.example.com/mcp"
AS_DOC = {
    "issuer": "https://auth.example.com",
    "authorization_endpoint": "https://auth.example.com/authorize",
    "token_endpoint": "https://auth.example.com/token",
    "registration_endpoint": "https://auth.example.com/register",
    "code_challenge_methods_supported": ["S256"],
}


def scripted(docs: dict[str, Any], seen: list[str]) -> httpx.AsyncClient:
    """A client whose GETs answer from `docs` (404 otherwise), recording what was asked."""

    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        seen.append(url)
        if url in docs:
            return httpx.Response(200, json=docs[url])
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def test_challenge_parsing() -> None:
    ch = parse_challenge(
        'Bearer error="insufficient_scope", scope="files:read files:write", '
        'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"'
    )
    assert ch.error == "insufficient_scope"
    assert ch.scope == "files:read files:write"
    assert ch.resource_metadata == "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    # another scheme first, unquoted values, escaped quotes
    ch = parse_challenge('Basic realm="x", Bearer realm="a \\"b\\"", scope=mcp')
    assert ch.params == {"realm": 'a "b"', "scope": "mcp"}
    assert parse_challenge('Basic realm="x"').params == {}
    assert parse_challenge(None).params == {}
    assert parse_challenge("Bearer").params == {}


def test_well_known_orders() -> None:
    ch = parse_challenge('Bearer resource_metadata="https://mcp.example.com/custom.json"')
    assert prm_urls(SERVER, ch) == [
        "https://mcp.example.com/custom.json",
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert as_metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]
    assert as_metadata_urls("https://auth.example.com") == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
    ]


def test_resource_covers_the_server_url() -> None:
    assert covers("https://MCP.example.com", SERVER)
    assert covers("https://mcp.example.com/mcp", SERVER)
    assert not covers("https://mcp.example.com/mc", SERVER)  # a segment boundary
    assert not covers("https://evil.example.com/mcp", SERVER)
    assert not covers("http://mcp.example.com/mcp", SERVER)


async def test_discovery_falls_back_through_the_well_known_urls() -> None:
    seen: list[str] = []
    docs = {
        "https://mcp.example.com/.well-known/oauth-protected-resource": {
            "resource": "https://mcp.example.com",
            "authorization_servers": ["https://auth.example.com/tenant1"],
            "scopes_supported": ["mcp:basic"],
        },
        "https://auth.example.com/tenant1/.well-known/openid-configuration": {
            **AS_DOC,
            "issuer": "https://auth.example.com/tenant1",
        },
    }
    async with scripted(docs, seen) as client:
        found = await discover(client, SERVER, parse_challenge("Bearer"))
    assert found.resource == "https://mcp.example.com"  # exactly as the server names itself
    assert found.metadata["issuer"] == "https://auth.example.com/tenant1"
    assert found.scopes_supported == ["mcp:basic"]
    assert seen == [
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize(
    ("prm", "as_doc", "message"),
    [
        ({"resource": "https://evil.example.com/mcp"}, AS_DOC, "not 'https://mcp.example.com/mcp'"),
        ({"resource": SERVER}, {**AS_DOC, "issuer": "https://attacker.example.com"}, "not 'https://auth.example.com'"),
        ({"resource": SERVER}, {**AS_DOC, "issuer": "https://auth.example.com/"}, "not 'https://auth.example.com'"),
        ({"resource": SERVER}, {**AS_DOC, "code_challenge_methods_supported": ["plain"]}, "PKCE S256"),
        ({"resource": SERVER}, {k: v for k, v in AS_DOC.items() if k != "code_challenge_methods_supported"}, "S256"),
        ({"resource": SERVER, "authorization_servers": []}, AS_DOC, "names no authorization_servers"),
    ],
)
async def test_discovery_refuses_what_it_must(prm: dict[str, Any], as_doc: dict[str, Any], message: str) -> None:
    docs = {
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp": {
            "authorization_servers": ["https://auth.example.com"],
            **prm,
        },
        "https://auth.example.com/.well-known/oauth-authorization-server": as_doc,
    }
    async with scripted(docs, []) as client:
        with pytest.raises(DiscoveryError, match=message.replace("(", r"\(")):
            await discover(client, SERVER, parse_challenge("Bearer"))


async def test_no_metadata_at_all_uses_the_2025_03_26_defaults() -> None:
    async with scripted({}, []) as client:
        found = await discover(client, SERVER, parse_challenge("Bearer"))
    assert found.metadata["authorization_endpoint"] == "https://mcp.example.com/authorize"
    assert found.metadata["token_endpoint"] == "https://mcp.example.com/token"
    assert found.resource == SERVER


def recorder(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_registration_asks_for_refresh_and_the_offered_auth_method() -> None:
    seen: list[httpx.Request] = []
    meta = {**AS_DOC, "token_endpoint_auth_methods_supported": ["client_secret_post", "none"]}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"client_id": "c1", "client_secret": "s1"})

    async with recorder(answer, seen) as client:
        reg = await register(client, meta, redirect_uri="http://127.0.0.1:3050/oauth/upstream/callback", scope="a b")
    body = json.loads(seen[0].content)
    assert "refresh_token" in body["grant_types"] and body["application_type"] == "native"
    assert body["token_endpoint_auth_method"] == "client_secret_post" and body["scope"] == "a b"
    assert reg == Registration(
        "c1", "s1", "client_secret_post", "http://127.0.0.1:3050/oauth/upstream/callback", "https://auth.example.com"
    )
    no_dcr = {k: v for k, v in AS_DOC.items() if k != "registration_endpoint"}
    async with recorder(answer, []) as client:
        with pytest.raises(FlowError, match="pre-register"):
            await register(client, no_dcr, redirect_uri="http://127.0.0.1/cb", scope=None)


async def test_token_request_authenticates_as_registered_and_sends_pkce_and_resource() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer", "expires_in": 60})

    verifier, challenge = pkce_pair()
    assert base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() == challenge
    for method in ("client_secret_basic", "client_secret_post", "none"):
        reg = Registration("id:1", None if method == "none" else "s/2", method, "http://127.0.0.1/cb", "iss")
        seen.clear()
        async with recorder(answer, seen) as client:
            tokens = await exchange_code(client, AS_DOC, reg, code="c", verifier=verifier, resource=SERVER)
        assert tokens.access_token == "at" and tokens.refresh_token is None and tokens.expires_at is not None
        form = dict(parse_qsl(seen[0].content.decode()))
        assert form["code_verifier"] == verifier and form["resource"] == SERVER
        auth = seen[0].headers.get("authorization")
        if method == "client_secret_basic":
            assert auth == "Basic " + base64.b64encode(b"id%3A1:s%2F2").decode() and "client_id" not in form
        else:
            assert auth is None and form["client_id"] == "id:1"
            assert ("client_secret" in form) == (method == "client_secret_post")


async def test_token_errors_and_token_types() -> None:
    reg = Registration("c", None, "none", "http://127.0.0.1/cb", "iss")
    async with recorder(lambda r: httpx.Response(400, json={"error": "invalid_grant"}), []) as client:
        with pytest.raises(FlowError) as refused:
            await exchange_code(client, AS_DOC, reg, code="c", verifier="v", resource=SERVER)
    assert refused.value.error == "invalid_grant"
    dpop = httpx.Response(200, json={"access_token": "x", "token_type": "DPoP"})
    async with recorder(lambda r: dpop, []) as client:
        with pytest.raises(FlowError, match="not a Bearer"):
            await exchange_code(client, AS_DOC, reg, code="c", verifier="v", resource=SERVER)


def test_authorize_url_and_response_issuer() -> None:
    reg = Registration("c", None, "none", "http://127.0.0.1/cb", "https://auth.example.com")
    url = authorize_url(AS_DOC, reg, state="st", challenge="ch", resource=SERVER, scope="mcp:basic")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query == {
        "response_type": "code",
        "client_id": "c",
        "redirect_uri": "http://127.0.0.1/cb",
        "state": "st",
        "code_challenge": "ch",
        "code_challenge_method": "S256",
        "resource": SERVER,
        "scope": "mcp:basic",
    }
    check_response_issuer(AS_DOC, None)  # not promised, not given
    check_response_issuer(AS_DOC, "https://auth.example.com")
    promised = {**AS_DOC, "authorization_response_iss_parameter_supported": True}
    for meta, iss in ((promised, None), (AS_DOC, "https://evil.example.com"), (AS_DOC, "https://auth.example.com/")):
        with pytest.raises(FlowError):
            check_response_issuer(meta, iss)


def test_auth_method_choice() -> None:
    assert choose_auth_method({}, True) == "client_secret_basic"
    assert choose_auth_method({"token_endpoint_auth_methods_supported": ["none"]}, True) == "none"
    with pytest.raises(FlowError):
        choose_auth_method({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, False)


async def test_client_credentials_with_a_signed_assertion() -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from onemcp.upstream.oauth.flow import client_assertion, client_credentials

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assertion = client_assertion(AS_DOC, "machine-1", pem, "ES256")
    claims = jwt.decode(assertion, key.public_key(), algorithms=["ES256"], audience="https://auth.example.com")
    assert claims["iss"] == claims["sub"] == "machine-1" and claims["exp"] - claims["iat"] == 300
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "m", "token_type": "bearer", "expires_in": 300})

    reg = Registration("machine-1", None, "private_key_jwt", "", "https://auth.example.com")
    async with recorder(answer, seen) as client:
        tokens = await client_credentials(client, AS_DOC, reg, resource=SERVER, scope="mcp:basic", assertion=assertion)
    form = dict(parse_qsl(seen[0].content.decode()))
    assert form["grant_type"] == "client_credentials" and form["scope"] == "mcp:basic"
    assert form["client_assertion"] == assertion and form["resource"] == SERVER
    assert "authorization" not in seen[0].headers and tokens.access_token == "m"
    with pytest.raises(FlowError, match="cannot sign"):
        client_assertion(AS_DOC, "machine-1", "not a pem", "ES256")
