"""Finding a protected upstream's authorization server (the hub as an OAuth client).

Owns what the MCP authorization spec prescribes for discovery: parsing the `WWW-Authenticate`
challenge, RFC 9728 protected resource metadata (the header's URL, then the path-inserted and the
root well-known URLs), RFC 8414 / OpenID Connect metadata in the spec's order, and the checks on
what comes back (the resource covers the server's URL, the issuer is the one asked for, PKCE S256
is offered, every endpoint is https or loopback). A server without resource metadata gets the
2025-03-26 fallback: the authorization server is the server's origin, with default endpoint
paths. HTTP through `oauth_http` with the httpx client given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from onemcp.upstream.oauth.http import OAuthClientError, OAuthHttpError, check_url, request

PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
AUTH_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "registration_endpoint")


class DiscoveryError(OAuthClientError):
    """The upstream's authorization setup cannot be used: the message says why."""


def strings(doc: dict[str, Any], key: str) -> list[str]:
    """A metadata field that should be a list of strings (anything else reads as empty)."""
    value = doc.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Challenge:
    """A `Bearer` challenge from a 401 or 403 (RFC 6750 §3)."""

    params: dict[str, str] = field(default_factory=dict)

    @property
    def resource_metadata(self) -> str | None:
        return self.params.get("resource_metadata")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope") or None

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenge(header: str | None) -> Challenge:
    """The Bearer (or DPoP) challenge's parameters; empty when there is none."""
    if not header:
        return Challenge()
    m = re.search(r"(?i)(?:^|,)\s*(?:bearer|dpop)(?:\s+|$)", header)
    if m is None:
        return Challenge()
    params: dict[str, str] = {}
    rest = header[m.end() :]
    pos = 0
    while True:
        pm = AUTH_PARAM.match(rest, pos)
        if pm is None:
            break  # the end, or the next scheme's token68 / name
        value = pm.group(2) if pm.group(2) is not None else pm.group(3)
        params.setdefault(pm.group(1).lower(), re.sub(r"\\(.)", r"\1", value))
        pos = pm.end()
        comma = re.compile(r"\s*,\s*").match(rest, pos)
        if comma is None:
            break
        pos = comma.end()
    return Challenge(params)


def canonical_resource(url: str) -> str:
    """The server's canonical URI (RFC 8707 as the MCP spec uses it): lowercase scheme and host, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def covers(resource: str, server_url: str) -> bool:
    """Is `server_url` the protected resource `resource` or a path below it?"""
    r, s = urlsplit(canonical_resource(resource)), urlsplit(canonical_resource(server_url))
    if (r.scheme, r.netloc) != (s.scheme, s.netloc):
        return False
    base = r.path.rstrip("/")
    return s.path.rstrip("/") == base or s.path.startswith(base + "/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The JSON object at `url`, or None when there is none (4xx/5xx, not JSON, unreachable)."""
    try:
        reply = await request(client, "GET", url, "metadata", headers={"accept": "application/json"})
    except OAuthHttpError:
        return None
    doc = reply.json() if reply.status == 200 else None
    return doc if isinstance(doc, dict) else None


def prm_urls(server_url: str, challenge: Challenge) -> list[str]:
    """Where the resource metadata may be, in the order the spec says to try."""
    urls = [challenge.resource_metadata] if challenge.resource_metadata else []
    path = urlsplit(server_url).path.rstrip("/")
    if path:
        urls.append(f"{_origin(server_url)}{PRM_WELL_KNOWN}{path}")
    urls.append(f"{_origin(server_url)}{PRM_WELL_KNOWN}")
    return urls


async def protected_resource(client: httpx.AsyncClient, server_url: str, challenge: Challenge) -> dict[str, Any] | None:
    """The server's RFC 9728 metadata, checked; None when it publishes none."""
    for url in prm_urls(server_url, challenge):
        try:
            check_url(url, "resource metadata")
        except OAuthHttpError as exc:
            raise DiscoveryError(str(exc)) from None
        doc = await _get_json(client, url)
        if doc is None:
            continue
        if not strings(doc, "authorization_servers"):
            raise DiscoveryError(f"resource metadata at {url} names no authorization_servers")
        resource = doc.get("resource")
        if not isinstance(resource, str) or not covers(resource, server_url):
            raise DiscoveryError(
                f"resource metadata at {url} is for {resource!r}, not {canonical_resource(server_url)!r}"
            )
        return doc
    return None


def as_metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 path insertion, then OIDC path insertion, then OIDC path appending."""
    origin, path = _origin(issuer), urlsplit(issuer).path.rstrip("/")
    if not path:
        return [f"{origin}/.well-known/oauth-authorization-server", f"{origin}/.well-known/openid-configuration"]
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


def legacy_metadata(server_url: str) -> dict[str, Any]:
    """The 2025-03-26 defaults for a server with no metadata anywhere: endpoints at its origin."""
    origin = _origin(server_url)
    return {
        "issuer": origin,
        "authorization_endpoint": f"{origin}/authorize",
        "token_endpoint": f"{origin}/token",
        "registration_endpoint": f"{origin}/register",
        "code_challenge_methods_supported": ["S256"],
        "onemcp_assumed": True,
    }


async def authorization_server(client: httpx.AsyncClient, issuer: str, *, fallback: str | None) -> dict[str, Any]:
    """The issuer's metadata, checked. With `fallback` (no resource metadata), defaults may stand in."""
    try:
        check_url(issuer, "authorization server")
    except OAuthHttpError as exc:
        raise DiscoveryError(str(exc)) from None
    for url in as_metadata_urls(issuer):
        doc = await _get_json(client, url)
        if doc is None:
            continue
        if doc.get("issuer") != issuer:  # identical, not normalised (RFC 8414 §3.3)
            raise DiscoveryError(f"metadata at {url} is for issuer {doc.get('issuer')!r}, not {issuer!r}")
        for endpoint in ENDPOINTS:
            value = doc.get(endpoint)
            if value is None and endpoint == "registration_endpoint":
                continue
            if not isinstance(value, str):
                raise DiscoveryError(f"metadata at {url} has no {endpoint}")
            try:
                check_url(value, endpoint)
            except OAuthHttpError as exc:
                raise DiscoveryError(str(exc)) from None
        if "S256" not in strings(doc, "code_challenge_methods_supported"):
            raise DiscoveryError(f"{issuer} does not offer PKCE S256 (code_challenge_methods_supported)")
        return doc
    if fallback is not None:
        return legacy_metadata(fallback)
    raise DiscoveryError(f"no authorization server metadata for {issuer}")


@dataclass(frozen=True)
class Discovered:
    resource: str  # what tokens are requested for (RFC 8707)
    metadata: dict[str, Any]  # the authorization server's
    scopes_supported: list[str]  # the resource's, when it says


async def discover(client: httpx.AsyncClient, server_url: str, challenge: Challenge) -> Discovered:
    prm = await protected_resource(client, server_url, challenge)
    if prm is None:
        metadata = await authorization_server(client, _origin(server_url), fallback=server_url)
        return Discovered(canonical_resource(server_url), metadata, [])
    issuer = strings(prm, "authorization_servers")[0]
    metadata = await authorization_server(client, issuer, fallback=None)
    # the resource is echoed exactly as the server names itself
    return Discovered(str(prm["resource"]), metadata, strings(prm, "scopes_supported"))
