"""The authorization endpoint's rules: checking a request, and the consent pages awaiting an answer.

Owns what makes an authorization request acceptable once its client and redirect URI are
trusted (response_type=code, PKCE S256 required, the hub as `resource`, known scopes), the
parameter parsing shared with the token endpoint, building the redirect back to the client, and
the bounded, expiring table of consent pages shown but not yet answered. No HTTP I/O here
(`oauth_server` reads requests and sends pages).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from onemcp.auth.oauth_grants import OAuthError, check_resource
from onemcp.auth.principal import BASE
from onemcp.auth.store import ClientRecord

MAX_PARAMS = 100
PENDING_LIMIT = 1000  # consent pages awaiting an answer
PENDING_TTL = 600.0
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(sha256), unpadded


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request: what a code for it will carry, and where it goes."""

    client: ClientRecord
    redirect_uri: str
    redirect_explicit: bool  # named in the request (so the token request must name it too)
    state: str | None
    challenge: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class PendingConsent:
    request: AuthorizationRequest
    csrf: str
    expires: float


def parse_params(raw: str) -> tuple[dict[str, str], set[str]]:
    """Query or form parameters, empty ones dropped (RFC 6749 §3.1); and the names given twice."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=False, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise OAuthError("invalid_request", f"more than {MAX_PARAMS} parameters") from None
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name in params and params[name] != value:
            repeated.add(name)
        params.setdefault(name, value)
    return params, repeated


def with_params(uri: str, params: dict[str, str | None]) -> str:
    """`uri` with `params` added to its query (None values left out)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def check_request(
    params: dict[str, str],
    repeated: set[str],
    *,
    client: ClientRecord,
    redirect_uri: str,
    explicit: bool,
    resource: str,
    scopes_supported: list[str],
) -> AuthorizationRequest:
    """The request, or the OAuthError to send back to the (already trusted) redirect URI."""
    if repeated:
        raise OAuthError("invalid_request", f"parameters given twice: {', '.join(sorted(repeated))}")
    response_type = params.get("response_type")
    if response_type is None:
        raise OAuthError("invalid_request", "response_type is required")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", "only response_type=code is supported")
    challenge = params.get("code_challenge")
    if challenge is None:
        raise OAuthError("invalid_request", "code_challenge is required (PKCE)")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "code_challenge_method must be S256")
    if not CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge is not a base64url SHA-256")
    check_resource(params.get("resource"), resource)
    requested = params.get("scope", BASE).split()
    unknown = [s for s in requested if s not in scopes_supported]
    if unknown or not requested:
        raise OAuthError("invalid_scope", f"unsupported scope: {' '.join(unknown)}")
    scopes = tuple(dict.fromkeys(requested))
    return AuthorizationRequest(client, redirect_uri, explicit, params.get("state"), challenge, scopes)


class PendingConsents:
    """Consent pages shown and not yet answered: each answerable once, within PENDING_TTL."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingConsent] = {}

    def add(self, request: AuthorizationRequest, now: float) -> tuple[str, str]:
        """Remember `request`; its (request id, CSRF token)."""
        for rid in [rid for rid, p in self._pending.items() if p.expires <= now]:
            del self._pending[rid]
        while len(self._pending) >= PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]  # the oldest
        request_id, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        self._pending[request_id] = PendingConsent(request, csrf, now + PENDING_TTL)
        return request_id, csrf

    def take(self, request_id: str, now: float) -> PendingConsent | None:
        """The pending consent, forgotten now whatever the answer turns out to be."""
        pending = self._pending.pop(request_id, None)
        return None if pending is None or pending.expires <= now else pending
