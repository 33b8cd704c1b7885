"""The `onemcp.auth` settings of mcp.json: API keys, JWT, the built-in OAuth server, roles, limits.

Owns their validation only (scopes, roles and their inheritance, quota patterns, JWT algorithms and
the JWKS URL); what a credential may do is decided in `onemcp.auth`.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from onemcp.config import values
from onemcp.config.base import Seconds
from onemcp.config.base import StrictModel as _Model

JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA")


class JwtSettings(_Model):
    """Access tokens from an external authorization server, checked against its JWKS."""

    jwks_url: str = Field(alias="jwksUrl")
    issuer: str
    audience: str | None = None  # default: the hub's resource URL (RFC 8707)
    leeway: float = Field(60.0, ge=0, le=3600)
    algorithms: list[str] = ["RS256", "ES256", "EdDSA"]
    # A claim naming the caller's roles (`onemcp.auth.roles`): a string or a list, e.g. "roles" or "groups".
    roles_claim: str | None = Field(None, alias="rolesClaim")

    @field_validator("issuer")
    @classmethod
    def _issuer_named(cls, issuer: str) -> str:
        if not issuer.strip():
            raise ValueError("is empty: no token's iss would match (name the authorization server, https://...)")
        return issuer

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url_ok(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (http:// only on this machine)")
        if problem := values.url_problem(url):
            raise ValueError(problem)
        if url.startswith("http://") and urlsplit(url).hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("keys fetched over plain http could be swapped on the way: use https://")
        return url

    @field_validator("algorithms")
    @classmethod
    def _algorithms_ok(cls, algorithms: list[str]) -> list[str]:
        """Public-key algorithms only: a JWKS publishes the keys that verify, so a shared secret there
        (HS256) would let anyone sign; `none` signs nothing."""
        if not algorithms:
            raise ValueError(f"name at least one of {', '.join(JWT_ALGORITHMS)}")
        for name in algorithms:
            if name not in JWT_ALGORITHMS:
                raise ValueError(
                    f"{name!r} is not a public-key signature algorithm: one of {', '.join(JWT_ALGORITHMS)}"
                )
        return algorithms


class RateLimit(_Model):
    requests_per_minute: float = Field(alias="requestsPerMinute", gt=0)
    burst: int = Field(20, ge=1)


class Quota(_Model):
    """At most `calls` calls per `window` seconds per principal to tools matching `tool`."""

    tool: str  # "<server>/<tool>", "<server>/*" or "*"
    calls: int = Field(ge=1)
    window: Seconds

    @field_validator("tool")
    @classmethod
    def _pattern_ok(cls, tool: str) -> str:
        """The pattern is matched against "<server>/<tool>": one that is not of that shape never matches."""
        if tool != "*" and not _QUOTA_TOOL.match(tool):
            raise ValueError(
                f'{tool!r} matches no call: write "<server>/<tool>" (the tool may be a glob such as'
                ' "read_*"), "<server>/*" or "*"'
            )
        return tool


_QUOTA_TOOL = re.compile(r"^[A-Za-z0-9_-]+/\S+$")  # a server name, '/', a tool name or glob


_SCOPE = re.compile(r"^(mcp|admin|operator|templates|(server|tag|role):[^\s/]+|tool:[^\s/]+/[^\s]+)$")


def scope_problem(scope: str) -> str | None:
    """Why `scope` is not one of the hub's scopes (None: it is)."""
    if _SCOPE.match(scope):
        return None
    return (
        f"unknown scope {scope!r}: expected mcp, admin, operator, templates, server:<name>, tag:<tag>,"
        " tool:<server>/<tool> or role:<role>"
    )


class Role(_Model):
    """A named bundle of scopes; `inherits` adds other roles' scopes (a developer is also a viewer)."""

    scopes: list[str] = []
    inherits: list[str] = []

    @field_validator("scopes")
    @classmethod
    def _scopes_ok(cls, value: list[str]) -> list[str]:
        for scope in value:
            if scope.startswith("role:"):
                raise ValueError(f"{scope!r}: a role takes another's scopes with inherits: [{scope[5:]!r}]")
            if (problem := scope_problem(scope)) is not None:
                raise ValueError(problem)
        return value


class AuthSettings(_Model):
    """Who may use the hub. With nothing here the hub is open (and only allowed on loopback)."""

    api_keys: bool = Field(False, alias="apiKeys")  # keys made with `onemcp auth key create`
    jwt: JwtSettings | None = None
    oauth: bool = False  # the built-in OAuth 2.1 authorization server
    # "page": the operator approves each authorization in the browser; "auto": approve at once
    # (only for a hub nobody else can reach)
    oauth_consent: Literal["page", "auto"] = Field("page", alias="oauthConsent")
    # Who may click Approve on the consent page. "loopback": whoever reaches it (safe when only this
    # machine can); "key": whoever types an API key with the admin scope (remembered per browser for
    # 12 h). Unset: "loopback" on a loopback bind (and a loopback publicUrl, if any), else "key".
    oauth_operator: Literal["loopback", "key"] | None = Field(None, alias="oauthOperator")
    public_url: str | None = Field(None, alias="publicUrl")  # the canonical /mcp URL (resource)
    rate_limit: RateLimit | None = Field(None, alias="rateLimit")
    quotas: list[Quota] = []
    # Named scope bundles, granted by a credential's `role:<name>` scope (API keys: `--role`), by the
    # JWT claim `jwt.rolesClaim`, or to every token the built-in OAuth server issues a client (`clientRoles`).
    roles: dict[str, Role] = {}
    client_roles: dict[str, list[str]] = Field({}, alias="clientRoles")  # OAuth client_id -> role names
    # Replicas sharing a Redis: while it cannot be reached, an API key or built-in OAuth token this replica
    # confirmed there within this many seconds still counts; any other is refused with 503 (try again).
    # Longer: a revocation made just before an outage holds later; shorter: an outage stops clients sooner.
    redis_outage_grace: Seconds = Field(60.0, alias="redisOutageGrace")

    @field_validator("public_url")
    @classmethod
    def _public_url_ok(cls, url: str | None) -> str | None:
        """The resource tokens are issued for, and the origin of the hub's own pages: a URL, or nothing works."""
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be the URL clients reach /mcp at (https://mcp.example/mcp)")
        if url is not None and (problem := values.url_problem(url)):
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _roles_ok(self) -> AuthSettings:
        for name, role in self.roles.items():
            for parent in role.inherits:
                if parent not in self.roles:
                    raise ValueError(f"roles.{name}.inherits: no role {parent!r} (roles: {', '.join(self.roles)})")
        for name in self.roles:  # a cycle would grant nothing sensible: refuse it
            seen: list[str] = []
            stack = [(name, [name])]
            while stack:
                current, path = stack.pop()
                for parent in self.roles[current].inherits:
                    if parent == name:
                        raise ValueError(f"roles: inheritance cycle {' -> '.join([*path, parent])}")
                    if parent not in seen:
                        seen.append(parent)
                        stack.append((parent, [*path, parent]))
        for client, names in self.client_roles.items():
            for role_name in names:
                if role_name not in self.roles:
                    raise ValueError(f"clientRoles.{client}: no role {role_name!r}")
        return self

    @model_validator(mode="after")
    def _oauth_settings_need_oauth(self) -> AuthSettings:
        """The built-in OAuth server's settings, set while it is off, would do nothing."""
        unused = [
            key
            for key, on in (
                ("oauthConsent", self.oauth_consent != "page"),
                ("oauthOperator", self.oauth_operator is not None),
                ("clientRoles", bool(self.client_roles)),
            )
            if on
        ]
        if unused and not self.oauth:
            raise ValueError(
                f"{', '.join(map(repr, unused))}: for the built-in OAuth server, which needs 'oauth': true"
            )
        return self

    @property
    def required(self) -> bool:
        return self.api_keys or self.jwt is not None or self.oauth
