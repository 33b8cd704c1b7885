"""The hub as an OAuth client of protected upstreams: one credential per server, and its life.

Owns, per HTTP upstream that may need OAuth: the stored registration and tokens, refreshing
before expiry (one refresh at a time), what a 401 or a 403 `insufficient_scope` means (refresh
and retry, or stop and ask the operator), preparing an authorization (discovery, registration,
scope choice) so a link is ready, the pending authorizations awaiting their callback (PKCE
verifier, single-use state, expiry), and the callback itself. The downstream client's token is
never used here: upstream credentials are the hub's own.

Does not own HTTP details of the spec's steps (`oauth_discovery`, `oauth_flow`), storage
(`oauth_store`), or routing (`app` serves the callback; the pool waits on `blocked`).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

from onemcp.config.model import ServerConfig
from onemcp.upstream.oauth_discovery import Challenge, DiscoveryError, canonical_resource, discover, parse_challenge
from onemcp.upstream.oauth_flow import (
    FlowError,
    Registration,
    Tokens,
    authorize_url,
    check_response_issuer,
    choose_auth_method,
    client_assertion,
    client_credentials,
    exchange_code,
    pkce_pair,
    refresh,
    register,
)
from onemcp.upstream.oauth_store import CredentialStore

log = logging.getLogger("onemcp.upstream.oauth")
audit = logging.getLogger("onemcp.audit")
CALLBACK_PATH = "/oauth/upstream/callback"
REFRESH_SKEW = 60.0  # refresh this long before expiry
PENDING_TTL = 600.0
HTTP_TIMEOUT = 15.0
STEP_UP_LIMIT = 3  # re-authorizations for more scope before the hub stops asking

AuthState = Literal["unknown", "authorized", "preparing", "required", "error"]


@dataclass(frozen=True)
class Pending:
    server: str
    verifier: str
    scope: str | None
    url: str
    expires: float


def oauth_enabled(config: ServerConfig) -> bool:
    """HTTP upstreams may use OAuth unless turned off or given an Authorization header of their own."""
    if config.transport == "stdio" or config.oauth is False:
        return False
    return not any(k.lower() == "authorization" for k in config.headers)


class ServerAuth:
    """One upstream's OAuth credential."""

    def __init__(self, owner: UpstreamAuth, name: str, config: ServerConfig) -> None:
        assert config.url is not None
        self.owner = owner
        self.name = name
        self.config = config
        self.settings = config.oauth if not isinstance(config.oauth, bool) else None
        self.url = canonical_resource(config.url)
        self.state: AuthState = "unknown"
        self.detail: str | None = None
        self.resource = self.url
        self.metadata: dict[str, Any] | None = None
        self.registration: Registration | None = None
        self.tokens: Tokens | None = None
        self.scope: str | None = " ".join(self.settings.scopes) if self.settings and self.settings.scopes else None
        # a machine client gets its own tokens (client_credentials): no operator, no link
        self.machine = self.settings is not None and self.settings.grant == "client_credentials"
        self.step_ups = 0
        self.header: str | None = None  # "Bearer <access token>", what requests carry
        self._lock = anyio.Lock()
        self._load()

    # ---------------------------------------------------------------- persistence
    def _load(self) -> None:
        doc = self.owner.store.load(self.name)
        if doc is None or doc.get("url") != self.url:
            return
        try:
            self.metadata = doc.get("metadata")
            self.resource = str(doc.get("resource") or self.url)
            reg = doc.get("registration")
            self.registration = Registration.from_doc(reg) if isinstance(reg, dict) else None
            tokens = doc.get("tokens")
            self._set_tokens(Tokens.from_doc(tokens) if isinstance(tokens, dict) else None)
        except (KeyError, TypeError) as exc:
            log.warning("stored credentials for %s are unreadable (%s): authorize again", self.name, exc)
            self.metadata, self.registration = None, None
            self._set_tokens(None)

    def _save(self) -> None:
        self.owner.store.save(
            self.name,
            {
                "url": self.url,
                "resource": self.resource,
                "metadata": self.metadata,
                "registration": self.registration.to_doc() if self.registration else None,
                "tokens": self.tokens.to_doc() if self.tokens else None,
            },
        )

    def _set_tokens(self, tokens: Tokens | None) -> None:
        self.tokens = tokens
        self.header = f"Bearer {tokens.access_token}" if tokens is not None else None
        if tokens is not None:
            self.state, self.detail = "authorized", None

    # ---------------------------------------------------------------- the request path
    @property
    def blocked(self) -> bool:
        """No token and an operator must act: the supervisor waits instead of retrying."""
        return self.tokens is None and self.state == "required"

    async def ensure_fresh(self) -> None:
        """Refresh a token about to expire; cheap when it is not."""
        tokens = self.tokens
        if tokens is None or tokens.expires_at is None or tokens.expires_at - REFRESH_SKEW > time.time():
            return
        if tokens.refresh_token is None and not self.machine:
            return  # it may still work; a 401 will say
        async with self._lock:
            if self.tokens is tokens:
                if tokens.refresh_token is not None:
                    await self._refresh(tokens)
                else:
                    await self._machine_token(Challenge())

    async def _refresh(self, tokens: Tokens) -> bool:
        if self.metadata is None or self.registration is None:
            return False
        try:
            async with self.owner.http() as client:
                new = await refresh(client, self.metadata, self.registration, tokens, resource=self.resource)
        except FlowError as exc:
            log.warning("upstream %s: token refresh failed: %s", self.name, exc)
            if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                self._set_tokens(None)
                self._save()
            return False
        self._set_tokens(new)
        self._save()
        log.info("upstream %s: access token refreshed", self.name)
        return True

    async def recover(self, status: int, www_authenticate: str | None, used: str | None) -> bool:
        """After a 401 (or 403): True when there is a new token worth one retry."""
        challenge = parse_challenge(www_authenticate)
        async with self._lock:
            if status == 403:
                if challenge.error != "insufficient_scope":
                    return False
                await self._step_up(challenge)
                return False
            if self.header is not None and self.header != used:
                return True  # another request refreshed it meanwhile
            if self.header is None and used is None and self.state == "required":
                return False  # already prepared by a request refused just before this one
            if self.tokens is not None and await self._refresh(self.tokens):
                return True
            self._set_tokens(None)
            self._save()
            if self.machine:
                return await self._machine_token(challenge)
            await self._prepare(challenge)
            return False

    async def _step_up(self, challenge: Challenge) -> None:
        granted = self.tokens.scope if self.tokens is not None else self.scope
        have = set((granted or "").split())
        wanted = set((challenge.scope or "").split())
        if wanted <= have or self.step_ups >= STEP_UP_LIMIT:
            self.detail = (
                f"it wants scope {challenge.scope!r}, which the hub already asked for"
                if wanted <= have
                else f"it wants scope {challenge.scope!r}; {STEP_UP_LIMIT} re-authorizations did not get it"
            )
            return
        self.step_ups += 1
        self.scope = " ".join(sorted(have | wanted))
        await self._prepare(challenge, keep_tokens=True)

    def explain(self) -> str:
        """What a client whose call failed is told (never the link itself: only an operator should follow it)."""
        if self.state == "error":
            return f"the hub cannot authorize with this upstream: {self.detail}"
        if self.state == "authorized":  # refused although authorized: asking again would not help
            return f"the upstream refused the call: {self.detail or 'forbidden'}"
        return (
            f"this upstream needs an operator to authorize the hub ({self.detail or 'OAuth'}): "
            f"see /health or run `onemcp auth upstream login {self.name}`"
        )

    # ---------------------------------------------------------------- preparing an authorization
    async def _prepare(self, challenge: Challenge, *, keep_tokens: bool = False) -> None:
        """Discovery and registration, so an authorization link can be handed out."""
        redirect = self.owner.callback_url
        if redirect is None:
            self.state, self.detail = (
                "error",
                (
                    "this hub has no HTTP listener for the authorization callback: authorize once with "
                    f"`onemcp serve` and `onemcp auth upstream login {self.name}` (the tokens are shared through the "
                    "config directory)"
                ),
            )
            return
        if not keep_tokens:
            self.state = "preparing"
        try:
            async with self.owner.http() as client:
                await self._discover(client, challenge)
                self.registration = await self._registration(client, redirect)
        except (DiscoveryError, FlowError) as exc:
            self.state, self.detail = "error", str(exc)
            log.warning("upstream %s: cannot prepare OAuth: %s", self.name, exc)
            return
        self._save()
        self.state = "required"
        issuer = self.metadata.get("issuer") if self.metadata else None
        self.detail = f"more scope needed: {self.scope}" if keep_tokens else f"authorize at {issuer}"
        log.warning("upstream %s needs authorization: %s", self.name, self.detail)

    async def _discover(self, client: httpx.AsyncClient, challenge: Challenge) -> None:
        """The authorization server (found again each time: it may have moved) and the scope to ask for."""
        found = await discover(client, self.config.url or self.url, challenge)
        self.resource, self.metadata = found.resource, found.metadata
        if self.scope is None:
            self.scope = challenge.scope or (" ".join(found.scopes_supported) or None)
        offered = self.metadata.get("scopes_supported") or []
        if self.scope and "offline_access" in offered and "offline_access" not in self.scope.split():
            self.scope += " offline_access"

    async def _machine_token(self, challenge: Challenge) -> bool:
        """The client_credentials grant: a fresh token with no operator; True when there is one."""
        settings = self.settings
        assert settings is not None and settings.client_id is not None
        try:
            async with self.owner.http() as client:
                await self._discover(client, challenge)
                assert self.metadata is not None
                key = settings.private_key
                method = settings.auth_method or (
                    "private_key_jwt" if key else choose_auth_method(self.metadata, has_secret=True)
                )
                issuer = str(self.metadata.get("issuer"))
                self.registration = Registration(settings.client_id, settings.client_secret, method, "", issuer)
                assertion = (
                    client_assertion(self.metadata, settings.client_id, key, settings.signing_algorithm)
                    if key and method == "private_key_jwt"
                    else None
                )
                tokens = await client_credentials(
                    client,
                    self.metadata,
                    self.registration,
                    resource=self.resource,
                    scope=self.scope,
                    assertion=assertion,
                )
        except (DiscoveryError, FlowError) as exc:
            self.state, self.detail = "error", str(exc)
            log.warning("upstream %s: client_credentials failed: %s", self.name, exc)
            return False
        self._set_tokens(tokens)
        self._save()
        log.info("upstream %s: token obtained with client_credentials (scope %s)", self.name, tokens.scope)
        return True

    async def _registration(self, client: httpx.AsyncClient, redirect: str) -> Registration:
        assert self.metadata is not None
        issuer = str(self.metadata.get("issuer"))
        settings = self.settings
        if settings is not None and settings.client_id:
            secret = settings.client_secret
            method = settings.auth_method or choose_auth_method(self.metadata, secret is not None)
            return Registration(settings.client_id, secret, method, redirect, issuer)
        if (
            settings is not None
            and settings.client_metadata_url
            and self.metadata.get("client_id_metadata_document_supported")
        ):
            return Registration(settings.client_metadata_url, None, "none", redirect, issuer)
        reg = self.registration
        if reg is not None and reg.issuer == issuer and reg.redirect_uri == redirect:
            return reg  # bound to this issuer and callback: still good
        return await register(client, self.metadata, redirect_uri=redirect, scope=self.scope)

    def authorize_link(self) -> str | None:
        """A link for the operator (one pending authorization at a time, renewed when it expires)."""
        if self.state != "required" or self.metadata is None or self.registration is None:
            return None
        now = time.time()
        current = self.owner.pending_for(self.name)
        if current is not None and current.expires - 60 > now and current.scope == self.scope:
            return current.url
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        url = authorize_url(
            self.metadata, self.registration, state=state, challenge=challenge, resource=self.resource, scope=self.scope
        )
        self.owner.add_pending(state, Pending(self.name, verifier, self.scope, url, now + PENDING_TTL))
        return url

    async def complete(self, pending: Pending, code: str, iss: str | None) -> None:
        assert self.metadata is not None and self.registration is not None
        check_response_issuer(self.metadata, iss)
        async with self.owner.http() as client:
            tokens = await exchange_code(
                client, self.metadata, self.registration, code=code, verifier=pending.verifier, resource=self.resource
            )
        async with self._lock:
            self._set_tokens(tokens)
            self._save()

    def view(self, *, with_link: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state, "detail": self.detail}
        if self.metadata is not None:
            doc["issuer"] = self.metadata.get("issuer")
        if self.tokens is not None:
            doc["scope"] = self.tokens.scope
            doc["expiresAt"] = self.tokens.expires_at
            doc["refreshable"] = self.tokens.refresh_token is not None
        if self.state == "required":
            link = self.authorize_link() if with_link else None
            doc["authorizeUrl"] = link
            doc["howTo"] = f"onemcp auth upstream login {self.name}" if link is None else "open authorizeUrl"
        return doc


class UpstreamAuth:
    """Every upstream's credential, the pending authorizations, and the callback."""

    def __init__(self, config_dir: Path | None, callback_base: str | None) -> None:
        self.config_dir = config_dir
        self.callback_url = f"{callback_base.rstrip('/')}{CALLBACK_PATH}" if callback_base else None
        self._store: CredentialStore | None = None
        self.servers: dict[str, ServerAuth] = {}
        self._pending: dict[str, Pending] = {}
        self.on_authorized: Callable[[str], None] = lambda name: None

    @property
    def store(self) -> CredentialStore:
        if self._store is None:  # made on first use: no key file for hubs that never need one
            try:
                self._store = CredentialStore(self.config_dir)
            except (OSError, sqlite3.Error) as exc:
                # keep serving: tokens then live in memory only, until the file is fixed
                log.error("upstream credentials cannot be stored (%s); keeping them in memory only", exc)
                self._store = CredentialStore(None)
        return self._store

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)

    def for_server(self, name: str, config: ServerConfig) -> ServerAuth | None:
        """The server's credential (kept across reconnects while its config is unchanged)."""
        if not oauth_enabled(config):
            return None
        current = self.servers.get(name)
        if current is None or current.config.url != config.url or current.config.oauth != config.oauth:
            current = self.servers[name] = ServerAuth(self, name, config)
        elif current.tokens is None:
            current._load()  # another hub on the same config may have been authorized meanwhile
        return current

    def pending_for(self, server: str) -> Pending | None:
        return next((p for p in self._pending.values() if p.server == server), None)

    def add_pending(self, state: str, pending: Pending) -> None:
        now = time.time()
        for key in [k for k, p in self._pending.items() if p.server == pending.server or p.expires <= now]:
            del self._pending[key]
        self._pending[state] = pending

    async def callback(self, params: dict[str, str]) -> tuple[int, str, str]:
        """Handle the authorization response: (HTTP status, page title, detail)."""
        pending = self._pending.pop(params.get("state", ""), None)
        if pending is None or pending.expires <= time.time():
            return 400, "Unknown or expired authorization", "Start again from /health or `onemcp auth upstream login`."
        server = self.servers.get(pending.server)
        if server is None:
            return 400, "Unknown server", f"{pending.server} is no longer configured."
        if "error" in params:
            server.detail = f"the authorization was refused: {params['error']} {params.get('error_description', '')}"
            audit.info("upstream authorization refused server=%s error=%.100s", server.name, params["error"])
            return 400, "Authorization refused", server.detail
        code = params.get("code")
        if not code:
            return 400, "No authorization code", "The authorization server sent no code."
        try:
            await server.complete(pending, code, params.get("iss"))
        except FlowError as exc:
            server.detail = str(exc)
            log.warning("upstream %s: authorization failed: %s", server.name, exc)
            audit.info("upstream authorization failed server=%s reason=%s", server.name, exc)
            return 502, "Authorization failed", str(exc)
        scope = server.tokens.scope if server.tokens else None
        issuer = server.metadata.get("issuer") if server.metadata else None
        log.info("upstream %s: authorized (scope %s)", server.name, scope)
        audit.info("upstream authorized server=%s issuer=%s scope=%s", server.name, issuer, scope)
        self.on_authorized(server.name)
        return 200, f"{server.name} is authorized", "onemcp connects to it now. You can close this tab."

    def forget(self, name: str) -> bool:
        """Log out: drop the tokens (and registration) for `name`."""
        server = self.servers.get(name)
        if server is not None:
            server._set_tokens(None)
            server.registration, server.state = None, "unknown"
        return self.store.delete(name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
