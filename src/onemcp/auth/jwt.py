"""JWT access tokens from an external authorization server, validated against its JWKS.

Checks the signature (keys from the JWKS URL), the issuer, the audience (the hub's resource URL
or its /sse entry's by default: RFC 8707, a token for another resource is refused), expiry and not-before with a
clock-skew leeway. Scopes come from the `scope` claim (space-separated) or `scp` (a list); roles
only from `rolesClaim` (a `role:` scope in `scope` is dropped: an IdP may let clients ask for any
scope string).

The key set (`KeySet`) is the hub's own cache, not PyJWT's: it is fetched again every
`KEYS_TTL` seconds (a key the IdP withdrew stops verifying by then), once for all waiting
requests, within `FETCH_TIMEOUT` for the whole exchange (not per read: an issuer that drips its
answer is cut off too); an unknown `kid` fetches it early, at most every `REFETCH_EVERY`
seconds; a fetch that fails is not retried for `RETRY_AFTER` seconds (requests meanwhile fail
at once, not each after the fetch's timeout), and the last good set keeps verifying until
`STALE_LIMIT`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import jwt as pyjwt

from onemcp.auth.principal import InvalidToken, Principal
from onemcp.auth.server.grants import sse_resource
from onemcp.config.auth_settings import JwtSettings
from onemcp.http.fetch import FetchFailed, fetch
from onemcp.protocol.errors import echo

log = logging.getLogger("onemcp.auth")

KEYS_TTL = 300.0  # seconds a fetched key set is used before it is fetched again
REFETCH_EVERY = 30.0  # an unknown kid fetches the set early, at most this often
RETRY_AFTER = 10.0  # after a failed fetch, no other is tried for this long
STALE_LIMIT = 3600.0  # a set older than this is not used even when the IdP cannot be reached
FETCH_TIMEOUT = 5.0  # the whole exchange: connect, send, read the body
MAX_JWKS_BYTES = 1024 * 1024


async def _fetch(url: str) -> dict[str, dict[str, Any]]:
    """The JWKS at `url`: kid -> its JWK (keys without a kid, or of a type PyJWT cannot use, left out)."""
    headers = {"accept": "application/json", "user-agent": "onemcp"}
    body = await fetch(url, within=FETCH_TIMEOUT, limit=MAX_JWKS_BYTES, headers=headers, follow_redirects=True)
    doc = json.loads(body)
    entries = doc.get("keys") if isinstance(doc, dict) else None
    keys: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            pyjwt.PyJWK(entry)  # usable at all (its own alg, or the type's default)
        except (pyjwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # a key of another use or type (an encryption key, an unsupported curve)
        keys[entry["kid"]] = entry
    return keys


def signing_key(jwk: dict[str, Any], alg: object) -> pyjwt.PyJWK:
    """The key of `jwk` for a token signed with `alg`: a JWK that names no alg (as Azure AD's) takes the
    token's, if it fits the key's type; PyJWT then refuses a token whose alg does not fit its key."""
    if "alg" in jwk or not isinstance(alg, str):
        return pyjwt.PyJWK(jwk)
    return pyjwt.PyJWK(jwk, algorithm=alg)


class KeySet:
    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, dict[str, Any]] = {}
        self.fetched = float("-inf")  # when the set now held was fetched (monotonic)
        self.tried = float("-inf")  # when a fetch was last started
        self.failed = float("-inf")  # when a fetch last failed
        self._lock = anyio.Lock()

    async def key(self, kid: str) -> dict[str, Any]:
        now = time.monotonic()
        due = now - self.fetched >= KEYS_TTL or (kid not in self.keys and now - self.tried >= REFETCH_EVERY)
        if due and now - self.failed >= RETRY_AFTER:
            await self._refresh(now)
        key = self.keys.get(kid) if time.monotonic() - self.fetched < STALE_LIMIT else None
        if key is None:
            raise InvalidToken(f"no signing key {echo(repr(kid))} in the issuer's key set")
        return key

    async def _refresh(self, asked: float) -> None:
        async with self._lock:  # one fetch for every request waiting on it
            if self.fetched >= asked or self.failed >= asked:
                return  # a fetch that ended while this one waited answered it too
            self.tried = time.monotonic()
            with anyio.CancelScope(shield=True):  # its waiters need its end even if its own caller left
                try:
                    keys = await _fetch(self.url)  # FETCH_TIMEOUT bounds it, whole
                except (FetchFailed, OSError, ValueError, TypeError, RecursionError) as exc:
                    self.failed = time.monotonic()
                    log.warning("JWKS %s could not be fetched (the last good keys stay in use): %s", self.url, exc)
                    return
                self.keys, self.fetched = keys, time.monotonic()


class JwtVerifier:
    def __init__(self, settings: JwtSettings, resource: str) -> None:
        self.settings = settings
        # the hub's resource, or its /sse entry's: a client that starts there asks its issuer for that
        sse = sse_resource(resource)
        self.audience = [settings.audience] if settings.audience else [resource] + ([sse] if sse else [])
        self.keys = KeySet(settings.jwks_url)

    async def verify(self, token: str) -> Principal | None:
        if token.count(".") != 2:
            return None  # not a JWT: another verifier's
        try:
            header = pyjwt.get_unverified_header(token)
            kid, alg = header.get("kid"), header.get("alg")
            if alg not in self.settings.algorithms:  # never "none", nor one the key set could be misread with
                raise InvalidToken(f"the token's alg {str(alg)[:20]!r} is not one this hub accepts")
            if not isinstance(kid, str):
                raise InvalidToken("the token names no signing key (kid)")
            key = signing_key(await self.keys.key(kid), alg)
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,  # a PyJWK: PyJWT then refuses a token whose alg does not fit the key's type
                algorithms=self.settings.algorithms,
                audience=self.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (pyjwt.PyJWTError, InvalidToken, ValueError, TypeError, NotImplementedError) as exc:
            log.info("JWT refused: %s", exc)
            raise InvalidToken(str(exc)) from None
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise InvalidToken("the token's sub is empty")
        scope = claims.get("scope", claims.get("scp"))  # `scp`: a list, or a string like `scope` (Azure AD)
        scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
        scopes = [s for s in scopes if not (isinstance(s, str) and s.startswith("role:"))]  # roles: rolesClaim only
        if self.settings.roles_claim is not None:  # the caller's roles, as role:<name> scopes the gate expands
            roles = claims.get(self.settings.roles_claim)
            named = [roles] if isinstance(roles, str) else roles if isinstance(roles, list) else []
            scopes = [*scopes, *(f"role:{r}" for r in named if isinstance(r, str))]
        return Principal(
            f"jwt:{claims['iss']}#{claims['sub']}",
            frozenset(str(s) for s in scopes),
            kind="jwt",
            expires=float(claims["exp"]),
        )
