"""Credentials of every kind the hub accepts, made the way their real issuers make them.

Boundary: test support. API keys through the key store (as `onemcp auth key create` does), JWTs
signed by a test issuer whose JWKS is served on loopback, and built-in OAuth access tokens
through the hub's own endpoints (register, authorize with PKCE, token, revoke).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

REDIRECT = "http://127.0.0.1:9/callback"


async def asgi_body(receive: Any) -> bytes:
    """The whole request body an ASGI app receives."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


@asynccontextmanager
async def loopback_asgi(app: Any) -> AsyncIterator[str]:
    """A plain ASGI app served by uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        server.should_exit = True
    sock.close()


@asynccontextmanager
async def dripping_party(period: float = 0.05) -> AsyncIterator[tuple[str, anyio.Event]]:
    """A loopback HTTP party that answers any request a byte at a time, each well within a read timeout,
    and never finishes: yields its base URL and an event set once it started answering."""
    started, stop = anyio.Event(), anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        started.set()
        while not stop.is_set():
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            with anyio.move_on_after(period):
                await stop.wait()

    async with loopback_asgi(app) as base:
        try:
            yield base, started
        finally:
            stop.set()


@asynccontextmanager
async def jwks_server(public_jwk: dict[str, Any]) -> AsyncIterator[str]:
    """A JWKS document on a loopback port; yields its URL."""
    body = json.dumps({"keys": [public_jwk]}).encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async with loopback_asgi(app) as base:
        yield f"{base}/jwks.json"


class JwtIssuer:
    """Signs access tokens for one audience, with a key whose JWKS `serve()` publishes."""

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})

    def token(self, scopes: list[str] | None, *, subject: str = "alice", expires_in: float = 300, **claims: Any) -> str:
        body = {"iss": self.issuer, "aud": self.audience, "sub": subject, "exp": int(time.time() + expires_in)}
        if scopes is not None:
            body["scope"] = " ".join(scopes)
        return jwt.encode({**body, **claims}, self.key, algorithm="RS256", headers={"kid": "k1"})


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def oauth_token(http: httpx.AsyncClient, base: str, resource: str, scopes: list[str]) -> dict[str, Any]:
    """Access (and refresh) token from the hub's built-in authorization server (consent "auto")."""
    doc = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "matrix"}
    r = await http.post(f"{base}/oauth/register", json=doc)
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]
    verifier, challenge = _pkce()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": " ".join(scopes),
        "resource": resource,
    }
    r = await http.get(f"{base}/oauth/authorize", params=params)
    assert r.status_code == 302, r.text
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
        "resource": resource,
    }
    r = await http.post(f"{base}/oauth/token", data=form)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    body["client_id"] = client_id
    return body


async def oauth_revoke(http: httpx.AsyncClient, base: str, token: dict[str, Any]) -> None:
    r = await http.post(f"{base}/oauth/revoke", data={"token": token["access_token"], "client_id": token["client_id"]})
    assert r.status_code == 200, r.text
