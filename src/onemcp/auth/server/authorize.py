"""The authorization endpoint's rules: checking a request, the consent pages awaiting an answer, and who may approve.

Owns what makes an authorization request acceptable once its client and redirect URI are
trusted (response_type=code, PKCE S256 required, the hub as `resource`, known scopes), the
parameter parsing shared with the token endpoint, building the redirect back to the client,
the bounded, expiring table of consent pages shown but not yet answered (with the count of
approvals refused on each; full, or full for one address, it refuses a new page and never drops
one shown, so a flood cannot cancel the operator's), and the operator policy: which bind is trusted as it is, and the
check of an operator's admin API key or of the signed cookie that remembers it. No HTTP I/O
here (`oauth_server` reads requests, sends pages and sets cookies).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread

from onemcp.auth.keys import Keys
from onemcp.auth.principal import BASE, InvalidToken, Principal
from onemcp.auth.server.grants import Clock, OAuthError, check_resource
from onemcp.auth.server.store import ClientRecord
from onemcp.http.guard import is_loopback
from onemcp.protocol.errors import echo

MAX_PARAMS = 100
PENDING_LIMIT = 1000  # consent pages awaiting an answer
PER_SOURCE = 100  # of those, asked for from one address (a flood from one place cannot fill the table)
PENDING_TTL = 600.0
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(sha256), unpadded
OPERATOR_ATTEMPTS = 5  # approvals of one consent page refused for want of the operator key, then it is dropped
OPERATOR_TTL = 12 * 3600.0  # how long a browser is remembered after its operator typed the key
SEALED = re.compile(r"([A-Za-z0-9_-]{1,64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")  # key id . expiry . MAC

OperatorPolicy = Literal["loopback", "key"]


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
    refused: int = 0  # approvals refused so far (no valid operator key)
    source: str = ""  # the address that asked for the page


@dataclass(frozen=True)
class Operator:
    """The operator who approves: an admin API key, typed now or remembered by the browser's cookie."""

    key_id: str
    name: str
    cookie: str | None = None  # the cookie value that remembers a key typed just now


class TooManyPending(Exception):
    """No room for another consent page now: for the requester's address, or at all (a 429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))  # seconds until there may be room
        super().__init__(f"{message}; try again in {self.retry_after} s")


class NotOperator(Exception):
    """No valid operator key or cookie; the message says why (for the audit log, never the key itself)."""


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
        raise OAuthError("invalid_request", f"parameters given twice: {echo(', '.join(sorted(repeated)))}")
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
        # which it grants: server:/tag:/tool: scopes come from API keys and JWTs, or `clientRoles` for a client
        said = f"unsupported scope: {echo(' '.join(unknown))}" if unknown else "no scope requested"
        raise OAuthError(
            "invalid_scope",
            f"{said}; this server grants: {' '.join(scopes_supported)}"
            " (narrower access for a client: roles given to its client_id in onemcp.auth.clientRoles)",
        )
    scopes = tuple(dict.fromkeys(requested))
    return AuthorizationRequest(client, redirect_uri, explicit, params.get("state"), challenge, scopes)


class Pending(Protocol):
    """Consent pages awaiting an answer: `PendingConsents` (this process) or `shared.RedisPendingConsents`."""

    def add(self, request: AuthorizationRequest, now: float, source: str) -> tuple[str, PendingConsent]: ...
    def get(self, request_id: str, now: float) -> PendingConsent | None: ...
    def take(self, request_id: str, now: float) -> PendingConsent | None: ...
    def refuse(self, request_id: str, now: float) -> PendingConsent | None: ...


class PendingConsents:
    """Consent pages shown and not yet answered: each answerable once, within PENDING_TTL. Asked on worker
    threads (`OAuthServer.io`), one at a time."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingConsent] = {}
        self._lock = threading.RLock()

    def add(self, request: AuthorizationRequest, now: float, source: str) -> tuple[str, PendingConsent]:
        """Remember `request`, asked for from `source`; its request id, and the entry (with its CSRF token).
        TooManyPending when `source` holds PER_SOURCE pages or the table PENDING_LIMIT: no page is dropped."""
        with self._lock:
            for rid in [rid for rid, p in self._pending.items() if p.expires <= now]:
                del self._pending[rid]
            own = [p.expires for p in self._pending.values() if p.source == source]
            if len(own) >= PER_SOURCE:
                raise TooManyPending(
                    f"{PER_SOURCE} authorization requests from this address await consent", own[0] - now
                )
            if len(self._pending) >= PENDING_LIMIT:
                oldest = next(iter(self._pending.values())).expires
                raise TooManyPending(f"{PENDING_LIMIT} authorization requests await consent", oldest - now)
            request_id, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
            pending = self._pending[request_id] = PendingConsent(request, csrf, now + PENDING_TTL, source=source)
            return request_id, pending

    def get(self, request_id: str, now: float) -> PendingConsent | None:
        """The pending consent, still pending."""
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is not None and pending.expires <= now:
                del self._pending[request_id]
                return None
            return pending

    def take(self, request_id: str, now: float) -> PendingConsent | None:
        """The pending consent, forgotten now whatever the answer turns out to be."""
        with self._lock:
            pending = self._pending.pop(request_id, None)
        return None if pending is None or pending.expires <= now else pending

    def refuse(self, request_id: str, now: float) -> PendingConsent | None:
        """Count a refused approval: the consent again with a fresh CSRF token (same expiry), or None
        when that was the OPERATOR_ATTEMPTS-th refusal (it is then forgotten)."""
        with self._lock:
            pending = self.get(request_id, now)
            if pending is None:
                return None
            if pending.refused + 1 >= OPERATOR_ATTEMPTS:
                del self._pending[request_id]
                return None
            again = replace(pending, csrf=secrets.token_urlsafe(32), refused=pending.refused + 1)
            self._pending[request_id] = again
            return again


def operator_policy(
    configured: OperatorPolicy | None, bind_host: str, public_url: str | None, allowed_hosts: list[str] | None = None
) -> OperatorPolicy:
    """The `oauthOperator` policy: as configured; else "loopback" when only this machine can reach the
    consent page (a loopback bind, no publicUrl and no allowedHosts naming another host, as behind a
    reverse proxy), else "key"."""
    if configured is not None:
        return configured
    if not is_loopback(bind_host.strip("[]")):
        return "key"
    if public_url is not None and not is_loopback(urlsplit(public_url).hostname or ""):
        return "key"
    if any(not is_loopback(host.rpartition(":")[0] if host.count(":") == 1 else host) for host in allowed_hosts or []):
        return "key"
    return "loopback"


class OperatorCheck:
    """Is the person answering a consent page the hub's operator? An API key with the admin scope says so.

    A typed key earns a cookie value: its key id and an expiry, HMAC-signed with a secret of this
    process (a restart asks for the key again), or, for hub replicas, the one secret they share
    (`secret`, asked for once, on first use). The cookie stands for the key only while the key is
    valid: revoke it, let it expire or take `admin` from it, and every cookie it earned is refused.
    `admin` held through a role counts (`resolve`: the gate's `Roles.resolve`, as on every entry point).
    """

    def __init__(
        self,
        keys: Keys,
        clock: Clock,
        secret: Callable[[], bytes] | None = None,
        resolve: Callable[[Principal], Principal] | None = None,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.resolve = resolve or (lambda principal: principal)
        self._source = secret
        self._secret = b"" if secret is not None else secrets.token_bytes(32)

    async def typed(self, key: str) -> Operator:
        """The operator `key` proves, with the cookie value to remember it by; else NotOperator."""
        try:
            principal = await self.keys.verify(key.strip())
        except InvalidToken as exc:
            raise NotOperator(str(exc)) from None
        except (sqlite3.Error, OSError):
            raise NotOperator("the key store cannot be read") from None
        if principal is None:
            raise NotOperator("not an API key")
        if not self.resolve(principal).is_admin:
            raise NotOperator("the API key lacks the admin scope")
        if not self._secret and self._source is not None:  # replicas: from Redis, off the event loop
            self._secret = await anyio.to_thread.run_sync(self._source)
        key_id = principal.id.removeprefix("key:")
        body = f"{key_id}.{int(self.clock() + OPERATOR_TTL)}"
        return Operator(key_id, principal.labels.get("name", key_id), f"{body}.{self._mac(body)}")

    def remembered(self, cookie: str) -> Operator:
        """The operator a cookie from `typed` names, while it is unexpired and its key valid; else NotOperator."""
        sealed = SEALED.fullmatch(cookie)
        if sealed is None or not hmac.compare_digest(
            sealed[3].encode(), self._mac(f"{sealed[1]}.{sealed[2]}").encode()
        ):
            raise NotOperator("the operator cookie is not genuine")
        if int(sealed[2]) <= self.clock():
            raise NotOperator("the operator cookie expired")
        try:
            info = next((k for k in self.keys.list() if k.id == sealed[1]), None)
        except (sqlite3.Error, OSError):
            raise NotOperator("the key store cannot be read") from None
        if info is None:
            raise NotOperator("the operator cookie names an unknown API key")
        if info.revoked is not None:
            raise NotOperator("the operator cookie's API key was revoked")
        if info.expires is not None and info.expires < time.time():  # the key store's own clock
            raise NotOperator("the operator cookie's API key has expired")
        if not self.resolve(Principal(f"key:{info.id}", frozenset(info.scopes), kind="key")).is_admin:
            raise NotOperator("the operator cookie's API key lacks the admin scope")
        return Operator(info.id, info.name)

    def _mac(self, body: str) -> str:
        if not self._secret and self._source is not None:
            self._secret = self._source()
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
