"""The hub as an OAuth 2.1 resource server: who is calling, and may they come in.

Owns, for every request to a protected path: reading the bearer token (the Authorization
header only), asking each configured verifier (API keys, JWT, the built-in authorization
server), the 401 / 403 / 429 answers with their `WWW-Authenticate` and `Retry-After`
headers, per-principal rate limits, RFC 9728 protected resource metadata, and audit lines
for each decision. What a principal may use once in is decided by the hub (scopes).
The token a client presents is never forwarded anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

import anyio

from onemcp.auth.access import LEGACY_HTTP, MODERN_HTTP, SSE
from onemcp.auth.held import Held
from onemcp.auth.keys import open_keys
from onemcp.auth.principal import ADMIN, ANONYMOUS, BASE, InvalidToken, Principal, Unconfirmed, Verifier
from onemcp.auth.roles import Roles
from onemcp.auth.server.grants import OAuthError, sse_resource
from onemcp.config.auth_settings import AuthSettings
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.protocol.errors import echo
from onemcp.protocol.versions import MODERN_VERSIONS

log = logging.getLogger("onemcp.auth")
audit = logging.getLogger("onemcp.audit")
PRM_PATH = "/.well-known/oauth-protected-resource"
RECHECK = 30.0  # seconds between checks that a long-lived request's credential still holds


class Limiter(Protocol):
    async def take(self, who: str) -> float: ...


class RateLimiter:
    """A token bucket per principal: `per_minute` sustained, `burst` at once (per process; replicas
    sharing a Redis use `auth.limits.RedisRateLimiter`)."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, who: str) -> float:
        """0 when allowed; otherwise the seconds to wait."""
        now = time.monotonic()
        tokens, last = self._buckets.get(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[who] = (tokens - 1.0, now)
            return 0.0
        self._buckets[who] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Gate:
    def __init__(
        self,
        settings: AuthSettings,
        config_dir: Path | None,
        public_url: str | None,
        bind_host: str = "127.0.0.1",
        allowed_hosts: list[str] | None = None,
        shared_store: str | None = None,
    ) -> None:
        self.settings = settings
        self.required = settings.required
        self.public_url = settings.public_url or public_url
        # API keys: keys.db beside the config, or (`shared_store`: the replicas' Redis) kept there for all replicas
        grace = settings.redis_outage_grace  # while Redis cannot be reached, a credential read lately still counts
        self.keys = open_keys(config_dir, shared_store, grace) if settings.api_keys and config_dir is not None else None
        self.verifiers: list[Verifier] = []
        if self.keys is not None:
            self.verifiers.append(self.keys)
        self.issuers: list[str] = []
        if settings.jwt is not None:
            from onemcp.auth.jwt import JwtVerifier

            self.verifiers.append(JwtVerifier(settings.jwt, self.resource({})))
            self.issuers.append(settings.jwt.issuer)
        self.roles = Roles(settings.roles, settings.client_roles)  # role:<name> scopes become the role's scopes
        self.oauth: Any = None
        if settings.oauth and config_dir is not None:
            from onemcp.auth.server.app import OAuthServer
            from onemcp.auth.server.authorize import operator_policy

            base = self.resource({}).removesuffix("/mcp")
            self.oauth = OAuthServer(
                config_dir / "oauth.db",
                base,
                self.resource({}),
                scopes_supported=[BASE, ADMIN],
                consent=settings.oauth_consent,
                operator=operator_policy(settings.oauth_operator, bind_host, settings.public_url, allowed_hosts),
                keys=self.keys,
                resolve=self.roles.resolve,  # an operator key's admin may come from a role, as everywhere
                shared=shared_store,  # replicas: clients, codes, tokens and consent pages in their Redis
                outage_grace=grace,
            )
            self.verifiers.append(self.oauth)
            self.issuers.append(base)
            if settings.oauth_consent == "auto":
                log.warning(
                    'oauthConsent is "auto": every authorization is approved at once, so any web page open'
                    " in a browser that reaches this hub can get an admin token (for tests only)"
                )
        self.held = Held()  # what each principal holds open (maxRequestsPerPrincipal, maxStreamsPerPrincipal)
        limit = settings.rate_limit
        self.limiter: Limiter | None = (
            RateLimiter(limit.requests_per_minute, limit.burst) if limit is not None else None
        )

    def resource(self, scope: Scope) -> str:
        """The hub's canonical resource URI (RFC 8707): configured, or from the request."""
        if self.public_url:
            return self.public_url
        host = asgi.header(scope, b"host") if scope else None
        return f"http://{host or '127.0.0.1'}/mcp"

    def metadata(self, scope: Scope) -> dict[str, Any]:
        """RFC 9728 protected resource metadata: the hub's, or (at `<PRM_PATH>/sse`) the same for the
        legacy HTTP+SSE entry, whose clients accept only metadata for a resource their URL lies under."""
        resource = self.resource(scope)
        if scope.get("path") == f"{PRM_PATH}/sse":
            resource = sse_resource(resource) or resource
        return {
            "resource": resource,
            "authorization_servers": self.issuers,
            "scopes_supported": [BASE, ADMIN],  # server:/tag:/tool: scopes exist too (API keys, JWTs)
            "bearer_methods_supported": ["header"],
            "resource_name": "onemcp hub",
        }

    def challenge(self, scope: Scope, *, error: str | None = None, needed: str = BASE) -> bytes:
        resource = self.resource(scope)
        base = resource.removesuffix("/mcp")
        entry = "/sse" if entry_of(scope) == SSE and sse_resource(resource) is not None else "/mcp"
        parts = [f'resource_metadata="{base}{PRM_PATH}{entry}"', f'scope="{needed}"']
        if error is not None:
            parts.insert(0, f'error="{error}"')
        return ("Bearer " + ", ".join(parts)).encode()

    async def verify(self, token: str) -> Principal:
        """The principal a bearer token stands for (InvalidToken when none does)."""
        for verifier in self.verifiers:
            principal = await verifier.verify(token)
            if principal is not None:
                return self.roles.resolve(principal)
        raise InvalidToken("unknown token")

    async def admit(
        self, scope: Scope, send: Send, *, admin: bool = False, check: Callable[[Principal], str | None] | None = None
    ) -> Principal | None:
        """The request's principal; None when it was refused (and the answer already sent)."""
        path = echo(scope.get("path", ""))  # a caller's: written to the audit line, up to its 64 KiB
        entry = entry_of(scope)
        if not self.required:
            return ANONYMOUS
        raw = asgi.header(scope, b"authorization") or ""
        scheme, _, token = raw.partition(" ")
        principal: Principal | None = None
        reason = "no bearer token"
        if scheme.lower() == "bearer" and token.strip():
            try:
                principal = await self.verify(token.strip())
            except Unconfirmed as exc:  # not refused: cannot be checked now (the replicas' Redis): try again
                audit.info("auth unavailable principal=- entry=%s path=%s reason=%s", entry, path, exc)
                body = {"error": "temporarily_unavailable", "error_description": str(exc)}
                await asgi.send_json(send, 503, body, [(b"retry-after", b"5")])
                return None
            except InvalidToken as exc:
                reason = str(exc)
        if principal is None:
            audit.info("auth denied principal=- entry=%s path=%s reason=%s", entry, path, reason)
            error = None if reason == "no bearer token" else "invalid_token"
            headers = [(b"www-authenticate", self.challenge(scope, error=error))]
            await asgi.send_json(send, 401, {"error": error or "unauthorized", "error_description": reason}, headers)
            return None
        if check is not None:  # the caller's own rule (the operator surfaces: `access.operator_needs`)
            needed = check(principal)
        else:
            needed = ADMIN if admin and not principal.is_admin else BASE if not principal.may_enter else None
        if needed is not None:
            who = principal.id
            audit.info("auth denied principal=%s entry=%s path=%s reason=needs scope %s", who, entry, path, needed)
            headers = [(b"www-authenticate", self.challenge(scope, error="insufficient_scope", needed=needed))]
            await asgi.send_json(send, 403, {"error": "insufficient_scope", "scope": needed}, headers)
            return None
        if self.limiter is not None:
            wait = await self.limiter.take(principal.id)
            if wait > 0:
                audit.info("rate limited principal=%s entry=%s path=%s", principal.id, entry, path)
                headers = [(b"retry-after", str(math.ceil(wait)).encode())]
                await asgi.send_json(send, 429, {"error": "rate_limited", "retry_after": math.ceil(wait)}, headers)
                return None
        audit.debug("auth allowed principal=%s entry=%s path=%s", principal.id, entry, path)
        return principal

    async def holds(self, scope: Scope, principal: Principal) -> bool:
        """Does the request's credential still stand for `principal` (not revoked, not expired as its
        verifier judges, leeway included; the same scopes)? Asked of streams, checked when they opened.
        A built-in OAuth access token holds while its grant does (`_granted`), past its own expiry."""
        if not self.required:
            return True
        scheme, _, token = (asgi.header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        try:
            return (await self.verify(token.strip())).key == principal.key
        except InvalidToken:
            return principal.grant is not None and await self._granted(token.strip(), principal)

    async def _granted(self, token: str, principal: Principal) -> bool:
        """Does the built-in server's grant behind a stream's access token still allow what the stream was
        opened with? The grant lives (not revoked, a refresh token unexpired), the token was not revoked,
        and its scopes (roles resolved as they are now) still cover the stream's. An /sse session is its
        stream: ended at the token's expiry, it was lost however often its client refreshed."""
        try:
            grant = await self.oauth.io(self.oauth.grants.granted, token, principal.grant)
        except OAuthError:  # the shared store cannot be reached: as for any token it cannot check
            return False
        return grant is not None and principal.scopes <= self.roles.resolve(grant).scopes

    def guarded(self, scope: Scope, principal: Principal, receive: Receive) -> Receive:
        """`receive` that reports a disconnect once the credential no longer holds (checked every
        RECHECK seconds while the request waits on its client, and at its expiry): a stream held
        open on a revoked API key, or an expired token (a built-in OAuth token: once its grant ended
        or it was revoked), ends within that time. For streams only (a GET, a listen request): a call
        whose credential was valid when it came is answered."""
        if not self.required:
            return receive

        async def checked() -> MutableMapping[str, Any]:
            while True:
                wait, left = RECHECK, (principal.expires or 0.0) - time.time()
                if 0.0 < left < wait:  # at its expiry (the verifier says whether a leeway still admits it)
                    wait = left + 0.01
                with anyio.move_on_after(wait):
                    return await receive()
                if not await self.holds(scope, principal):
                    audit.info(
                        "auth ended principal=%s path=%s reason=credential revoked or expired",
                        principal.id,
                        scope.get("path", ""),
                    )
                    return {"type": "http.disconnect"}

        return checked

    async def forbid(self, scope: Scope, send: Send, needed: str, reply: dict[str, Any]) -> None:
        """The Forbidden `reply` as a 403 insufficient_scope with the step-up challenge for `needed`."""
        headers = [(b"www-authenticate", self.challenge(scope, error="insufficient_scope", needed=needed))]
        await asgi.send_json(send, 403, reply, headers)


def entry_of(scope: Scope) -> str:
    """The entry point a request came in through, for audit lines."""
    path = scope.get("path", "")
    if path.rstrip("/") == "/mcp":
        version = (asgi.header(scope, b"mcp-protocol-version") or "").strip()
        return MODERN_HTTP if version in MODERN_VERSIONS else LEGACY_HTTP
    if path in ("/sse", "/messages", "/messages/"):
        return SSE
    return echo(path)
