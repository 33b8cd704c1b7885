"""The hub's OAuth 2.1 client steps against one authorization server.

Owns client registration (a pre-registered client from the config, else RFC 7591 dynamic
registration), PKCE S256, the authorization URL (with `resource`, RFC 8707, and `state`), the
authorization response's checks (state, RFC 9207 `iss`), and the token requests: code exchange,
refresh and the client_credentials grant, with the client authentication the server asks for
(basic, post, none, or an RFC 7523 private_key_jwt assertion). Knows nothing about upstream
connections or storage (`oauth_client` decides when, `oauth_store` keeps).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from onemcp import __version__
from onemcp.upstream.oauth.discovery import strings
from onemcp.upstream.oauth.dpop import DpopKey
from onemcp.upstream.oauth.http import OAuthClientError, Reply, request

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")  # our preference
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1: what may follow "Bearer "


class FlowError(OAuthClientError):
    """An OAuth step failed; `error` is the server's error code when it gave one."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class Registration:
    client_id: str
    client_secret: str | None
    auth_method: str  # token endpoint authentication: client_secret_basic | client_secret_post | none
    redirect_uri: str
    issuer: str  # credentials are bound to the server that issued them

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Registration:
        secret = doc.get("client_secret")
        return cls(
            str(doc["client_id"]),
            secret if isinstance(secret, str) else None,
            str(doc["auth_method"]),
            str(doc["redirect_uri"]),
            str(doc["issuer"]),
        )


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_at: float | None  # epoch seconds
    scope: str | None
    issuer: str  # they are refreshed there and nowhere else
    token_type: str = "Bearer"  # or "DPoP": bound to the credential's key (RFC 9449)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], issuer: str | None = None) -> Tokens:
        """`issuer`: for tokens stored before they named theirs."""
        return cls(
            str(doc["access_token"]),
            doc.get("refresh_token"),
            doc.get("expires_at"),
            doc.get("scope"),
            str(doc.get("issuer") or issuer),
            str(doc.get("token_type") or "Bearer"),
        )


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def offered_methods(metadata: dict[str, Any]) -> list[str]:
    """Token endpoint authentication methods the server takes (RFC 8414's default when it says none)."""
    return strings(metadata, "token_endpoint_auth_methods_supported") or ["client_secret_basic"]


def choose_auth_method(metadata: dict[str, Any], has_secret: bool) -> str:
    offered = offered_methods(metadata)
    usable = [m for m in AUTH_METHODS if m in offered and (has_secret or m == "none")]
    if not usable:
        raise FlowError(f"no usable token endpoint authentication among {offered}")
    return usable[0]


def _error_of(r: Reply) -> tuple[str, str | None]:
    doc = r.json()
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        detail = doc.get("error_description")
        return f"{doc['error'][:100]}{': ' + str(detail)[:200] if detail else ''}", doc["error"]
    return f"HTTP {r.status}: {r.text()}", None


async def register(
    client: httpx.AsyncClient, metadata: dict[str, Any], *, redirect_uri: str, scope: str | None
) -> Registration:
    """RFC 7591 dynamic registration of the hub as a client of this server."""
    endpoint = metadata.get("registration_endpoint")
    if not isinstance(endpoint, str):
        raise FlowError(
            f"{metadata.get('issuer')} offers no dynamic client registration: "
            "pre-register a client and set oauth.clientId (and clientSecret) for this server"
        )
    offered = offered_methods(metadata)
    wanted = next((m for m in AUTH_METHODS if m in offered), "none")
    host = urlsplit(redirect_uri).hostname or ""
    body: dict[str, Any] = {
        "client_name": "onemcp hub",
        "client_uri": "https://github.com/onemcp/onemcp",
        "software_id": "onemcp",
        "software_version": __version__,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": wanted,
        "application_type": "native" if host in ("127.0.0.1", "localhost", "::1") else "web",
    }
    if scope:
        body["scope"] = scope
    r = await request(client, "POST", endpoint, "registration endpoint", json=body)
    if r.status not in (200, 201):
        message, code = _error_of(r)
        raise FlowError(f"registration at {endpoint} refused: {message}", code)
    doc = r.json()
    if not isinstance(doc, dict) or not isinstance(doc.get("client_id"), str):
        raise FlowError(f"registration at {endpoint} returned no client_id")
    secret = doc.get("client_secret") if isinstance(doc.get("client_secret"), str) else None
    method = doc.get("token_endpoint_auth_method") or (wanted if secret else "none")
    return Registration(doc["client_id"], secret, str(method), redirect_uri, str(metadata.get("issuer")))


def authorize_url(
    metadata: dict[str, Any], reg: Registration, *, state: str, challenge: str, resource: str, scope: str | None
) -> str:
    params = {
        "response_type": "code",
        "client_id": reg.client_id,
        "redirect_uri": reg.redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    parts = urlsplit(str(metadata["authorization_endpoint"]))
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))


def check_response_issuer(metadata: dict[str, Any], iss: str | None) -> None:
    """RFC 9207: a given `iss` must be the issuer; one the server promised must be given."""
    if iss is None:
        if metadata.get("authorization_response_iss_parameter_supported"):
            raise FlowError("the authorization response has no iss, though the server promised one")
        return
    if iss != metadata.get("issuer"):
        raise FlowError(f"the authorization response came from issuer {iss!r}, not {metadata.get('issuer')!r}")


def client_assertion(metadata: dict[str, Any], client_id: str, private_key: str, algorithm: str) -> str:
    """An RFC 7523 client assertion: the client says who it is, signed, for this issuer, briefly."""
    import jwt  # pyjwt: only machine clients with keys need it

    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": metadata.get("issuer"),
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
    }
    try:
        return jwt.encode(claims, private_key, algorithm=algorithm)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise FlowError(f"cannot sign the client assertion with privateKey ({algorithm}): {exc}") from None


async def _token_request(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    reg: Registration,
    form: dict[str, str],
    assertion: str | None = None,
    dpop: DpopKey | None = None,
) -> Tokens:
    endpoint = str(metadata["token_endpoint"])
    headers = {"accept": "application/json"}
    form = dict(form)
    if assertion is not None:
        form["client_id"] = reg.client_id
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        form["client_assertion"] = assertion
    elif reg.auth_method == "client_secret_basic" and reg.client_secret is not None:
        pair = f"{quote(reg.client_id, safe='')}:{quote(reg.client_secret, safe='')}"
        headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = reg.client_id
        if reg.auth_method == "client_secret_post" and reg.client_secret is not None:
            form["client_secret"] = reg.client_secret
    for _ in range(2):  # a DPoP nonce the server asks for gets one retry (RFC 9449 §8)
        if dpop is not None:
            headers["dpop"] = dpop.proof("POST", endpoint, nonce=dpop.nonces.get(endpoint))
        r = await request(client, "POST", endpoint, "token endpoint", data=form, headers=headers)
        if r.status == 200:
            break
        message, code = _error_of(r)
        nonce = r.headers.get("dpop-nonce")
        if dpop is None or code != "use_dpop_nonce" or not nonce or dpop.nonces.get(endpoint) == nonce:
            raise FlowError(f"token request to {endpoint} refused: {message}", code)
        dpop.nonces[endpoint] = nonce
    else:
        raise FlowError(f"token request to {endpoint} refused: {message}", code)
    doc = r.json()
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
        raise FlowError(f"token endpoint {endpoint} returned no access_token")
    if not B64TOKEN.fullmatch(doc["access_token"]):
        raise FlowError(f"token endpoint {endpoint} returned an access token that cannot be sent as a Bearer token")
    token_type = str(doc.get("token_type", "bearer")).lower()
    if token_type not in ("bearer", "dpop") or (token_type == "dpop" and dpop is None):
        raise FlowError(f"token endpoint {endpoint} issued a {doc.get('token_type')!r} token, not a Bearer token")
    lifetime = doc.get("expires_in")
    expires = time.time() + float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else None
    refresh = doc.get("refresh_token") if isinstance(doc.get("refresh_token"), str) else None
    scope = doc.get("scope") if isinstance(doc.get("scope"), str) else form.get("scope")
    issuer = str(metadata.get("issuer"))
    kind = "DPoP" if token_type == "dpop" else "Bearer"
    return Tokens(doc["access_token"], refresh or form.get("refresh_token"), expires, scope, issuer, kind)


async def exchange_code(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    reg: Registration,
    *,
    code: str,
    verifier: str,
    resource: str,
    dpop: DpopKey | None = None,
) -> Tokens:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": reg.redirect_uri,
        "code_verifier": verifier,
        "resource": resource,
    }
    return await _token_request(client, metadata, reg, form, dpop=dpop)


async def client_credentials(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    reg: Registration,
    *,
    resource: str,
    scope: str | None,
    assertion: str | None = None,
    dpop: DpopKey | None = None,
) -> Tokens:
    """The client_credentials grant: a token for the hub itself, no person involved."""
    form = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        form["scope"] = scope
    return await _token_request(client, metadata, reg, form, assertion, dpop)


async def refresh(
    client: httpx.AsyncClient,
    metadata: dict[str, Any],
    reg: Registration,
    tokens: Tokens,
    *,
    resource: str,
    dpop: DpopKey | None = None,
) -> Tokens:
    if tokens.refresh_token is None:
        raise FlowError("no refresh token", "invalid_grant")
    if tokens.issuer != metadata.get("issuer"):  # never hand a refresh token to another server
        raise FlowError(f"the tokens were issued by {tokens.issuer}, not {metadata.get('issuer')}", "invalid_grant")
    form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "resource": resource}
    if tokens.scope:
        form["scope"] = tokens.scope
    return await _token_request(client, metadata, reg, form, dpop=dpop)
