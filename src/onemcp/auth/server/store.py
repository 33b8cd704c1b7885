"""What the built-in authorization server remembers: clients, codes, tokens and revocations, in SQLite.

Owns the schema and every read and write; owns no policy (what is valid, what expires when:
`oauth_server` decides and passes times in). Secrets never reach the file: codes and tokens
are stored as SHA-256 hex digests of the random strings handed out, client secrets likewise.

A *family* is one authorization (a redeemed code) and everything issued from it: the first
access and refresh tokens and every rotation after. Revoking a family (RFC 7009 on a refresh
token, reuse of a rotated refresh token, reuse of a code) kills all of its tokens at once. A family
keeps only its newest tokens (`KEEP_ACCESS`, `KEEP_REFRESH`): a client refreshing in a loop must not
add rows without end until they expire (an access token a day, a spent refresh token 31 days).

Two connections in autocommit mode, WAL, each under a lock of its own: the writes' (and the reads that
go with a write, `redeem_code`), on worker threads (`OAuthServer.io`: the caller needs the answer, a
client may use a token or a code the moment it has it), where a write waits for another process's
write lock (the CLI, a second hub) up to the busy timeout without stalling the event loop; and the
reads', which in WAL never wait for a writer, so a token check may run inline on the loop (`verify`)
while a write waits for the file. `purge`, which nobody waits for, goes to the file's `Writer` thread.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from onemcp.config.sqlite import Writer, open_store

log = logging.getLogger("onemcp.auth")
SCHEMA_VERSION = 1
SCHEMA = """
create table if not exists clients (
    client_id text primary key,
    secret_hash text,
    metadata text not null,
    source text not null,
    issued real not null,
    fetched real not null
);
create table if not exists codes (
    code_hash text primary key,
    client_id text not null,
    redirect_uri text not null,
    redirect_explicit integer not null,
    challenge text not null,
    scopes text not null,
    resource text not null,
    expires real not null,
    used integer not null default 0,
    family text
);
create table if not exists families (
    family text primary key,
    client_id text not null,
    created real not null,
    revoked real
);
create table if not exists access_tokens (
    token_hash text primary key,
    family text not null,
    client_id text not null,
    scopes text not null,
    resource text not null,
    expires real not null,
    revoked real
);
create index if not exists access_by_family on access_tokens(family);
create table if not exists refresh_tokens (
    token_hash text primary key,
    family text not null,
    client_id text not null,
    scopes text not null,
    resource text not null,
    expires real not null,
    rotated real
);
create index if not exists refresh_by_family on refresh_tokens(family);
"""


# Tokens of one family kept, newest first; older ones are forgotten when a newer one is issued (and are
# then unknown, as if purged). Access: the new one and the one before it, for requests still carrying it
# (a client refreshes once its token is near expiry, so the older ones have all but expired). Refresh:
# the live one and the newest spent ones, whose reuse is recognised and revokes the family.
KEEP_ACCESS = 2
KEEP_REFRESH = 8


def digest(secret: str) -> str:
    """The stored form of a code, token or client secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    secret_hash: str | None  # None: a public client (token_endpoint_auth_method "none")
    metadata: dict[str, Any]  # the validated RFC 7591 / metadata-document fields
    source: Literal["dcr", "cimd"]
    issued: float
    fetched: float  # when a metadata document was last fetched (cimd); = issued for dcr

    @property
    def redirect_uris(self) -> list[str]:
        uris: list[str] = self.metadata.get("redirect_uris", [])
        return uris

    @property
    def name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)

    @property
    def grant_types(self) -> list[str]:
        grants: list[str] = self.metadata.get("grant_types", ["authorization_code", "refresh_token"])
        return grants


@dataclass(frozen=True)
class CodeGrant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    redirect_explicit: bool  # the authorization request named it (so the token request must too)
    challenge: str  # PKCE S256 code_challenge
    scopes: tuple[str, ...]
    resource: str
    expires: float
    used: bool = False
    family: str | None = None  # set once the code was exchanged


@dataclass(frozen=True)
class Token:
    """A token about to be stored: its digest, expiry and scopes."""

    hash: str
    expires: float
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What an access or refresh token stands for."""

    family: str
    client_id: str
    scopes: tuple[str, ...]
    resource: str
    expires: float
    revoked: bool  # this token, or its whole family
    rotated: bool = False  # refresh tokens: already exchanged for a newer one


class OAuthState(Protocol):
    """What the grants and the server need of their state: `OAuthStore` (SQLite, one hub) or, for hub
    replicas, `shared.RedisOAuthStore`."""

    def close(self) -> None: ...
    def put_client(self, client: ClientRecord) -> None: ...
    def client(self, client_id: str) -> ClientRecord | None: ...
    def count_clients(self, source: Literal["dcr", "cimd"]) -> int: ...
    def add_code(self, code_hash: str, grant: CodeGrant) -> None: ...
    def redeem_code(self, code_hash: str) -> CodeGrant | None: ...
    def bind_code(self, code_hash: str, family: str) -> None: ...
    def issue(
        self, family: str, client_id: str, resource: str, now: float, access: Token, refresh: Token | None
    ) -> None: ...
    def access_token(self, token_hash: str) -> Grant | None: ...
    def refresh_token(self, token_hash: str) -> Grant | None: ...
    def rotate(self, token_hash: str, now: float) -> bool: ...
    def revoke_family(self, family: str, now: float) -> None: ...
    def live_grant(self, family: str, now: float) -> Grant | None: ...
    def revoke_access(self, token_hash: str, now: float) -> None: ...
    def purge(self, now: float, grace: float = 86400.0) -> None: ...
    def evict_unused_client(self, issued_before: float) -> bool: ...


# dynamically registered clients issued before ? that never got a code (or a code that was purged,
# with no token family left): anyone may register, so a flood of registrations must not fill the table
_UNUSED = (
    "select client_id from clients c where source = 'dcr' and issued < ?"
    " and not exists (select 1 from codes where client_id = c.client_id)"
    " and not exists (select 1 from families where client_id = c.client_id) order by issued"
)


class OAuthStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the writes' connection (`_db`)
        self._db = open_store(path, f"{SCHEMA};\npragma user_version={SCHEMA_VERSION};")
        self._read_lock = threading.Lock()  # the reads' (`_reader`)
        self._reader = open_store(path, wal=False)  # (the file is WAL already: no write lock asked to open it)
        self.writes = Writer(path, "", "oauth.db purge", log)  # what nobody waits for

    def close(self) -> None:
        self.writes.close()
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reader.close()

    # ------------------------------------------------------------------ clients
    def put_client(self, client: ClientRecord) -> None:
        with self._lock:
            self._db.execute(
                "insert or replace into clients values (?, ?, ?, ?, ?, ?)",
                (
                    client.client_id,
                    client.secret_hash,
                    orjson.dumps(client.metadata).decode(),
                    client.source,
                    client.issued,
                    client.fetched,
                ),
            )

    def client(self, client_id: str) -> ClientRecord | None:
        with self._read_lock:
            row = self._reader.execute(
                "select client_id, secret_hash, metadata, source, issued, fetched from clients where client_id = ?",
                (client_id,),
            ).fetchone()
        if row is None:
            return None
        return ClientRecord(row[0], row[1], orjson.loads(row[2]), row[3], row[4], row[5])

    def count_clients(self, source: Literal["dcr", "cimd"]) -> int:
        with self._read_lock:
            (count,) = self._reader.execute("select count(*) from clients where source = ?", (source,)).fetchone()
        return int(count)

    def evict_unused_client(self, issued_before: float) -> bool:
        """Forget the oldest registered client issued before then that never got a code (room for a new one)."""
        with self._lock:
            gone = self._db.execute(f"delete from clients where client_id = ({_UNUSED} limit 1)", (issued_before,))
        return gone.rowcount > 0

    # -------------------------------------------------------------------- codes
    def add_code(self, code_hash: str, grant: CodeGrant) -> None:
        with self._lock:
            self._db.execute(
                "insert into codes (code_hash, client_id, redirect_uri, redirect_explicit, challenge, scopes,"
                " resource, expires) values (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code_hash,
                    grant.client_id,
                    grant.redirect_uri,
                    int(grant.redirect_explicit),
                    grant.challenge,
                    " ".join(grant.scopes),
                    grant.resource,
                    grant.expires,
                ),
            )

    def redeem_code(self, code_hash: str) -> CodeGrant | None:
        """The code's grant, marking it used; `used` on the answer says it had been used before."""
        with self._lock:
            row = self._db.execute(
                "select client_id, redirect_uri, redirect_explicit, challenge, scopes, resource, expires, used,"
                " family from codes where code_hash = ?",
                (code_hash,),
            ).fetchone()
            if row is None:
                return None
            if not row[7]:
                self._db.execute("update codes set used = 1 where code_hash = ?", (code_hash,))
        return CodeGrant(
            row[0], row[1], bool(row[2]), row[3], tuple(row[4].split()), row[5], row[6], bool(row[7]), row[8]
        )

    def bind_code(self, code_hash: str, family: str) -> None:
        """Record which family a redeemed code started, so a replay can revoke it."""
        with self._lock:
            self._db.execute("update codes set family = ? where code_hash = ?", (family, code_hash))

    # ------------------------------------------------------------------- tokens
    def issue(
        self, family: str, client_id: str, resource: str, now: float, access: Token, refresh: Token | None
    ) -> None:
        """Store an access token and optionally a refresh token in `family` (made if new)."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                self._db.execute(
                    "insert or ignore into families (family, client_id, created) values (?, ?, ?)",
                    (family, client_id, now),
                )
                for table, token in (("access_tokens", access), ("refresh_tokens", refresh)):
                    if token is None:
                        continue
                    self._db.execute(
                        f"insert into {table} (token_hash, family, client_id, scopes, resource, expires)"
                        " values (?, ?, ?, ?, ?, ?)",
                        (token.hash, family, client_id, " ".join(token.scopes), resource, token.expires),
                    )
                for table, keep in (("access_tokens", KEEP_ACCESS), ("refresh_tokens", KEEP_REFRESH)):
                    self._db.execute(
                        f"delete from {table} where family = ? and rowid not in"
                        f" (select rowid from {table} where family = ? order by rowid desc limit ?)",
                        (family, family, keep),
                    )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def access_token(self, token_hash: str) -> Grant | None:
        with self._read_lock:
            row = self._reader.execute(
                "select a.family, a.client_id, a.scopes, a.resource, a.expires,"
                " a.revoked is not null or f.revoked is not null"
                " from access_tokens a join families f on f.family = a.family where a.token_hash = ?",
                (token_hash,),
            ).fetchone()
        return None if row is None else Grant(row[0], row[1], tuple(row[2].split()), row[3], row[4], bool(row[5]))

    def refresh_token(self, token_hash: str) -> Grant | None:
        with self._read_lock:
            row = self._reader.execute(
                "select r.family, r.client_id, r.scopes, r.resource, r.expires, f.revoked is not null,"
                " r.rotated is not null"
                " from refresh_tokens r join families f on f.family = r.family where r.token_hash = ?",
                (token_hash,),
            ).fetchone()
        if row is None:
            return None
        return Grant(row[0], row[1], tuple(row[2].split()), row[3], row[4], bool(row[5]), bool(row[6]))

    def rotate(self, token_hash: str, now: float) -> bool:
        """Mark a refresh token exchanged; False when it already was (a replay, or a lost race)."""
        with self._lock:
            cur = self._db.execute(
                "update refresh_tokens set rotated = ? where token_hash = ? and rotated is null", (now, token_hash)
            )
        return cur.rowcount == 1

    def live_grant(self, family: str, now: float) -> Grant | None:
        """The family's newest refresh token while the family is not revoked and that token not expired
        (a refresh is still possible, so the grant lives); None otherwise."""
        with self._read_lock:
            row = self._reader.execute(
                "select r.family, r.client_id, r.scopes, r.resource, r.expires, r.rotated is not null"
                " from refresh_tokens r join families f on f.family = r.family"
                " where r.family = ? and f.revoked is null order by r.rowid desc limit 1",
                (family,),
            ).fetchone()
        if row is None or row[4] <= now:
            return None
        return Grant(row[0], row[1], tuple(row[2].split()), row[3], row[4], False, bool(row[5]))

    # -------------------------------------------------------------- revocation
    def revoke_family(self, family: str, now: float) -> None:
        with self._lock:
            self._db.execute("update families set revoked = ? where family = ? and revoked is null", (now, family))

    def revoke_access(self, token_hash: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "update access_tokens set revoked = ? where token_hash = ? and revoked is null", (now, token_hash)
            )

    def purge(self, now: float, grace: float = 86400.0) -> None:
        """Forget what expired more than `grace` seconds ago (kept that long to recognise replays): on the
        file's writer thread, after the writes put before it (`writes.flush` waits for it)."""
        self.writes.put(lambda db: _purge(db, now - grace))


def _purge(db: sqlite3.Connection, cutoff: float) -> None:
    db.execute("delete from codes where expires < ?", (cutoff,))
    db.execute("delete from access_tokens where expires < ?", (cutoff,))
    db.execute("delete from refresh_tokens where expires < ?", (cutoff,))
    db.execute(f"delete from clients where client_id in ({_UNUSED})", (cutoff,))
    db.execute(
        "delete from families where created < ? and family not in (select family from access_tokens)"
        " and family not in (select family from refresh_tokens)",
        (cutoff,),
    )
