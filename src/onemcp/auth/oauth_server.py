"""The hub's built-in OAuth 2.1 authorization server over HTTP (plain ASGI), and its token check.

Owns the endpoints: RFC 8414 metadata (also at the OIDC discovery paths), RFC 7591 registration,
the authorization endpoint (request checks, the consent page and its CSRF cookie, or "auto"
consent), the token endpoint with client authentication, RFC 7009 revocation; the lookup of
clients (registered, or Client ID Metadata Documents fetched and cached); and `verify`, the
`Verifier` the gate asks about bearer tokens. The rules live in `oauth_authorize` (requests),
`oauth_grants` (codes and tokens) and `oauth_clients` (client metadata); storage in `store`;
pages in `oauth_consent`. The resource-server side (401s, RFC 9728 metadata, scopes at call
time) is the gate's.

Errors: an `OAuthError` becomes an RFC 6749 §5.2 JSON reply at the token, registration and
revocation endpoints; at the authorization endpoint it becomes a redirect with `error=` once
client and redirect URI are trusted, and a 400 page (or JSON, by Accept) before that.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

import orjson

from onemcp.auth.oauth_authorize import (
    PENDING_TTL,
    AuthorizationRequest,
    PendingConsents,
    check_request,
    parse_params,
    with_params,
)
from onemcp.auth.oauth_clients import (
    AUTH_METHODS,
    GRANT_TYPES,
    ClientMetadataError,
    fetch_metadata_document,
    is_metadata_url,
    redirect_uri_matches,
    registration_metadata,
)
from onemcp.auth.oauth_consent import HTML, PAGE_HEADERS, consent_page, error_page
from onemcp.auth.oauth_grants import Clock, Grants, Lifetimes, OAuthError, canonical_resource
from onemcp.auth.principal import Principal
from onemcp.auth.store import ClientRecord, OAuthStore, digest
from onemcp.downstream.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_bytes,
    send_empty,
    send_json,
)

audit = logging.getLogger("onemcp.audit")

BODY_LIMIT = 64 * 1024
METADATA_CACHE_TTL = 600.0  # seconds a fetched client metadata document is trusted
MAX_CLIENTS = 10_000  # registered (and, separately, cached metadata-document) clients
FORM = "application/x-www-form-urlencoded"
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
CORS = [(b"access-control-allow-origin", b"*")]  # browser-based MCP clients call these endpoints
PREFLIGHT = [
    *CORS,
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version"),
    (b"access-control-max-age", b"600"),
]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def cookies(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (header(scope, b"cookie") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found.setdefault(name, value)
    return found


class OAuthServer:
    def __init__(
        self,
        store_path: Path,
        issuer: str,
        resource: str,
        *,
        scopes_supported: list[str],
        consent: Literal["page", "auto"] = "page",
        allow_insecure_loopback_metadata: bool = False,
        access_token_ttl: float = 15 * 60,
        refresh_token_ttl: float = 30 * 86400,
        code_ttl: float = 60,
        clock: Clock = time.time,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.resource = canonical_resource(resource)
        self.scopes_supported = list(scopes_supported)
        self.consent = consent
        self.allow_insecure_loopback_metadata = allow_insecure_loopback_metadata
        self.clock = clock
        self.store = OAuthStore(store_path)
        self.grants = Grants(self.store, self.resource, Lifetimes(access_token_ttl, refresh_token_ttl, code_ttl), clock)
        self._pending = PendingConsents()
        base = urlsplit(self.issuer).path.rstrip("/")
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
        methods = self._routes.get(scope["path"])
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
                await handler(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.metadata(), [*CORS, (b"cache-control", b"max-age=300")])

    # ---------------------------------------------------------------- verify
    async def verify(self, token: str) -> Principal | None:
        """The principal for an access token issued here for the hub; None for tokens not ours.

        Raises `InvalidToken` for one of ours that is unknown, expired, revoked or for another resource.
        """
        return self.grants.principal(token)

    # --------------------------------------------------------------- clients
    async def client(self, client_id: str) -> ClientRecord | None:
        """A registered client, or a metadata-document client (fetched, or from a fresh cache)."""
        if not is_metadata_url(client_id, allow_insecure_loopback=self.allow_insecure_loopback_metadata):
            record = self.store.client(client_id)
            return record if record is not None and record.source == "dcr" else None
        now = self.clock()
        cached = self.store.client(client_id)
        if cached is not None and cached.source == "cimd" and now - cached.fetched < METADATA_CACHE_TTL:
            return cached
        meta = await fetch_metadata_document(client_id, allow_insecure_loopback=self.allow_insecure_loopback_metadata)
        record = ClientRecord(client_id, None, meta, "cimd", cached.issued if cached else now, now)
        if cached is not None or self.store.count_clients("cimd") < MAX_CLIENTS:
            self.store.put_client(record)
        return record

    async def _register(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 7591 dynamic client registration."""
        try:
            body = await self._body(scope, receive)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ClientMetadataError("invalid_client_metadata", "the body must be JSON") from None
            meta = registration_metadata(doc)
            if self.store.count_clients("dcr") >= MAX_CLIENTS:
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
        self.store.put_client(ClientRecord(client_id, secret and digest(secret), meta, "dcr", now, now))
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
            client = await self.client(client_id)
        except ClientMetadataError as exc:
            await self._refuse(scope, send, exc.description)
            return
        if client is None:
            await self._refuse(scope, send, f"unknown client_id {client_id!r}")
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
            await send_empty(send, 302, [(b"location", with_params(redirect_uri, target).encode()), *NO_STORE])
            return
        if self.consent == "auto":
            await self._answer(send, request, approved=True, status=302)
            return
        await self._show_consent(send, request)

    async def _show_consent(self, send: Send, request: AuthorizationRequest) -> None:
        request_id, csrf = self._pending.add(request, self.clock())
        client = request.client
        page = consent_page(
            client_name=client.name,
            client_id=client.client_id,
            verified_by_url=client.source == "cimd",
            redirect_uri=request.redirect_uri,
            scopes=request.scopes,
            action=self.paths["authorize"],
            request_id=request_id,
            csrf=csrf,
        )
        cookie = f"{self._cookie(request_id)}={csrf}; Max-Age={int(PENDING_TTL)}; {self._cookie_attributes()}"
        await send_bytes(send, 200, page, HTML, [*PAGE_HEADERS, (b"set-cookie", cookie.encode())])

    async def _consent(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST: the consent form's answer; checked against the pending request and its CSRF cookie."""
        try:
            params, _ = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
        except OAuthError as exc:
            await self._refuse(scope, send, exc.description)
            return
        request_id = params.get("request_id", "")
        pending = self._pending.take(request_id, self.clock())  # one answer per page, right or wrong
        if pending is None:
            await self._refuse(scope, send, "This authorization request expired or was already answered.")
            return
        form_ok = hmac.compare_digest(params.get("csrf", "").encode(), pending.csrf.encode())
        cookie = cookies(scope).get(self._cookie(request_id), "")
        cookie_ok = hmac.compare_digest(cookie.encode(), pending.csrf.encode())
        if not (form_ok and cookie_ok):
            await self._refuse(scope, send, "The consent form failed its CSRF check; start again from the application.")
            return
        decision = params.get("decision")
        clear = f"{self._cookie(request_id)}=; Max-Age=0; {self._cookie_attributes()}"
        await self._answer(send, pending.request, approved=decision == "approve", status=303, cookie=clear)

    async def _answer(
        self, send: Send, request: AuthorizationRequest, *, approved: bool, status: int, cookie: str | None = None
    ) -> None:
        """Send the browser back to the client with a code, or with access_denied."""
        client_id = request.client.client_id
        if approved:
            code = self.grants.mint_code(
                client_id, request.redirect_uri, request.redirect_explicit, request.challenge, request.scopes
            )
            params: dict[str, str | None] = {"code": code, "state": request.state, "iss": self.issuer}
            audit.info("oauth consent given client=%s scopes=%s", client_id, " ".join(request.scopes))
        else:
            params = {"error": "access_denied", "state": request.state, "iss": self.issuer}
            audit.info("oauth consent refused client=%s", client_id)
        headers = [(b"location", with_params(request.redirect_uri, params).encode()), *NO_STORE]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        await send_empty(send, status, headers)

    def _cookie(self, request_id: str) -> str:
        return f"onemcp_consent_{request_id}"

    def _cookie_attributes(self) -> str:
        secure = "; Secure" if self.issuer.startswith("https://") else ""
        return f"Path={self.paths['authorize']}; HttpOnly; SameSite=Strict{secure}"

    async def _refuse(self, scope: Scope, send: Send, detail: str) -> None:
        """400 for an authorization request that cannot be sent back to the client."""
        accept = header(scope, b"accept") or ""
        if "application/json" in accept and "text/html" not in accept:
            await send_json(send, 400, {"error": "invalid_request", "error_description": detail}, NO_STORE)
        else:
            await send_bytes(send, 400, error_page("Authorization failed", detail), HTML, PAGE_HEADERS)

    # ----------------------------------------------------------------- token
    async def _token(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            params, repeated = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
            if repeated - {"resource"}:
                raise OAuthError("invalid_request", f"parameters given twice: {', '.join(sorted(repeated))}")
            if "resource" in repeated:
                raise OAuthError("invalid_target", f"this server issues tokens only for {self.resource}")
            client = await self._authenticate(scope, params)
            grant_type = params.get("grant_type")
            if grant_type == "authorization_code":
                reply = self.grants.exchange_code(client, params)
            elif grant_type == "refresh_token":
                reply = self.grants.refresh(client, params)
            elif grant_type is None:
                raise OAuthError("invalid_request", "grant_type is required")
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        except OAuthError as exc:
            extra = [*CORS, *NO_STORE]
            if exc.status == 401 and (header(scope, b"authorization") or "").lower().startswith("basic "):
                extra.append((b"www-authenticate", b'Basic realm="onemcp"'))
            await self._error(send, exc, extra)
            return
        await send_json(send, 200, reply, [*CORS, *NO_STORE])

    async def _authenticate(self, scope: Scope, params: dict[str, str]) -> ClientRecord:
        """The client making a token or revocation request, authenticated by its registered method."""
        client_id, secret = params.get("client_id"), params.get("client_secret")
        authorization = header(scope, b"authorization") or ""
        if authorization.lower().startswith("basic "):
            if secret is not None:
                raise OAuthError("invalid_request", "use one client authentication method, not two")
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except ValueError:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            basic_id, _, basic_secret = decoded.partition(":")
            basic_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret) or None
            if client_id is not None and client_id != basic_id:
                raise OAuthError("invalid_client", "client_id differs from the Basic credentials", 401)
            client_id = basic_id
        if not client_id:
            raise OAuthError("invalid_client", "client_id is required", 401)
        try:
            client = await self.client(client_id)
        except ClientMetadataError as exc:
            raise OAuthError("invalid_client", exc.description, 401) from None
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401)
        if client.secret_hash is None:
            if secret is not None:
                raise OAuthError("invalid_client", "this client is public: it has no secret", 401)
        elif secret is None or not hmac.compare_digest(digest(secret), client.secret_hash):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    # ------------------------------------------------------------ revocation
    async def _revoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 7009: 200 whether or not the token was known; a refresh token takes its grant with it."""
        try:
            params, _ = parse_params((await self._body(scope, receive, form=True)).decode("utf-8", "replace"))
            token = params.get("token")
            if token is None:
                raise OAuthError("invalid_request", "token is required")
            presented = "client_id" in params or (header(scope, b"authorization") or "").lower().startswith("basic ")
            client = await self._authenticate(scope, params) if presented else None
        except OAuthError as exc:
            await self._error(send, exc, [*CORS, *NO_STORE])
            return
        self.grants.revoke(token, None if client is None else client.client_id)
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
