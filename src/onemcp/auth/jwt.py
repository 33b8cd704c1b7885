"""JWT access tokens from an external authorization server, validated against its JWKS.

Checks the signature (keys from the JWKS URL, cached, fetched off the event loop), the
issuer, the audience (the hub's resource URL by default: RFC 8707, a token for another
resource is refused), expiry and not-before with a clock-skew leeway. Scopes come from
the `scope` claim (space-separated) or `scp` (a list).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import jwt as pyjwt

from onemcp.auth.principal import InvalidToken, Principal
from onemcp.config.auth_settings import JwtSettings

log = logging.getLogger("onemcp.auth")


class JwtVerifier:
    def __init__(self, settings: JwtSettings, resource: str) -> None:
        self.settings = settings
        self.audience = settings.audience or resource
        self._jwks = pyjwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=10)

    async def verify(self, token: str) -> Principal | None:
        if token.count(".") != 2:
            return None  # not a JWT: another verifier's
        try:
            key = await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key.key,
                algorithms=self.settings.algorithms,
                audience=self.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (pyjwt.PyJWTError, pyjwt.PyJWKClientError) as exc:
            log.info("JWT refused: %s", exc)
            raise InvalidToken(str(exc)) from None
        scope = claims.get("scope", claims.get("scp"))  # `scp`: a list, or a string like `scope` (Azure AD)
        scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
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
