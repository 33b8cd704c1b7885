"""The hub's built-in OAuth 2.1 authorization server over HTTP (plain ASGI), and its token check.

Owns the endpoints: RFC 8414 metadata (also at the OIDC discovery paths), RFC 7591 registration, the authorization
endpoint (request checks, the consent page and its CSRF cookie, or "auto" consent; with operator policy "key", the
operator key field, its refusals, and the signed cookie that remembers an operator's browser), the token endpoint
with client authentication, RFC 7009 revocation; and `verify`, the `Verifier` the gate asks about bearer tokens.
Rules live in `authorize` (requests, who may approve), `grants` (codes, tokens), `clients` (metadata) and
`directory` (which client asks); state in `store` (or `shared`, for replicas); pages in `consent`. The
resource-server side (401s, RFC 9728 metadata, call-time scopes) is the gate's.

Errors: an `OAuthError` becomes an RFC 6749 §5.2 JSON reply at the token, registration and
revocation endpoints; at the authorization endpoint it becomes a redirect with `error=` once
client and redirect URI are trusted, and a 400 page (or JSON, by Accept) before that.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from onemcp.auth.keys import Keys, KeyStore
from onemcp.auth.principal import Principal
from onemcp.auth.server.authorize import (
    OPERATOR_ATTEMPTS,
    OPERATOR_TTL,
    AuthorizationRequest,
    NotOperator,
    Operator,
    OperatorCheck,
    OperatorPolicy,
    Pending,
    PendingConsent,
    PendingConsents,
    TooManyPending,
    check_request,
    parse_params,
    with_params,
)
from onemcp.auth.server.clients import (
    AUTH_METHODS,
    GRANT_TYPES,
    ClientMetadataError,
    redirect_uri_matches,
    redirects_at_once,
    registration_metadata,
)
from onemcp.auth.server.consent import HTML, PAGE_HEADERS, back_page, consent_page, error_page, posted_here
from onemcp.auth.server.directory import ClientDirectory
from onemcp.auth.server.grants import ACCESS_PREFIX, Clock, Grants, Lifetimes, OAuthError, canonical_resource
from onemcp.auth.server.state_calls import StateCalls
from onemcp.auth.server.store import ClientRecord, OAuthState, OAuthStore, digest
from onemcp.config import redis_link
from onemcp.http.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    cookies,
    forwarded,
    header,
    read_body,
    send_bytes,
    send_empty,
    send_json,
)
from onemcp.http.guard import is_loopback
from onemcp.protocol.errors import echo

audit = logging.getLogger("onemcp.audit")

BODY_LIMIT = 64 * 1024
FORM = "application/x-www-form-urlencoded"
OPERATOR_COOKIE = "onemcp_operator"
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
CORS = [(b"access-control-allow-origin", b"*")]  # browser-based MCP clients call these endpoints
PREFLIGHT = [
    *CORS,
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version"),
    (b"access-control-max-age", b"600"),
]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class OAuthServer:
    def __init__(
        self,
        store_path: Path,
        issuer: str,
        resource: str,
        *,
        scopes_supported: list[str],
        consent: Literal["page", "auto"] = "page",
        operator: OperatorPolicy = "loopback",
        keys: Keys | None = None,
        resolve: Callable[[Principal], Principal] | None = None,
        allow_insecure_loopback_metadata: bool = False,
        access_token_ttl: float = 15 * 60,
        refresh_token_ttl: float = 30 * 86400,
        code_ttl: float = 60,
        clock: Clock = time.time,
        shared: str | None = None,
        outage_grace: float = 60.0,  # replicas: how long a token checked in Redis counts while it cannot be reached
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.resource = canonical_resource(resource)
        self.scopes_supported = list(scopes_supported)
        self.consent = consent
        self.clock = clock
        # `shared`: the Redis hub replicas share, so that any replica honours what another issued
        self.shared = shared
        self.store: OAuthState
        self._pending: Pending
        secret: Callable[[], bytes] | None = None
        if shared is not None:
            from onemcp.auth.server import shared as redis_state

            state = redis_state.open_state(shared, clock)
            self.store, self._pending, secret = state.store, state.pending, state.operator_secret
            self._checked = redis_state.CheckedTokens(clock, outage_grace)
        else:
            self.store = OAuthStore(store_path)
            self._pending = PendingConsents()
        # `io(call, *args)`: `call(*args)` on the state, on a worker thread (an unreachable state: 503)
        self.io = StateCalls(None if shared is None else redis_link.breaker(shared))
        self.clients = ClientDirectory(
            self.store, self.io, clock, allow_insecure_loopback_metadata=allow_insecure_loopback_metadata
        )
        self.grants = Grants(self.store, self.resource, Lifetimes(access_token_ttl, refresh_token_ttl, code_ttl), clock)
        # policy "key": approving needs an admin API key (from `keys`, by default keys.db beside the store)
        keys = keys or KeyStore(store_path.with_name("keys.db"))  # (opened on first use)
        self.operators = OperatorCheck(keys, clock, secret, resolve) if operator == "key" else None
        base = self._base = urlsplit(self.issuer).path.rstrip("/")
        self.paths = {name: f"{base}/oauth/{name}" for name in ("authorize", "token", "register", "revoke")}
        metadata_paths = {
            f"/.well-known/oauth-authorization-server{base}",
            f"/.well-known/openid-configuration{base}",
            f"{base}/.well-known/openid-configuration",
        }
        self._routes: dict[str, dict[str, Handler]] = {p: {"GET": self._metadata} for p in metadata_paths}
        self._routes[self.paths["authorize"]] = {"GET": self._authorize, "POST": self._consent}
        self._routes[self.paths["token"]] = {"POST": self._token}
        self._routes[self.paths["register"]] = {"POST": self._register}
        self._routes[self.paths["revoke"]] = {"POST": self._revoke}

    def close(self) -> None:
        self.store.close()

    def handles(self, path: str) -> bool:
        """Is `path` one of this server's endpoints (metadata included)?"""
        return path in self._routes

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        endpoint = {name: f"{self.issuer}/oauth/{name}" for name in self.paths}
        return {
            "issuer": self.issuer,
            "authorization_endpoint": endpoint["authorize"],
            "token_endpoint": endpoint["token"],
            "registration_endpoint": endpoint["register"],
            "revocation_endpoint": endpoint["revoke"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(GRANT_TYPES),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": self.scopes_supported,
            "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True,
        }

    # ----------------------------------------------------------------- ASGI
    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # behind a proxy that strips the issuer's path (publicUrl https://host/hub/mcp), /oauth/... is /hub/oauth/...
        methods = self._routes.get(scope["path"]) or self._routes.get(self._base + scope["path"])
        if methods is None:
            await send_json(send, 404, {"error": "not_found"})
            return
        handler = methods.get(scope["method"])
        if scope["method"] == "OPTIONS" and "authorize" not in scope["path"]:
            await send_empty(send, 204, PREFLIGHT)
        elif handler is None:
            allow = ", ".join(methods).encode()
            await send_json(send, 405, {"error": "method_not_allowed"}, [(b"allow", allow)])
        else:
            with contextlib.suppress(ClientGone):  # nobody left to answer
                try:
                    await handler(scope, receive, send)
                except OAuthError as exc:  # the shared store could not be reached (see `io`)
                    await self._error(send, exc, [*CORS, *NO_STORE])
                finally:
                    if self.shared is not None and handler in (self._token, self._revoke):
                        self._checked.clear()  # a revocation (or a replay's) may have happened here

    __call__ = app

    async def _metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.metadata(), [*CORS, (b"cache-control", b"max-age=300")])

    # ---------------------------------------------------------------- verify
    async def verify(self, token: str) -> Principal | None:
        """The principal for an access token issued here for the hub; None for tokens not ours. `InvalidToken`
        for one of ours that is unknown, expired, revoked, for another resource (or `Unconfirmed`)."""
        if self.shared is None:
            return self.grants.principal(token)  # SQLite: a read, which waits for no writer (`store`)
        if not token.startswith(ACCESS_PREFIX):
            return None
        key = digest(token)
        principal = self._checked.get(key)  # replicas: checked in Redis a moment ago
        if principal is not None:
            return principal
        try:
            principal = await self.io(self.grants.principal, token)
        except OAuthError:  # while Redis cannot be reached: as checked lately (`auth.redisOutageGrace`), else 503
            return self._checked.unconfirmed(key)
        if principal is not None:
            self._checked.put(key, principal)
        return principal

    # --------------------------------------------------------------- clients
    async def _register(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 7591 dynamic client registration."""
        try:
            body = await self._body(scope, receive)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ClientMetadataError("invalid_client_metadata", "the body must be JSON") from None
            meta = registration_metadata(doc)
            if not await self.clients.room_to_register():
                raise ClientMetadataError("invalid_client_metadata", "this server registers no more clients")
        except ClientMetadataError as exc:
            await send_json(send, 400, {"error": exc.error, "error_description": exc.description}, CORS)
            return
        except OAuthError as exc:
            await self._error(send, exc, CORS)
            return
        now = self.clock()
        client_id = secrets.token_urlsafe(18)
        secret = None if meta["token_endpoint_auth_method"] == "none" else secrets.token_urlsafe(32)
        await self.io(self.store.put_client, ClientRecord(client_id, secret and digest(secret), meta, "dcr", now, now))
        reply: dict[str, Any] = {"client_id": client_id, "client_id_issued_at": int(now), **meta}
        if secret is not None:
            reply |= {"client_secret": secret, "client_secret_expires_at": 0}
        audit.info("oauth client registered client=%s name=%r", client_id, meta.get("client_name"))
        await send_json(send, 201, reply, [*CORS, *NO_STORE])

    # ------------------------------------------------------- authorization
    async def _authorize(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET: check the request; then the consent page, or (consent "auto") the code at once."""
        try:
            params, repeated = parse_params(scope.get("query_string", b"").decode("latin-1"))
        except OAuthError as exc:
            await self._refuse(scope, send, exc.description)
            return
        client_id = params.get("client_id")
        if client_id is None or "client_id" in repeated:
            await self._refuse(scope, send, "client_id is missing or given twice")
            return
        try:
            client = await self.clients.known(client_id)
        except ClientMetadataError as exc:
            await self._refuse(scope, send, exc.description)
            return
        redirect_uri = params.get("redirect_uri")
        if "redirect_uri" in repeated or (
            redirect_uri is not None and not redirect_uri_matches(client.redirect_uris, redirect_uri)
        ):
            await self._refuse(scope, send, "redirect_uri is not one the client registered")
            return
        explicit = redirect_uri is not None
        if redirect_uri is None:
            if len(client.redirect_uris) != 1:
                await self._refuse(scope, send, "redirect_uri is required (the client registered several)")
                return
            redirect_uri = client.redirect_uris[0]
        try:
            request = check_request(
                params,
                repeated,
                client=client,
                redirect_uri=redirect_uri,
                explicit=explicit,
                resource=self.resource,
                scopes_supported=self.scopes_supported,
            )
        except OAuthError as exc:
            state = params.get("state")
            target = {"error": exc.error, "error_description": exc.description, "state": state, "iss": self.issuer}
            back = with_params(redirect_uri, target)
            if redirects_at_once(redirect_uri):
                await send_empty(send, 302, [(b"location", back.encode()), *NO_STORE])
            else:  # a URI anyone may have registered: not an open redirector (RFC 9700 §4.11.2)
                await send_bytes(send, 400, back_page(exc.description, back), HTML, PAGE_HEADERS)
            return
        if self.consent == "auto":
            await self._answer(send, request, approved=True, status=302, operator="auto")
            return
        try:  # (bounded per address: a flood from one place cannot cancel or block the operator's page)
            shown = await self.io(self._pending.add, request, self.clock(), (scope.get("client") or ("",))[0])
        except TooManyPending as exc:
            await self._refuse(scope, send, str(exc), str(exc.retry_after))
            return
        await self._show_consent(scope, send, *shown)

    async def _show_consent(
        self, scope: Scope, send: Send, request_id: str, pending: PendingConsent, *, error: str | None = None
    ) -> None:
        """The consent page for a pending request, with its CSRF cookie; in policy "key", with the operator
        key field unless this browser's operator cookie is good (then it names the key)."""
        headers = [*PAGE_HEADERS, (b"set-cookie", self._csrf_cookie(scope, request_id, pending).encode())]
        remembered = None
        if self.operators is not None:
            remembered, stale = await self._remembered(scope)
            if stale:
                headers.append((b"set-cookie", self._operator_cookie(scope, None).encode()))
        client = pending.request.client
        page = consent_page(
            client_name=client.name,
            client_id=client.client_id,
            verified_by_url=client.source == "cimd",
            redirect_uri=pending.request.redirect_uri,
            scopes=pending.request.scopes,
            action=self.paths["authorize"],
            request_id=request_id,
            csrf=pending.csrf,
            ask_key=self.operators is not None and remembered is None,
            operator_name=None if remembered is None else remembered.name,
            error=error,
        )
        await send_bytes(send, 200 if error is None else 403, page, HTML, headers)

    async def _consent(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST: the consent form's answer; checked against the pending request and its CSRF cookie, and
        an approval (policy "key") against the operator key typed or the operator cookie."""
        try:
            params, _ = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
        except OAuthError as exc:
            await self._refuse(scope, send, exc.description, status=exc.status)  # 413 for a body too large
            return
        request_id = params.get("request_id", "")
        now = self.clock()
        pending = await self.io(self._pending.get, request_id, now)
        if pending is None:
            await self._refuse(scope, send, "This authorization request expired or was already answered.")
            return
        if not posted_here(scope, self.issuer):
            # a page of another origin (another port on this host, a sibling subdomain) posting a form it
            # prepared: the browser would send the operator cookie along (it is same-site)
            await self.io(self._pending.take, request_id, now)
            audit.info("auth denied path=%s reason=consent posted from another origin", scope.get("path", ""))
            await self._refuse(scope, send, "The consent form was posted from another site; start again.")
            return
        form_ok = hmac.compare_digest(params.get("csrf", "").encode(), pending.csrf.encode())
        cookie = cookies(scope).get(self._cookie(request_id), "")
        cookie_ok = hmac.compare_digest(cookie.encode(), pending.csrf.encode())
        if not (form_ok and cookie_ok):
            await self.io(self._pending.take, request_id, now)  # a forged answer ends the request too
            await self._refuse(scope, send, "The consent form failed its CSRF check; start again from the application.")
            return
        approved = params.get("decision") == "approve"
        set_cookies = [f"{self._cookie(request_id)}=; Max-Age=0; {self._cookie_attributes(scope)}"]
        operator = "loopback"
        if approved and self.operators is None and forwarded(scope):
            # "loopback" trusts whoever reaches the page; through a proxy that is anyone the proxy serves
            await self.io(self._pending.take, request_id, now)
            audit.info("auth denied path=%s reason=loopback operator policy behind a proxy", scope.get("path", ""))
            await self._refuse(
                scope, send, 'This request came through a proxy: set "oauthOperator": "key" to approve from afar.'
            )
            return
        if approved and self.operators is not None:
            typed = params.get("operator_key", "").strip()
            try:
                proven = await self._operator(scope, typed)
            except NotOperator as exc:
                await self._operator_refused(scope, send, request_id, pending, str(exc), typed=bool(typed))
                return
            operator = f"key:{proven.key_id}"
            audit.info(
                "auth allowed path=%s operator=%s by=%s client=%s",
                scope.get("path", ""),
                operator,
                "typed key" if proven.cookie is not None else "cookie",
                pending.request.client.client_id,
            )
            if proven.cookie is not None and not is_loopback(urlsplit(self.issuer).hostname or ""):
                # not on a loopback issuer: the cookie would reach every port of this host, other servers' too
                set_cookies.append(self._operator_cookie(scope, proven.cookie))
        taken = await self.io(self._pending.take, request_id, now)
        if taken is None or taken.csrf != pending.csrf:  # answered (or refused) meanwhile, here or elsewhere
            await self._refuse(scope, send, "This authorization request expired or was already answered.")
            return
        await self._answer(send, pending.request, approved=approved, status=303, cookies=set_cookies, operator=operator)

    async def _operator(self, scope: Scope, typed: str) -> Operator:
        """The operator approving: by the key typed (it wins when given), else by this browser's cookie."""
        assert self.operators is not None
        if typed:
            return await self.operators.typed(typed)
        remembered, stale = await self._remembered(scope)
        if remembered is not None:
            return remembered
        raise NotOperator(stale or "no operator key given")

    async def _remembered(self, scope: Scope) -> tuple[Operator | None, str | None]:
        """The operator this browser's cookie names; or why a cookie it sent is not good (None: it sent none)."""
        assert self.operators is not None
        value = cookies(scope).get(OPERATOR_COOKIE)
        if not value:
            return None, None
        try:
            return await self.io(self.operators.remembered, value), None
        except NotOperator as exc:
            return None, str(exc)

    async def _operator_refused(
        self, scope: Scope, send: Send, request_id: str, pending: PendingConsent, reason: str, *, typed: bool
    ) -> None:
        """An approval without a valid operator key: the page again with a fresh CSRF token, or, after
        OPERATOR_ATTEMPTS of them, the request dropped. The audit line says why; never the key."""
        again = await self.io(self._pending.refuse, request_id, self.clock())
        client_id = pending.request.client.client_id
        audit.info(
            "auth denied path=%s reason=operator: %s client=%s request=%s refused=%d/%d",
            scope.get("path", ""),
            reason,
            client_id,
            request_id,
            pending.refused + 1,
            OPERATOR_ATTEMPTS,
        )
        if again is None:
            audit.info(
                "oauth consent dropped client=%s request=%s reason=too many operator refusals", client_id, request_id
            )
            detail = (
                f"Approval was refused {OPERATOR_ATTEMPTS} times for want of a valid operator key, so this"
                " authorization request was cancelled. Start again from the application."
            )
            clear = f"{self._cookie(request_id)}=; Max-Age=0; {self._cookie_attributes(scope)}"
            headers = [*PAGE_HEADERS, (b"set-cookie", clear.encode())]
            await send_bytes(send, 403, error_page("Authorization cancelled", detail), HTML, headers)
            return
        left = OPERATOR_ATTEMPTS - again.refused
        error = (
            "That is not a valid operator key: it must be an unexpired, unrevoked API key with the admin scope."
            if typed
            else "Approving needs the operator key: an unexpired, unrevoked API key with the admin scope."
        )
        await self._show_consent(scope, send, request_id, again, error=f"{error} Attempts left: {left}.")

    async def _answer(
        self,
        send: Send,
        request: AuthorizationRequest,
        *,
        approved: bool,
        status: int,
        operator: str,
        cookies: list[str] | None = None,
    ) -> None:
        """Send the browser back to the client with a code, or with access_denied."""
        client_id = request.client.client_id
        if approved:
            code = await self.io(
                self.grants.mint_code,
                client_id,
                request.redirect_uri,
                request.redirect_explicit,
                request.challenge,
                request.scopes,
            )
            params: dict[str, str | None] = {"code": code, "state": request.state, "iss": self.issuer}
            audit.info(
                "oauth consent given client=%s scopes=%s operator=%s", client_id, " ".join(request.scopes), operator
            )
        else:
            params = {"error": "access_denied", "state": request.state, "iss": self.issuer}
            audit.info("oauth consent refused client=%s", client_id)
        headers = [(b"location", with_params(request.redirect_uri, params).encode()), *NO_STORE]
        headers += [(b"set-cookie", cookie.encode()) for cookie in cookies or []]
        await send_empty(send, status, headers)

    def _cookie(self, request_id: str) -> str:
        return f"onemcp_consent_{request_id}"

    def _csrf_cookie(self, scope: Scope, request_id: str, pending: PendingConsent) -> str:
        max_age = max(0, int(pending.expires - self.clock()))
        return f"{self._cookie(request_id)}={pending.csrf}; Max-Age={max_age}; {self._cookie_attributes(scope)}"

    def _operator_cookie(self, scope: Scope, value: str | None) -> str:
        """Set (or, with None, clear) the cookie that remembers this browser's operator."""
        max_age = int(OPERATOR_TTL) if value is not None else 0
        return f"{OPERATOR_COOKIE}={value or ''}; Max-Age={max_age}; {self._cookie_attributes(scope)}"

    def _cookie_attributes(self, scope: Scope) -> str:
        """Sent only to the authorization endpoint, never to scripts or other sites; Secure over https
        (here, or at a TLS-terminating proxy in front of an https issuer)."""
        https = scope.get("scheme") == "https" or self.issuer.startswith("https://")
        return f"Path={self.paths['authorize']}; HttpOnly; SameSite=Strict{'; Secure' if https else ''}"

    async def _refuse(self, scope: Scope, send: Send, detail: str, retry: str | None = None, status: int = 400) -> None:
        """`status` for an authorization request that cannot be sent back to the client; 429 (`retry`: Retry-After)."""
        status, error = (status, "invalid_request") if retry is None else (429, "temporarily_unavailable")
        extra = [] if retry is None else [(b"retry-after", retry.encode())]
        if "application/json" in (accept := header(scope, b"accept") or "") and "text/html" not in accept:
            await send_json(send, status, {"error": error, "error_description": detail}, [*NO_STORE, *extra])
        else:
            await send_bytes(send, status, error_page("Authorization failed", detail), HTML, [*PAGE_HEADERS, *extra])

    # ----------------------------------------------------------------- token
    async def _token(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            params, repeated = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
            if repeated - {"resource"}:
                raise OAuthError("invalid_request", f"parameters given twice: {echo(', '.join(sorted(repeated)))}")
            if "resource" in repeated:
                raise OAuthError("invalid_target", f"this server issues tokens only for {self.resource}")
            client = await self.clients.authenticate(header(scope, b"authorization") or "", params)
            grant_type = params.get("grant_type")
            if grant_type == "authorization_code":
                reply = await self.io(self.grants.exchange_code, client, params)
            elif grant_type == "refresh_token":
                reply = await self.io(self.grants.refresh, client, params)
            elif grant_type is None:
                raise OAuthError("invalid_request", "grant_type is required")
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {echo(repr(grant_type))} is not supported")
        except OAuthError as exc:
            extra = [*CORS, *NO_STORE]
            if exc.status == 401 and (header(scope, b"authorization") or "").lower().startswith("basic "):
                extra.append((b"www-authenticate", b'Basic realm="onemcp"'))
            await self._error(send, exc, extra)
            return
        await send_json(send, 200, reply, [*CORS, *NO_STORE])

    # ------------------------------------------------------------ revocation
    async def _revoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 7009: 200 whether or not the token was known; a refresh token takes its grant with it."""
        try:
            params, _ = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
            token = params.get("token")
            if token is None:
                raise OAuthError("invalid_request", "token is required")
            authorization = header(scope, b"authorization") or ""
            presented = "client_id" in params or authorization.lower().startswith("basic ")
            client = await self.clients.authenticate(authorization, params) if presented else None
        except OAuthError as exc:
            await self._error(send, exc, [*CORS, *NO_STORE])
            return
        try:
            await self.io(self.grants.revoke, token, None if client is None else client.client_id)
        except OAuthError as exc:
            await self._error(send, exc, [*CORS, *NO_STORE])
            return
        await send_empty(send, 200, [*CORS, *NO_STORE])

    # --------------------------------------------------------------- plumbing
    async def _body(self, scope: Scope, receive: Receive, *, form: bool = False) -> bytes:
        if form:
            content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if content_type != FORM:
                raise OAuthError("invalid_request", f"the body must be {FORM}")
        length = header(scope, b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > BODY_LIMIT:
                raise BodyTooLarge
            return await read_body(receive, BODY_LIMIT)
        except BodyTooLarge:
            raise OAuthError("invalid_request", f"the body is larger than {BODY_LIMIT} bytes", 413) from None

    async def _error(self, send: Send, exc: OAuthError, extra: list[tuple[bytes, bytes]]) -> None:
        await send_json(send, exc.status, {"error": exc.error, "error_description": exc.description}, extra)
