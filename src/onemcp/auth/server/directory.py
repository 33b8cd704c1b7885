"""Which client is asking the built-in authorization server: looked up, and authenticated.

Owns the lookup of a client_id (a client registered here, or a Client ID Metadata Document
fetched and cached for METADATA_CACHE_TTL) and client authentication at the token and
revocation endpoints (none, client_secret_post, client_secret_basic; one method per request).
Does not own the client metadata rules (`clients`), storage (`store`) or the endpoints (`app`).

Errors: `OAuthError("invalid_client", ..., 401)` for a client that cannot be authenticated.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus

from onemcp.auth.server.clients import ClientMetadataError, fetch_metadata_document, is_metadata_url
from onemcp.auth.server.grants import Clock, OAuthError
from onemcp.auth.server.store import ClientRecord, OAuthState, digest
from onemcp.protocol.errors import echo

METADATA_CACHE_TTL = 600.0  # seconds a fetched client metadata document is trusted
MAX_CLIENTS = 10_000  # registered (and, separately, cached metadata-document) clients
UNUSED_CLIENT_AGE = 600.0  # at the registration cap, a client this old that never got a code makes room

Io = Callable[..., Awaitable[Any]]  # runs a store call where the server runs them (`OAuthServer.io`)


class ClientDirectory:
    def __init__(self, store: OAuthState, io: Io, clock: Clock, *, allow_insecure_loopback_metadata: bool) -> None:
        self.store = store
        self._io = io
        self.clock = clock
        self.allow_insecure_loopback_metadata = allow_insecure_loopback_metadata

    async def room_to_register(self) -> bool:
        """Is there room for one more registered client? At the cap, the oldest one that never got a
        code (anyone may register: a flood must not close registration for good) gives way."""
        if await self._io(self.store.count_clients, "dcr") < MAX_CLIENTS:
            return True
        return bool(await self._io(self.store.evict_unused_client, self.clock() - UNUSED_CLIENT_AGE))

    async def client(self, client_id: str) -> ClientRecord | None:
        """A registered client, or a metadata-document client (fetched, or from a fresh cache)."""
        insecure = self.allow_insecure_loopback_metadata
        if not is_metadata_url(client_id, allow_insecure_loopback=insecure):
            record: ClientRecord | None = await self._io(self.store.client, client_id)
            return record if record is not None and record.source == "dcr" else None
        now = self.clock()
        cached: ClientRecord | None = await self._io(self.store.client, client_id)
        if cached is not None and cached.source == "cimd" and now - cached.fetched < METADATA_CACHE_TTL:
            return cached
        meta = await fetch_metadata_document(client_id, allow_insecure_loopback=insecure)
        record = ClientRecord(client_id, None, meta, "cimd", cached.issued if cached else now, now)
        if cached is not None or await self._io(self.store.count_clients, "cimd") < MAX_CLIENTS:
            await self._io(self.store.put_client, record)
        return record

    async def known(self, client_id: str) -> ClientRecord:
        """The client an authorization request names; ClientMetadataError when there is none (the client_id,
        the caller's text of any length, repeated cut to its start)."""
        client = await self.client(client_id)
        if client is None:
            raise ClientMetadataError("invalid_client", f"unknown client_id {echo(repr(client_id))}")
        return client

    async def authenticate(self, authorization: str, params: dict[str, str]) -> ClientRecord:
        """The client making a token or revocation request (`authorization`: its Authorization header,
        or ""), authenticated by its registered method."""
        client_id, secret = params.get("client_id"), params.get("client_secret")
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
