"""The hub as an OAuth client of one protected upstream: its credential, and the credential's life.

Owns, per HTTP upstream that may need OAuth: the stored registration and tokens (bound to the
issuer that made them), renewing before expiry (refresh, or client_credentials for a machine
client; one renewal at a time, across hubs sharing the config directory, shielded from the
caller's cancellation), what a 401 or a 403 `insufficient_scope` means (renew and retry once,
or stop and ask the operator), preparing an authorization (discovery, registration, scope) so a
link is ready, the authorization link itself (PKCE, single-use state) and finishing it with the
code. The downstream client's token is never used here: upstream credentials are the hub's own.

Does not own the spec's HTTP steps (`oauth_discovery`, `oauth_flow`, `oauth_http`), storage
(`oauth_store`), the hub-wide table of credentials and pending links (`oauth_registry`), or
routing (`downstream.upstream_auth` serves the callback; the pool waits on `blocked`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx

from onemcp.config.model import ServerConfig
from onemcp.upstream.oauth.discovery import Challenge, DiscoveryError, canonical_resource, discover, parse_challenge
from onemcp.upstream.oauth.dpop import DpopKey
from onemcp.upstream.oauth.dpop import supported as dpop_supported
from onemcp.upstream.oauth.flow import (
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
from onemcp.upstream.oauth.http import DEADLINE, OAuthClientError
from onemcp.upstream.oauth.store import Credentials, CredentialStore, CredentialsUnavailable


class Registry(Protocol):
    """What a server's authorization needs of the hub-wide registry (`registry.UpstreamAuth`)."""

    callback_base: str | None

    @property
    def store(self) -> Credentials: ...
    def has_store(self) -> bool: ...
    def http(self) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]: ...
    def callback_url(self, server: str) -> str | None: ...
    def latest_pending(self, owner: ServerAuth) -> Pending | None: ...
    def add_pending(self, state: str, pending: Pending) -> None: ...


log = logging.getLogger("onemcp.upstream.oauth")
REFRESH_SKEW = 60.0  # renew this long before expiry
PENDING_TTL = 600.0
STEP_UP_LIMIT = 3  # re-authorizations for more scope before the hub stops asking
RETRY_AFTER_ERROR = 10.0  # an authorization server that failed is not asked again sooner
RENEW_DEADLINE = DEADLINE * 4  # discovery (a few GETs) and a token request, shielded
REJECTED = ("invalid_grant", "invalid_client", "unauthorized_client")  # definitive answers

RS_NONCE = "resource"  # where the upstream's own DPoP nonce is kept (the token endpoint's: by its URL)

AuthState = Literal["unknown", "authorized", "preparing", "required", "error"]
Renewal = Literal["renewed", "rejected", "unavailable"]


@dataclass(frozen=True)
class Pending:
    """An authorization link handed out: everything its callback needs, as it was then."""

    owner: ServerAuth
    verifier: str
    scope: str | None
    url: str
    expires: float
    metadata: dict[str, Any]
    registration: Registration
    resource: str
    browser: str | None = None  # a user's own link: the hash of the cookie its browser must bring back


class ServerAuth:
    """One upstream's OAuth credential."""

    def __init__(self, owner: Registry, name: str, config: ServerConfig) -> None:
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
        self.header: str | None = None  # "Bearer <access token>" (or "DPoP ..."), what requests carry
        self.dpop: DpopKey | None = None  # the key DPoP-bound tokens are bound to
        self.pinned: str | None = self.settings.issuer if self.settings else None  # for configured secrets
        self.scope: str | None = " ".join(self.settings.scopes) if self.settings and self.settings.scopes else None
        # a machine client gets its own tokens (client_credentials): no operator, no link
        self.machine = self.settings is not None and self.settings.grant == "client_credentials"
        self.step_ups = 0
        self.generation = 0  # bumped by a logout: work finishing after it is dropped
        self._failed_at = -RETRY_AFTER_ERROR  # monotonic time of the last failed exchange
        self._persisted = False  # stored (or read from the store) at least once
        self._lock = anyio.Lock()
        self._unread = False  # the store is to be read before the next request (`ensure_fresh`)
        self.reread()

    # ---------------------------------------------------------------- persistence
    def reread(self) -> None:
        """Take what is stored again (another hub on this config directory, or another replica, may have
        written it): at once from a local file, before the next request from the replicas' Redis (never
        on the event loop)."""
        if not self.owner.has_store():
            return  # nothing was ever stored here: no key file, no database for a hub without OAuth
        store = self.owner.store
        if isinstance(store, CredentialStore):
            self.take(store.load(self.name))
        else:
            self._unread = True

    async def _stored(self) -> dict[str, Any] | None:
        """What is stored for this credential (raises `CredentialsUnavailable` when the store cannot say)."""
        if not self.owner.has_store():
            return None
        doc = await self.owner.store.read(self.name)
        self._unread = False
        return doc

    async def load(self) -> bool | None:
        """Take what is stored: False when nothing is, None when the store cannot say now (nothing changes)."""
        try:
            return self.take(await self._stored())
        except CredentialsUnavailable:
            return None

    def take(self, doc: dict[str, Any] | None) -> bool:
        """Take `doc`, as read from the store (another hub or replica may have written it); False when it
        is nothing of this server's. The state changes only when tokens appear where there were none."""
        if doc is None or doc.get("url") != self.url:
            return False
        had = self.tokens
        try:
            self.metadata = doc.get("metadata")
            self.resource = str(doc.get("resource") or self.url)
            self.pinned = self.pinned or doc.get("pinned")
            reg = doc.get("registration")
            self.registration = Registration.from_doc(reg) if isinstance(reg, dict) else None
            key = doc.get("dpop")
            if isinstance(key, str) and (self.dpop is None or self.dpop.to_pem() != key):
                self.dpop = DpopKey.from_pem(key)
            tokens = doc.get("tokens")
            issuer = self.metadata.get("issuer") if isinstance(self.metadata, dict) else None
            self._set_tokens(Tokens.from_doc(tokens, issuer) if isinstance(tokens, dict) else None)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("stored credentials for %s are unreadable (%s): authorize again", self.name, exc)
            self.metadata, self.registration = None, None
            self._set_tokens(None)
        self._persisted = True
        if had is None and self.tokens is not None:
            self._authorized()
        return True

    async def adopt(self) -> bool:
        """A user's own credential as the shared store has it now (another replica's call discovered the
        server and registered, or logged it out): if it was prepared and holds no tokens, ready to hand
        out links here too. False when nothing was prepared (or the store cannot say now)."""
        try:
            doc = await self._stored()
        except CredentialsUnavailable:
            return False
        if doc is None or not self.take(doc) or self.metadata is None or self.registration is None:
            return False
        if isinstance(doc.get("scope"), str) and (self.scope is None or self.tokens is None):
            self.scope = doc["scope"]  # what that replica's challenge asked for
        if self.tokens is None:
            self.state, self.detail = "required", f"authorize at {self.metadata.get('issuer')}"
        return True

    async def _save(self) -> None:
        self._persisted = True
        await self.owner.store.write(
            self.name,
            {
                "url": self.url,
                "scope": self.scope,
                "resource": self.resource,
                "metadata": self.metadata,
                "pinned": self.pinned,
                "registration": self.registration.to_doc() if self.registration else None,
                "tokens": self.tokens.to_doc() if self.tokens else None,
                "dpop": self.dpop.to_pem() if self.dpop else None,
            },
        )

    def _set_tokens(self, tokens: Tokens | None) -> None:
        self.tokens = tokens
        self.header = f"{tokens.token_type} {tokens.access_token}" if tokens is not None else None

    def authorization(self, method: str, url: str) -> dict[str, str]:
        """The headers a request to the upstream carries: the token, and a fresh DPoP proof if bound."""
        tokens, header = self.tokens, self.header
        if tokens is None or header is None:
            return {}
        if tokens.token_type != "DPoP" or self.dpop is None:
            return {"authorization": header}
        nonce = self.dpop.nonces.get(RS_NONCE)
        return {
            "authorization": header,
            "dpop": self.dpop.proof(method, url, nonce=nonce, access_token=tokens.access_token),
        }

    def _dpop_key(self, metadata: dict[str, Any]) -> DpopKey | None:
        """The key to bind tokens to, when this authorization server offers DPoP (made on first use)."""
        if (self.settings is not None and not self.settings.dpop) or not dpop_supported(metadata):
            return None
        if self.dpop is None:
            self.dpop = DpopKey()
        return self.dpop

    def _authorized(self) -> None:
        """A working token: authorized, unless a step-up still waits for the operator."""
        if not (self.state == "required" and self.step_ups and self.tokens is not None):
            self.state, self.detail = "authorized", None

    def _failed(self, detail: str) -> None:
        self.state, self.detail = "error", detail
        self._failed_at = time.monotonic()

    @property
    def _recently_failed(self) -> bool:
        return time.monotonic() - self._failed_at < RETRY_AFTER_ERROR

    # ---------------------------------------------------------------- the request path
    @property
    def blocked(self) -> bool:
        """No token and an operator must act: the supervisor waits instead of retrying."""
        return self.tokens is None and self.state == "required" and not self._unread

    async def ensure_fresh(self) -> None:
        """Read the store if it is to be (`reread`), and renew a token about to expire; cheap when neither."""
        if self._unread:
            async with self._lock:
                if self._unread:
                    await self.load()
        tokens = self.tokens
        if tokens is None or tokens.expires_at is None or tokens.expires_at - REFRESH_SKEW > time.time():
            return
        if (tokens.refresh_token is None and not self.machine) or self._recently_failed:
            return  # it may still work; a 401 will say
        async with self._lock:
            if self.tokens is tokens:
                await self._renew(Challenge(), tokens)

    async def recover(
        self, status: int, www_authenticate: str | None, used: str | None, nonce: str | None = None
    ) -> bool:
        """After a 401 (or 403): True when there is a new token (or DPoP nonce) worth one retry."""
        challenge = parse_challenge(www_authenticate)
        if challenge.error == "use_dpop_nonce" and nonce and self.dpop is not None:
            if self.dpop.nonces.get(RS_NONCE) == nonce:
                return False  # refused with the nonce it asked for
            self.dpop.nonces[RS_NONCE] = nonce  # RFC 9449 §9: retry with the server's nonce
            return True
        async with self._lock:
            if status == 403:
                if challenge.error == "insufficient_scope":
                    await self._step_up(challenge)
                return False
            if self._unread and await self.load() is None:  # the replicas' Redis cannot say what is stored
                self._failed("the replicas' credential store (Redis) cannot be reached")
                return False
            if self.header is not None and self.header != used:
                return True  # renewed meanwhile (by another request, or the operator)
            if self.state in ("required", "preparing") and self.tokens is None:
                return False  # already asked
            if self._recently_failed:
                return False
            if self.tokens is not None or self.machine:
                outcome = await self._renew(challenge, self.tokens)
                if outcome == "renewed":
                    return True
                if outcome == "unavailable" or self.machine:
                    return False  # kept what it has; tried again later
            self._set_tokens(None)
            await self._save()
            await self._prepare(challenge)
            return False

    async def _renew(self, challenge: Challenge, stale: Tokens | None) -> Renewal:
        """A new token with no person involved (refresh; client_credentials for a machine client), bounded, under
        the store's cross-process lock (waited for unshielded: a caller giving up, a hub stopping, waits for no
        other hub's renewal), then shielded (a rotated refresh token must be stored whatever happens to the caller)."""
        with anyio.move_on_after(RENEW_DEADLINE) as waited:
            async with self.owner.store.exclusive(self.name):
                with anyio.CancelScope(shield=True, deadline=waited.deadline) as scope:
                    generation = self.generation
                    persisted = self._persisted
                    if await self.load() is False and persisted and not self.machine:
                        self._set_tokens(None)  # another hub logged out: so did this one
                    if self.tokens is not None and (stale is None or self.tokens.access_token != stale.access_token):
                        self._authorized()
                        return "renewed"
                    if self.tokens is None and stale is not None and not self.machine:
                        return "rejected"  # dropped (or logged out) by another hub: not refreshed here
                    try:
                        async with self.owner.http() as client:
                            if self.machine:
                                new = await self._client_credentials(client, challenge)
                            elif stale is not None and self.metadata is not None and self.registration is not None:
                                dpop = self._dpop_key(self.metadata) if stale.token_type == "DPoP" else None
                                new = await refresh(
                                    client, self.metadata, self.registration, stale, resource=self.resource, dpop=dpop
                                )
                            else:
                                return "rejected"
                    except FlowError as exc:
                        log.warning("upstream %s: renewing the token failed: %s", self.name, exc)
                        if exc.error in REJECTED and not self.machine:
                            # the refresh token is dead (the access token may live on a little): never again
                            if stale is not None and self.tokens is not None and generation == self.generation:
                                self._set_tokens(dataclasses.replace(stale, refresh_token=None))
                                await self._save()
                            return "rejected"
                        self._failed(str(exc))
                        return "rejected" if self.machine else "unavailable"
                    except OAuthClientError as exc:
                        log.warning("upstream %s: renewing the token failed: %s", self.name, exc)
                        self._failed(str(exc))
                        return "rejected" if isinstance(exc, DiscoveryError) else "unavailable"
                    if generation != self.generation:
                        return "rejected"  # logged out meanwhile
                    self._set_tokens(new)
                    self._authorized()
                    await self._save()
                    log.info("upstream %s: access token renewed", self.name)
                    return "renewed"
        if waited.cancelled_caught or scope.cancelled_caught:
            self._failed(f"renewing the token took over {RENEW_DEADLINE:g}s")
        return "unavailable"

    async def _client_credentials(self, client: httpx.AsyncClient, challenge: Challenge) -> Tokens:
        settings = self.settings
        assert settings is not None and settings.client_id is not None
        metadata = await self._discover(client, challenge)
        key = settings.private_key
        method = settings.auth_method or ("private_key_jwt" if key else choose_auth_method(metadata, has_secret=True))
        self.registration = Registration(settings.client_id, settings.client_secret, method, "", metadata["issuer"])
        assertion = (
            client_assertion(metadata, settings.client_id, key, settings.signing_algorithm)
            if key and method == "private_key_jwt"
            else None
        )
        return await client_credentials(
            client,
            metadata,
            self.registration,
            resource=self.resource,
            scope=self.scope,
            assertion=assertion,
            dpop=self._dpop_key(metadata),
        )

    async def _step_up(self, challenge: Challenge) -> None:
        granted = self.tokens.scope if self.tokens is not None else self.scope
        have = set((granted or "").split())
        wanted = set((challenge.scope or "").split())
        if wanted <= have or self.step_ups >= STEP_UP_LIMIT or self.owner.callback_base is None or self.machine:
            self.detail = (
                f"it wants scope {challenge.scope!r}, which the hub already asked for"
                if wanted <= have
                else f"it wants scope {challenge.scope!r}, which the hub cannot ask for again"
            )
            return
        self.step_ups += 1
        self.scope = " ".join(sorted(have | wanted))
        await self._prepare(challenge, step_up=True)

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
    async def _discover(self, client: httpx.AsyncClient, challenge: Challenge) -> dict[str, Any]:
        """The authorization server (found again each time: it may have moved) and the scope to ask for."""
        found = await discover(client, self.config.url or self.url, challenge)
        issuer = found.metadata["issuer"]
        if self.settings is not None and (self.settings.client_secret or self.settings.private_key):
            # configured credentials go only to the issuer they belong to (first seen, or oauth.issuer)
            if self.pinned is not None and self.pinned != issuer:
                raise DiscoveryError(
                    f"the configured client credentials belong to {self.pinned}, but the upstream now names "
                    f"{issuer}: set oauth.issuer, or run `onemcp auth upstream logout {self.name}`, to accept it"
                )
            self.pinned = issuer
        self.resource, self.metadata = found.resource, found.metadata
        if self.scope is None:
            self.scope = challenge.scope or (" ".join(found.scopes_supported) or None)
        offered = self.metadata.get("scopes_supported")
        wants_offline = isinstance(offered, list) and "offline_access" in offered
        if self.scope and wants_offline and "offline_access" not in self.scope.split():
            self.scope += " offline_access"
        return self.metadata

    async def _prepare(self, challenge: Challenge, *, step_up: bool = False) -> None:
        """Discovery and registration, so an authorization link can be handed out."""
        redirect = self.owner.callback_url(self.name)
        if redirect is None:
            self._failed(
                "this hub has no HTTP listener for the authorization callback: authorize once with "
                f"`onemcp serve` and `onemcp auth upstream login {self.name}` (the tokens are shared through the "
                "config directory)"
            )
            return
        if not step_up:
            self.state = "preparing"
        try:
            # shielded: a caller giving up (a start-up deadline) must not leave it half-prepared
            with anyio.CancelScope(shield=True), anyio.fail_after(RENEW_DEADLINE):
                async with self.owner.http() as client:
                    await self._discover(client, challenge)
                    self.registration = await self._registration(client, redirect)
        except (OAuthClientError, TimeoutError) as exc:
            detail = str(exc) or f"no answer within {RENEW_DEADLINE:g}s"
            log.warning("upstream %s: cannot prepare OAuth: %s", self.name, detail)
            if step_up and self.tokens is not None:
                self.detail = f"cannot ask for more scope: {detail}"
            else:
                self._failed(detail)
            return
        except Exception as exc:  # never left "preparing": it would never be prepared again
            self._failed(f"internal error preparing OAuth: {exc!r}")
            raise
        await self._save()
        self.state = "required"
        issuer = self.metadata.get("issuer") if self.metadata else None
        self.detail = f"more scope needed: {self.scope}" if step_up else f"authorize at {issuer}"
        log.warning("upstream %s needs authorization: %s", self.name, self.detail)

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
            and self.metadata.get("client_id_metadata_document_supported") is True
        ):
            return Registration(settings.client_metadata_url, None, "none", redirect, issuer)
        reg = self.registration
        if reg is not None and reg.issuer == issuer and reg.redirect_uri == redirect:
            return reg  # bound to this issuer and callback: still good
        return await register(client, self.metadata, redirect_uri=redirect, scope=self.scope)

    @property
    def linkable(self) -> bool:
        """Can an authorization link be made now (authorization needed, the server discovered and registered)?"""
        return self.state == "required" and self.metadata is not None and self.registration is not None

    def authorize_link(self, browser: str | None = None) -> str | None:
        """A link for the operator, reused while it has more than a minute to live; with `browser`
        (the hash of a cookie set in the browser that follows it), a new link only that browser can finish."""
        if not self.linkable or self.metadata is None or self.registration is None:
            return None
        now = time.time()
        current = self.owner.latest_pending(self) if browser is None else None
        if current is not None and current.expires - 60 > now and current.scope == self.scope:
            return current.url
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(24)
        url = authorize_url(
            self.metadata, self.registration, state=state, challenge=challenge, resource=self.resource, scope=self.scope
        )
        pending = Pending(
            self, verifier, self.scope, url, now + PENDING_TTL, self.metadata, self.registration, self.resource, browser
        )
        self.owner.add_pending(state, pending)
        return url

    async def complete(self, pending: Pending, code: str, iss: str | None) -> None:
        """The code came back: exchange it (against the server the link was made for) and keep the tokens."""
        check_response_issuer(pending.metadata, iss)
        generation = self.generation
        with anyio.CancelScope(shield=True):
            with anyio.fail_after(RENEW_DEADLINE):
                async with self.owner.http() as client:
                    tokens = await exchange_code(
                        client,
                        pending.metadata,
                        pending.registration,
                        code=code,
                        verifier=pending.verifier,
                        resource=pending.resource,
                        dpop=self._dpop_key(pending.metadata),
                    )
            async with self._lock, self.owner.store.exclusive(self.name):
                if generation != self.generation:
                    raise FlowError("the upstream was logged out while this authorization was under way")
                self.metadata, self.registration, self.resource = (
                    pending.metadata,
                    pending.registration,
                    pending.resource,
                )
                self._set_tokens(tokens)
                self.step_ups = 0
                self.state, self.detail = "authorized", None
                await self._save()

    async def forget(self) -> None:
        """Log out: tokens, registration and pin gone (work under way is dropped when it finishes)."""
        self.generation += 1  # before waiting for the lock: a renewal under way sees it
        async with self._lock:
            self._set_tokens(None)
            self.registration, self.state, self.detail = None, "unknown", None
            self.pinned = self.settings.issuer if self.settings else None

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
