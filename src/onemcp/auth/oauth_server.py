"""The hub's built-in OAuth 2.1 authorization server: its endpoints, and the check of what it issued.

Owns the HTTP side (plain ASGI) of: RFC 8414 metadata, RFC 7591 registration, the authorization
endpoint with PKCE S256 and a consent page, the token endpoint (authorization_code and rotating
refresh_token grants, RFC 8707 `resource` bound to the hub), RFC 7009 revocation, and `verify`,
which turns an access token it issued into a `Principal`. Does not own client metadata rules
(`oauth_clients`), persistence (`store`), the pages (`oauth_consent`), or the resource-server
side (the gate: 401s, protected resource metadata, scopes at call time).

Tokens are opaque random strings, prefixed so the gate's other verifiers never mistake them:
`omat_` access, `omrt_` refresh, `omac_` codes. Only their SHA-256 is stored.

Errors: `OAuthError(error, description, status)` is an RFC 6749 §5.2 reply, raised by the
token-side checks and answered in one place per endpoint; the authorization endpoint turns
errors into a redirect (`error=` on the client's redirect URI) once that URI is trusted, and
into a 400 page before.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import orjson

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
from onemcp.auth.principal import BASE, InvalidToken, Principal
from onemcp.auth.store import ClientRecord, CodeGrant, OAuthStore, Token, digest
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

ACCESS_PREFIX = "omat_"
REFRESH_PREFIX = "omrt_"
CODE_PREFIX = "omac_"
BODY_LIMIT = 64 * 1024
MAX_PARAMS = 100
PENDING_LIMIT = 1000  # consent pages awaiting an answer
PENDING_TTL = 600.0
METADATA_CACHE_TTL = 600.0  # seconds a fetched client metadata document is trusted
MAX_CLIENTS = 10_000  # registered (and, separately, cached metadata-document) clients
PURGE_EVERY = 600.0
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(sha256), unpadded
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
FORM = "application/x-www-form-urlencoded"
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
CORS = [(b"access-control-allow-origin", b"*")]
PREFLIGHT = [
    *CORS,
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version"),
    (b"access-control-max-age", b"600"),
]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
Clock = Callable[[], float]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request: what a code for it will carry, and where it goes."""

    client: ClientRecord
    redirect_uri: str
    redirect_explicit: bool
    state: str | None
    challenge: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class PendingConsent:
    request: AuthorizationRequest
    csrf: str
    expires: float


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def canonical_resource(uri: str) -> str:
    """RFC 8707 resource for comparison: lower-case scheme and host, no fragment, no trailing slash."""
    parts = urlsplit(uri.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def with_params(uri: str, params: dict[str, str | None]) -> str:
    """`uri` with `params` added to its query (None values left out)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


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
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.code_ttl = code_ttl
        self.clock = clock
        self.store = OAuthStore(store_path)
        self._pending: dict[str, PendingConsent] = {}
        self._purged = 0.0
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
        """The principal for an access token this server issued for the hub; None for anyone else's."""
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
        )

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
        state = params.get("state")
        try:
            request = self._check_authorization(params, repeated, client, redirect_uri, explicit, state)
        except OAuthError as exc:
            target = {"error": exc.error, "error_description": exc.description, "state": state, "iss": self.issuer}
            await send_empty(send, 302, [(b"location", with_params(redirect_uri, target).encode()), *NO_STORE])
            return
        if self.consent == "auto":
            await self._answer(send, request, approved=True, status=302)
            return
        await self._show_consent(send, request)

    def _check_authorization(
        self,
        params: dict[str, str],
        repeated: set[str],
        client: ClientRecord,
        redirect_uri: str,
        explicit: bool,
        state: str | None,
    ) -> AuthorizationRequest:
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
        self._check_resource(params.get("resource"))
        requested = params.get("scope", BASE).split()
        unknown = [s for s in requested if s not in self.scopes_supported]
        if unknown or not requested:
            raise OAuthError("invalid_scope", f"unsupported scope: {' '.join(unknown)}")
        scopes = tuple(dict.fromkeys(requested))
        return AuthorizationRequest(client, redirect_uri, explicit, state, challenge, scopes)

    def _check_resource(self, resource: str | None, bound: str | None = None) -> None:
        if resource is None:
            return
        if "#" in resource or canonical_resource(resource) != (bound or self.resource):
            raise OAuthError("invalid_target", f"this server issues tokens only for {self.resource}")

    async def _show_consent(self, send: Send, request: AuthorizationRequest) -> None:
        now = self.clock()
        for rid in [rid for rid, p in self._pending.items() if p.expires <= now]:
            del self._pending[rid]
        while len(self._pending) >= PENDING_LIMIT:
            del self._pending[next(iter(self._pending))]
        request_id = secrets.token_urlsafe(16)
        csrf = secrets.token_urlsafe(32)
        self._pending[request_id] = PendingConsent(request, csrf, now + PENDING_TTL)
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
        pending = self._pending.pop(request_id, None)  # one answer per page, right or wrong
        if pending is None or pending.expires <= self.clock():
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
            code = CODE_PREFIX + secrets.token_urlsafe(32)
            grant = CodeGrant(
                client_id,
                request.redirect_uri,
                request.redirect_explicit,
                request.challenge,
                request.scopes,
                self.resource,
                self.clock() + self.code_ttl,
            )
            self.store.add_code(digest(code), grant)
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
                reply = self._exchange_code(client, params)
            elif grant_type == "refresh_token":
                reply = self._refresh(client, params)
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

    def _exchange_code(self, client: ClientRecord, params: dict[str, str]) -> dict[str, Any]:
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
        self._check_resource(params.get("resource"), grant.resource)
        family = secrets.token_hex(16)
        reply = self._issue(family, client, grant.resource, grant.scopes, grant.scopes, now)
        self.store.bind_code(code_hash, family)
        return reply

    def _refresh(self, client: ClientRecord, params: dict[str, str]) -> dict[str, Any]:
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
        self._check_resource(params.get("resource"))
        requested = params.get("scope")
        scopes = tuple(dict.fromkeys(requested.split())) if requested else grant.scopes
        if not scopes or not set(scopes) <= set(grant.scopes):
            raise OAuthError("invalid_scope", "a refresh may only narrow the granted scopes")
        if not self.store.rotate(token_hash, now):
            self._replayed(client, grant.family, now)
        # RFC 6749 §6: the new refresh token keeps the scopes of the old one; the access token may be narrower.
        return self._issue(grant.family, client, grant.resource, scopes, grant.scopes, now)

    def _replayed(self, client: ClientRecord, family: str, now: float) -> NoReturn:
        """A rotated refresh token came back: someone holds a copy, so the whole grant dies."""
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
            Token(digest(access), now + self.access_token_ttl, scopes),
            None if refresh is None else Token(digest(refresh), now + self.refresh_token_ttl, refresh_scopes),
        )
        if now - self._purged > PURGE_EVERY:
            self._purged = now
            self.store.purge(now)
        audit.info("oauth tokens issued client=%s scopes=%s", client.client_id, " ".join(scopes))
        reply: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl),
            "scope": " ".join(scopes),
        }
        if refresh is not None:
            reply["refresh_token"] = refresh
        return reply

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
        now = self.clock()
        token_hash = digest(token)
        if token.startswith(ACCESS_PREFIX):
            grant = self.store.access_token(token_hash)
            if grant is not None and (client is None or grant.client_id == client.client_id):
                self.store.revoke_access(token_hash, now)
                audit.info("oauth access token revoked client=%s", grant.client_id)
        elif token.startswith(REFRESH_PREFIX):
            grant = self.store.refresh_token(token_hash)
            if grant is not None and (client is None or grant.client_id == client.client_id):
                self.store.revoke_family(grant.family, now)
                audit.info("oauth grant revoked client=%s family=%s", grant.client_id, grant.family)
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
