"""Every upstream's OAuth credential in one hub, the authorization links out, and their callback.

Owns: which `ServerAuth` stands for a server (kept across reconnects while its URL and `oauth`
settings are unchanged; replicas share their server's), the credential store (made on first
use), the hub's callback URLs (one per upstream, `/oauth/upstream/callback/<server>`, so a
response can only finish a flow of the server it was made for: a mix-up defence), the bounded
table of pending links (each single-use, bound to the credential object that made it, expiring
after ten minutes), and the callback itself. A user's own credential (`<server>~<principal hash>`,
`perUser`) is authorized only through a link bound to one browser: the user signs in at
`/oauth/upstream/start/<credential>` (`downstream.user_link`), which sets a cookie and makes the link,
and the callback refuses a browser without that cookie, so a link forwarded (or lured to) anyone
else cannot tie their upstream account to this principal. `on_authorized` wakes the pool. Replicas sharing a
Redis (`shared`) keep the credentials there, and each link too: the callback may reach any
replica, which finishes the flow with its own credential object for that server (for a user's own,
one it takes from the store if no call of theirs came to it: `user_credential`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from onemcp.config.model import ServerConfig, UpstreamOAuth
from onemcp.http.routes import UPSTREAM_OAUTH_CALLBACK, UPSTREAM_OAUTH_START

if TYPE_CHECKING:  # imported where used: a hub none of whose upstreams uses OAuth never loads httpx, jwt or Fernet
    import httpx

    from onemcp.upstream.oauth.client import Pending, ServerAuth
    from onemcp.upstream.oauth.store import Credentials

log = logging.getLogger("onemcp.upstream.oauth")
audit = logging.getLogger("onemcp.audit")
CALLBACK_PATH = UPSTREAM_OAUTH_CALLBACK
PENDING_PER_SERVER = 4
PENDING_LIMIT = 256


def oauth_enabled(config: ServerConfig) -> bool:
    """HTTP upstreams may use OAuth unless turned off or given an Authorization header of their own."""
    if config.transport == "stdio" or config.oauth is False:
        return False
    return not any(k.lower() == "authorization" for k in config.headers)


class UpstreamAuth:
    def __init__(self, config_dir: Path | None, callback_base: str | None, shared: str | None = None) -> None:
        self.config_dir = config_dir
        self.callback_base = callback_base.rstrip("/") if callback_base else None
        self.shared = shared  # the Redis hub replicas share, if any
        self._store: Credentials | None = None
        self.servers: dict[str, ServerAuth] = {}
        self._pending: dict[str, Pending] = {}
        self.on_authorized: Callable[[str], None] = lambda name: None
        self.on_forgotten: Callable[[str], None] = lambda name: None  # replicas: the others forget it too
        self.dropped: list[Callable[[str], None]] = []  # told of each credential forgotten (here or elsewhere)
        self._exchanges: set[anyio.CancelScope] = set()  # the OAuth exchanges under way (`http`)
        self.stopping = False  # the hub is stopping (`stop`): no exchange waits on a remote party any more

    @property
    def store(self) -> Credentials:
        if self._store is None:  # made on first use: no key file for hubs that never need one
            from onemcp.upstream.oauth.store import CredentialStore, RedisCredentialStore

            try:
                if self.shared is not None:
                    self._store = RedisCredentialStore(self.shared, self.config_dir)
                else:
                    self._store = CredentialStore(self.config_dir)
            except (OSError, sqlite3.Error) as exc:
                # keep serving: tokens then live in memory only, until the file is fixed
                log.error("upstream credentials cannot be stored (%s); keeping them in memory only", exc)
                self._store = CredentialStore(None)
        return self._store

    def has_store(self) -> bool:
        """Is there anything stored to read? (Reading never creates the key or the database: only a save does.)"""
        if self._store is not None or self.config_dir is None or self.shared is not None:
            return True
        return (self.config_dir / "upstream-auth.db").exists()

    @contextlib.asynccontextmanager
    async def http(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one OAuth exchange. Its callers shield it from their own cancellation (a rotated
        refresh token must be stored), so the hub's stop ends it here: `OAuthHttpError`, not a shutdown
        held for as long as an authorization server that does not answer takes (up to `RENEW_DEADLINE`)."""
        from onemcp.upstream.oauth.http import OAuthHttpError

        if self.stopping:  # none begun (a request is on its way before its first checkpoint)
            raise OAuthHttpError("the hub is stopping")
        scope = anyio.CancelScope()
        self._exchanges.add(scope)
        try:
            with scope:
                async with self.new_client() as client:
                    yield client
        finally:
            self._exchanges.discard(scope)
        if scope.cancelled_caught:
            raise OAuthHttpError("the hub is stopping")

    def new_client(self) -> httpx.AsyncClient:
        from onemcp.upstream.oauth import http as oauth_http

        return oauth_http.client()

    def stop(self) -> None:
        """The hub is stopping: every OAuth exchange under way ends now, and any begun from now on at once;
        nothing waits for another hub's lock on a credential, nor for a write to its file (`store.stop`)."""
        self.stopping = True
        for scope in list(self._exchanges):
            scope.cancel()
        if self._store is not None:
            self._store.stop()

    def callback_url(self, server: str) -> str | None:
        return f"{self.callback_base}{CALLBACK_PATH}/{server}" if self.callback_base else None

    def start_url(self, credential: str) -> str | None:
        """Where a user signs in to authorize their own credential (`<server>~<principal hash>`)."""
        return f"{self.callback_base}{UPSTREAM_OAUTH_START}/{credential}" if self.callback_base else None

    async def user_link(self, credential: str, browser: str, config: ServerConfig) -> str | None:
        """A new authorization link for a user's own credential (`config`: its server's) that only the
        browser holding the cookie `browser` can finish; None when it cannot be authorized now (never
        called, or no need)."""
        mine = await self.user_credential(credential, config) if "~" in credential else None
        link = mine.authorize_link(browser_hash(browser)) if mine is not None else None
        await self.links_written()
        return link

    async def links_written(self) -> None:
        """Replicas: wait (a few seconds at most) until the links made so far are in Redis, before any is
        handed out (its callback may reach any replica, and spends it there). One hub: at once."""
        from onemcp.upstream.oauth.store import RedisCredentialStore

        store = self.store
        if isinstance(store, RedisCredentialStore) and not await store.links_written():
            log.warning("an authorization link is not yet in Redis: its callback may work only at this replica")

    async def user_credential(self, credential: str, config: ServerConfig) -> ServerAuth | None:
        """A user's own credential here (`config`: its `perUser` server's): the one their calls made on
        this replica, or (replicas on one Redis) as another replica's call prepared it, read from the
        shared store (again, while this replica's cannot hand out a link: it may have been prepared,
        or logged out, elsewhere since), so that the sign-in page and the callback may reach any
        replica. None when there is nothing to authorize."""
        if not isinstance(config.oauth, UpstreamOAuth) or not config.oauth.per_user or not oauth_enabled(config):
            return None
        mine = self.servers.get(credential)
        if self.shared is None:
            return mine
        if mine is not None and mine.config.url == config.url and mine.config.oauth == config.oauth:
            if not mine.linkable:
                await mine.adopt()
            return mine
        from onemcp.upstream.oauth.client import ServerAuth

        made = ServerAuth(self, credential, config)
        if not await made.adopt():
            return None  # no call of theirs was prepared anywhere: nothing to authorize
        if mine is not None:  # made for the server's config before a reload: its links end
            self._drop_pending(mine)
        self.servers[credential] = made
        return made

    def for_server(self, name: str, config: ServerConfig) -> ServerAuth | None:
        """The server's credential (`config`: the server's own, also for its replicas)."""
        if not oauth_enabled(config):
            return None
        from onemcp.upstream.oauth.client import ServerAuth

        current = self.servers.get(name)
        if current is None or current.config.url != config.url or current.config.oauth != config.oauth:
            if current is not None:
                self._drop_pending(current)
            current = self.servers[name] = ServerAuth(self, name, config)
        elif current.tokens is None:
            current.reread()  # another hub on the same config may have been authorized meanwhile
        return current

    # ---------------------------------------------------------------- pending links
    def latest_pending(self, owner: ServerAuth) -> Pending | None:
        mine = [p for p in self._pending.values() if p.owner is owner and p.browser is None]
        return mine[-1] if mine else None

    def add_pending(self, state: str, pending: Pending) -> None:
        now = time.time()
        for key in [k for k, p in self._pending.items() if p.expires <= now]:
            del self._pending[key]
        mine = [k for k, p in self._pending.items() if p.owner is pending.owner]
        for key in mine[: max(0, len(mine) - PENDING_PER_SERVER + 1)]:
            del self._pending[key]  # the oldest links of this server stop working
        while len(self._pending) >= PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]
        self._pending[state] = pending
        from onemcp.upstream.oauth.store import RedisCredentialStore

        store = self.store
        if isinstance(store, RedisCredentialStore):  # replicas: the callback may come back to another one
            doc = {
                "server": pending.owner.name,
                "serverUrl": pending.owner.url,
                "verifier": pending.verifier,
                "scope": pending.scope,
                "url": pending.url,
                "expires": pending.expires,
                "metadata": pending.metadata,
                "registration": pending.registration.to_doc(),
                "resource": pending.resource,
                "browser": pending.browser,
            }
            store.put_link(state, doc, pending.expires - now)

    async def _shared_link(
        self, server: str, state: str, mine: Pending | None, config: ServerConfig | None
    ) -> Pending | None:
        """A link handed out by any replica (this one's, `mine`, included: it is then spent for all), as a
        Pending of this replica's credential for `server` (a user's own is taken from the store with
        `config`, its server's, if no call of theirs came here); None when it was spent or never made, or
        the server differs here. While Redis cannot say, a link of this replica's still works here."""
        from onemcp.upstream.oauth.client import Pending
        from onemcp.upstream.oauth.flow import Registration
        from onemcp.upstream.oauth.store import CredentialsUnavailable, RedisCredentialStore

        store = self.store
        if not isinstance(store, RedisCredentialStore) or not state:
            return mine
        try:
            doc = await store.take_link(state)
        except CredentialsUnavailable:
            log.error("cannot read the replicas' authorization links; only this replica's work")
            return mine
        if mine is not None:
            return mine if doc is not None else None  # spent through another replica
        owner = self.servers.get(server)
        if owner is None and config is not None and doc is not None and doc.get("server") == server:
            owner = await self.user_credential(server, config)  # a user's, prepared by another replica's call
        if doc is None or owner is None or doc.get("server") != server or doc.get("serverUrl") != owner.url:
            return None
        try:
            return Pending(
                owner,
                str(doc["verifier"]),
                doc.get("scope"),
                str(doc["url"]),
                float(doc["expires"]),
                dict(doc["metadata"]),
                Registration.from_doc(doc["registration"]),
                str(doc["resource"]),
                doc.get("browser"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("a shared authorization link for %s is unreadable (%s)", server, exc)
            return None

    def _drop_pending(self, owner: ServerAuth) -> None:
        for key in [k for k, p in self._pending.items() if p.owner is owner]:
            del self._pending[key]

    async def callback(
        self, server: str, params: dict[str, str], browser: str | None = None, config: ServerConfig | None = None
    ) -> tuple[int, str, str]:
        """Handle an authorization response for `server`: (HTTP status, page title, detail). `browser`:
        the cookie the browser brought back, which a user's own link must match; `config`: the server's,
        for a user's own credential that another replica prepared."""
        state = params.get("state", "")
        pending = self._pending.pop(state, None)
        if self.shared is not None:
            pending = await self._shared_link(server, state, pending, config)
        if pending is None or pending.expires <= time.time() or pending.owner.name != server:
            again = (
                "Call the server from your MCP client again for a new link."
                if "~" in server
                else "Start again from /health or `onemcp auth upstream login`."
            )
            return 400, "Unknown or expired authorization", again
        owner = pending.owner
        bound = "~" in owner.name or pending.browser is not None  # a user's own: only the browser that signed in
        if bound and not _same_browser(pending.browser, browser):
            audit.info("upstream authorization refused server=%s reason=another browser", owner.name)
            return (
                403,
                "Started in another browser",
                "This authorization can only be finished in the browser that signed in to onemcp for it. "
                "Open the link your own MCP client gave you, sign in, and authorize there.",
            )
        if self.servers.get(owner.name) is not owner:
            return 400, "The server changed", f"{owner.name}'s configuration changed since this link was made."
        if "error" in params:
            owner.detail = (
                f"the authorization was refused: {params['error'][:100]} {params.get('error_description', '')[:200]}"
            )
            audit.info("upstream authorization refused server=%s error=%.100s", owner.name, params["error"])
            return 400, "Authorization refused", owner.detail
        from onemcp.upstream.oauth.http import OAuthClientError

        code = params.get("code")
        if not code:
            return 400, "No authorization code", "The authorization server sent no code."
        try:
            await owner.complete(pending, code, params.get("iss"))
        except (OAuthClientError, TimeoutError) as exc:
            detail = str(exc) or "the token request took too long"
            owner.detail = detail
            log.warning("upstream %s: authorization failed: %s", owner.name, detail)
            audit.info("upstream authorization failed server=%s reason=%s", owner.name, detail)
            return 502, "Authorization failed", detail
        scope = owner.tokens.scope if owner.tokens else None
        issuer = owner.metadata.get("issuer") if owner.metadata else None
        log.info("upstream %s: authorized (scope %s)", owner.name, scope)
        audit.info("upstream authorized server=%s issuer=%s scope=%s", owner.name, issuer, scope)
        self.on_authorized(owner.name)
        server, _, user = owner.name.partition("~")
        title = f"{server} is authorized for you" if user else f"{server} is authorized"
        return 200, title, "onemcp connects to it now. You can close this tab."

    async def forget(self, name: str) -> bool:
        """Log out: drop the tokens (and registration) for `name`; a server's name drops its users'
        own credentials too (`<server>~<principal hash>`, `perUser`), one user's name only theirs."""
        names = [name]
        if "~" not in name:
            names += sorted({n for n in [*self.servers, *await self.store.names()] if n.startswith(f"{name}~")})
        forgot = False
        for each in names:
            server = self.servers.get(each)
            if server is not None:
                await server.forget()
                self._drop_pending(server)
            self.on_forgotten(each)
            forgot = await self.store.remove(each) or forgot
            for told in self.dropped:
                told(each)
        return forgot

    async def forgotten_elsewhere(self, name: str) -> None:
        """Another replica logged `name` out (and deleted what was stored): drop what this one holds."""
        server = self.servers.get(name)
        if server is not None:
            await server.forget()
            self._drop_pending(server)
        for told in self.dropped:
            told(name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _same_browser(expected: str | None, cookie: str | None) -> bool:
    return expected is not None and cookie is not None and hmac.compare_digest(expected, browser_hash(cookie))


def browser_hash(cookie: str) -> str:
    """What a pending link keeps of the cookie its browser must bring back (never the cookie itself)."""
    return hashlib.sha256(cookie.encode()).hexdigest()
