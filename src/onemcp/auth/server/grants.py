"""What a code or token stands for, and the rules for trading one for another (no HTTP here).

Owns minting authorization codes, the token endpoint's two grants (authorization_code checked
against its PKCE S256 challenge, client, redirect URI and resource; refresh_token with rotation
and reuse detection), revocation, and the check of an access token presented to the hub.
Persistence is `store`; request parsing, client authentication and replies are `oauth_server`.

Tokens are opaque random strings, prefixed so the gate's other verifiers never mistake them:
`omat_` access, `omrt_` refresh, `omac_` codes. Only their SHA-256 is stored.

Errors: `OAuthError(error, description, status)`, an RFC 6749 §5.2 error reply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from onemcp.auth.principal import InvalidToken, Principal
from onemcp.auth.server.store import ClientRecord, CodeGrant, OAuthState, Token, digest

audit = logging.getLogger("onemcp.audit")

ACCESS_PREFIX = "omat_"
REFRESH_PREFIX = "omrt_"
CODE_PREFIX = "omac_"
PURGE_EVERY = 600.0
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1

Clock = Callable[[], float]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Lifetimes:
    access: float = 15 * 60
    refresh: float = 30 * 86400  # each rotation starts a new 30 days
    code: float = 60


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def canonical_resource(uri: str) -> str:
    """RFC 8707 resource for comparison: lower-case scheme and host, no fragment, no trailing slash."""
    parts = urlsplit(uri.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def sse_resource(resource: str) -> str | None:
    """The legacy HTTP+SSE entry's URL beside the hub's resource (its /mcp URL), None when the resource
    is not an /mcp URL. The hub is one protected resource with two entry URLs: clients accept RFC 9728
    metadata only for a resource their own URL lies under, so one that starts at /sse is told /sse and
    asks for a token for it; the token issued is the hub's, good at every entry."""
    return resource.removesuffix("/mcp") + "/sse" if resource.endswith("/mcp") else None


def check_resource(given: str | None, expected: str) -> None:
    """A `resource` parameter, when given, must name `expected` (already canonical) or its /sse entry."""
    if given is None:
        return
    named = canonical_resource(given)
    if "#" in given or (named != expected and named != sse_resource(expected)):
        raise OAuthError("invalid_target", f"this server issues tokens only for {expected}")


class Grants:
    def __init__(self, store: OAuthState, resource: str, lifetimes: Lifetimes, clock: Clock) -> None:
        self.store = store
        self.resource = resource  # canonical
        self.lifetimes = lifetimes
        self.clock = clock
        self._purged = 0.0

    def mint_code(
        self, client_id: str, redirect_uri: str, explicit: bool, challenge: str, scopes: tuple[str, ...]
    ) -> str:
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        expires = self.clock() + self.lifetimes.code
        grant = CodeGrant(client_id, redirect_uri, explicit, challenge, scopes, self.resource, expires)
        self.store.add_code(digest(code), grant)
        return code

    def exchange_code(self, client: ClientRecord, params: dict[str, str]) -> dict[str, Any]:
        """grant_type=authorization_code: the token reply, or OAuthError."""
        code, verifier = params.get("code"), params.get("code_verifier")
        if code is None:
            raise OAuthError("invalid_request", "code is required")
        if verifier is None:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        code_hash = digest(code)
        grant = self.store.redeem_code(code_hash)  # used up now, whatever follows
        now = self.clock()
        if grant is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if grant.used:
            # RFC 6749 §4.1.2: a replayed code takes down what it was exchanged for.
            if grant.family is not None:
                self.store.revoke_family(grant.family, now)
                audit.warning("oauth code replayed client=%s family=%s revoked", client.client_id, grant.family)
            raise OAuthError("invalid_grant", "authorization code already used")
        if grant.expires <= now:
            raise OAuthError("invalid_grant", "authorization code expired")
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        redirect_uri = params.get("redirect_uri")
        if (grant.redirect_explicit or redirect_uri is not None) and redirect_uri != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if not VERIFIER.fullmatch(verifier):
            raise OAuthError("invalid_request", "code_verifier must be 43-128 unreserved characters")
        if not hmac.compare_digest(s256(verifier).encode(), grant.challenge.encode()):
            raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        check_resource(params.get("resource"), grant.resource)
        family = secrets.token_hex(16)
        reply = self._issue(family, client, grant.resource, grant.scopes, grant.scopes, now)
        self.store.bind_code(code_hash, family)
        return reply

    def refresh(self, client: ClientRecord, params: dict[str, str]) -> dict[str, Any]:
        """grant_type=refresh_token: a new access token and a new refresh token (the old one is spent)."""
        if "refresh_token" not in client.grant_types:
            raise OAuthError("unauthorized_client", "this client did not register for refresh_token")
        token = params.get("refresh_token")
        if token is None:
            raise OAuthError("invalid_request", "refresh_token is required")
        token_hash = digest(token)
        grant = self.store.refresh_token(token_hash) if token.startswith(REFRESH_PREFIX) else None
        now = self.clock()
        if grant is None or grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token")
        if grant.revoked:
            raise OAuthError("invalid_grant", "refresh token revoked")
        if grant.rotated:
            self._replayed(client, grant.family, now)
        if grant.expires <= now:
            raise OAuthError("invalid_grant", "refresh token expired")
        if grant.resource != self.resource:
            raise OAuthError("invalid_grant", "refresh token issued for another resource")
        check_resource(params.get("resource"), self.resource)
        requested = params.get("scope")
        scopes = tuple(dict.fromkeys(requested.split())) if requested else grant.scopes
        if not scopes or not set(scopes) <= set(grant.scopes):
            raise OAuthError("invalid_scope", "a refresh may only narrow the granted scopes")
        if not self.store.rotate(token_hash, now):
            self._replayed(client, grant.family, now)  # lost a race with another use of the same token
        # RFC 6749 §6: the new refresh token keeps the old one's scopes; the access token may be narrower.
        return self._issue(grant.family, client, grant.resource, scopes, grant.scopes, now)

    def _replayed(self, client: ClientRecord, family: str, now: float) -> NoReturn:
        """A spent refresh token came back: someone holds a copy, so the whole grant dies."""
        self.store.revoke_family(family, now)
        audit.warning("oauth refresh token reused client=%s family=%s revoked", client.client_id, family)
        raise OAuthError("invalid_grant", "refresh token already used; the grant is revoked")

    def _issue(
        self,
        family: str,
        client: ClientRecord,
        resource: str,
        scopes: tuple[str, ...],
        refresh_scopes: tuple[str, ...],
        now: float,
    ) -> dict[str, Any]:
        access = ACCESS_PREFIX + secrets.token_urlsafe(32)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32) if "refresh_token" in client.grant_types else None
        self.store.issue(
            family,
            client.client_id,
            resource,
            now,
            Token(digest(access), now + self.lifetimes.access, scopes),
            None if refresh is None else Token(digest(refresh), now + self.lifetimes.refresh, refresh_scopes),
        )
        if now - self._purged > PURGE_EVERY:
            self._purged = now
            self.store.purge(now)
        audit.info("oauth tokens issued client=%s scopes=%s", client.client_id, " ".join(scopes))
        reply: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.lifetimes.access),
            "scope": " ".join(scopes),
        }
        if refresh is not None:
            reply["refresh_token"] = refresh
        return reply

    def revoke(self, token: str, client_id: str | None) -> None:
        """RFC 7009: an access token alone; a refresh token with its whole grant. Others' tokens: nothing."""
        now = self.clock()
        token_hash = digest(token)
        if token.startswith(ACCESS_PREFIX):
            grant = self.store.access_token(token_hash)
            if grant is not None and client_id in (None, grant.client_id):
                self.store.revoke_access(token_hash, now)
                audit.info("oauth access token revoked client=%s", grant.client_id)
        elif token.startswith(REFRESH_PREFIX):
            grant = self.store.refresh_token(token_hash)
            if grant is not None and client_id in (None, grant.client_id):
                self.store.revoke_family(grant.family, now)
                audit.info("oauth grant revoked client=%s family=%s", grant.client_id, grant.family)

    def principal(self, token: str) -> Principal | None:
        """The principal for an access token minted here for this resource; None for tokens not ours."""
        if not token.startswith(ACCESS_PREFIX):
            return None
        grant = self.store.access_token(digest(token))
        if grant is None:
            raise InvalidToken("unknown access token")
        if grant.revoked:
            raise InvalidToken("access token revoked")
        if grant.expires <= self.clock():
            raise InvalidToken("access token expired")
        if grant.resource != self.resource:
            raise InvalidToken("access token issued for another resource")
        return Principal(
            id=f"oauth:{grant.client_id}",
            scopes=frozenset(grant.scopes),
            kind="oauth",
            expires=grant.expires,
            labels={"client_id": grant.client_id},
            grant=grant.family,
        )

    def granted(self, token: str, family: str) -> Principal | None:
        """What the grant `family` still stands for, asked of a stream opened with its access token `token`
        once that may have expired or been forgotten (a family keeps only its newest): a principal with
        the grant's scopes while the grant lives (not revoked, its newest refresh token unexpired: the
        client may refresh at any moment) and `token` itself was not revoked; None once either ends."""
        known = self.store.access_token(digest(token))
        if known is not None and (known.revoked or known.family != family):
            return None
        grant = self.store.live_grant(family, self.clock())
        if grant is None or grant.resource != self.resource:
            return None
        labels = {"client_id": grant.client_id}
        return Principal(f"oauth:{grant.client_id}", frozenset(grant.scopes), "oauth", grant.expires, labels, family)
