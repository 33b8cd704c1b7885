"""Static API keys: made by `onemcp auth key create`, stored hashed, each with scopes and an expiry.

A key reads `omk_<id>_<secret>`; the store keeps the id, a SHA-256 of the secret (keys are
random and long, so a slow hash adds nothing), the scopes, the expiry and revocation.
The plain key is shown once, when it is made. SQLite, one small file beside mcp.json; or, for hub
replicas that share a Redis (`onemcp.sessionStore: "redis://..."`), Redis (`RedisKeyStore`), so a key
made or revoked through any replica's config holds on all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from onemcp.auth.principal import BASE, InvalidToken, Principal, Unconfirmed
from onemcp.config import redis_link
from onemcp.config.sqlite import open_store
from onemcp.observability.limits import hit

log = logging.getLogger("onemcp.auth")
PREFIX = "omk_"
REDIS_PREFIX = "onemcp:apikey:"
CACHE_SECONDS = 5.0  # a replica checks a key in Redis again after this long: the most a revocation waits
OUTAGE_GRACE = 60.0  # while Redis cannot be reached, a key read this long ago still counts (auth.redisOutageGrace)
SCHEMA = """
create table if not exists api_keys (
    id text primary key,
    name text not null,
    secret_hash text not null,
    scopes text not null,
    created real not null,
    expires real,
    revoked real
)
"""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scopes: list[str]
    created: float
    expires: float | None
    revoked: float | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys(Protocol):
    """What the gate, the OAuth server's operator check and the CLI need of a key store."""

    def create(self, name: str, scopes: list[str], expires: float | None = None) -> str: ...
    def list(self) -> list[KeyInfo]: ...
    def revoke(self, key_id: str) -> bool: ...
    async def verify(self, token: str) -> Principal | None: ...


def _split(token: str) -> tuple[str, str] | None:
    if not token.startswith(PREFIX):
        return None
    key_id, _, secret = token[len(PREFIX) :].partition("_")
    return key_id, secret


def _principal(key_id: str, secret: str, row: tuple[Any, ...]) -> Principal:
    """The key's principal, if `row` (secret_hash, scopes, expires, revoked, name) admits `secret`."""
    if not hmac.compare_digest(row[0], _hash(secret)):
        raise InvalidToken("unknown API key")
    if row[3] is not None:
        raise InvalidToken("the API key was revoked")
    if row[2] is not None and row[2] < time.time():
        raise InvalidToken("the API key has expired")
    return Principal(f"key:{key_id}", frozenset(row[1].split()), kind="key", expires=row[2], labels={"name": row[4]})


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_store(self.path, SCHEMA)  # concurrent CLI and hub writers wait, never fail
            self.path.chmod(0o600)  # a file an older release made
        return self._db

    def create(self, name: str, scopes: list[str], expires: float | None = None) -> str:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self._conn().execute(
            "insert into api_keys values (?, ?, ?, ?, ?, ?, null)",
            (key_id, name, _hash(secret), " ".join(scopes or [BASE]), time.time(), expires),
        )
        return f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        rows = (
            self._conn()
            .execute("select id, name, scopes, created, expires, revoked from api_keys order by created")
            .fetchall()
        )
        return [KeyInfo(r[0], r[1], r[2].split(), r[3], r[4], r[5]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        cur = self._conn().execute(
            "update api_keys set revoked = ? where id = ? and revoked is null", (time.time(), key_id)
        )
        return cur.rowcount > 0

    def row(self, key_id: str) -> tuple[Any, ...] | None:
        """(secret_hash, scopes, expires, revoked, name) of a key, or None."""
        query = "select secret_hash, scopes, expires, revoked, name from api_keys where id = ?"
        rows = self._conn().execute(query, (key_id,)).fetchall()  # (fetchone would pin an old WAL snapshot)
        return tuple(rows[0]) if rows else None

    async def verify(self, token: str) -> Principal | None:
        parts = _split(token)
        if parts is None:
            return None
        row = self.row(parts[0])
        if row is None:
            raise InvalidToken("unknown API key")
        return _principal(*parts, row)


class RedisKeyStore:
    """API keys in the Redis replicas share, one hash per key; keys of the local `keys.db` still count.

    A key is made and revoked in Redis; a replica checks a key there at most every `CACHE_SECONDS`
    (a revocation reaches every replica within that), so the call path rarely waits on Redis. While
    Redis cannot be reached, a key read there within `grace` seconds is still judged by what was
    read; any other is refused (`Unconfirmed`: the gate answers 503, try again), so a key revoked
    just before an outage opens no replica for longer than that.
    """

    def __init__(self, url: str, local: KeyStore | None, grace: float = OUTAGE_GRACE) -> None:
        self.local = local
        self.grace = grace
        self._errors = redis_link.errors()
        self._sync: Any = redis_link.client(url)
        self._breaker = redis_link.breaker(url)
        self._cache: dict[str, tuple[float, tuple[Any, ...] | None]] = {}

    def create(self, name: str, scopes: list[str], expires: float | None = None) -> str:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        fields = {"name": name, "hash": _hash(secret), "scopes": " ".join(scopes or [BASE]), "created": time.time()}
        if expires is not None:
            fields["expires"] = expires
        try:
            self._sync.hset(REDIS_PREFIX + key_id, mapping=fields)
        except self._errors as exc:
            raise OSError(f"the API key store (Redis): {exc}") from None  # the CLI: "cannot use ..."
        return f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        infos = self.local.list() if self.local is not None else []
        try:
            for name in self._sync.scan_iter(match=REDIS_PREFIX + "*", count=500):
                key_id = name.decode().removeprefix(REDIS_PREFIX)
                row = self._row(self._sync.hgetall(name))
                if row is not None:
                    infos.append(KeyInfo(key_id, row[4], row[1].split(), row[5] or 0.0, row[2], row[3]))
        except self._errors as exc:
            raise OSError(f"the API key store (Redis): {exc}") from None  # the CLI: "cannot use ..."
        return sorted(infos, key=lambda info: info.created)

    def revoke(self, key_id: str) -> bool:
        name = REDIS_PREFIX + key_id
        self._cache.pop(key_id, None)
        try:
            if self._sync.hexists(name, "hash"):
                return bool(self._sync.hsetnx(name, "revoked", time.time()))
        except self._errors as exc:
            raise OSError(f"the API key store (Redis): {exc}") from None  # the CLI: "cannot use ..."
        return self.local.revoke(key_id) if self.local is not None else False

    @staticmethod
    def _row(doc: dict[bytes, bytes]) -> tuple[Any, ...] | None:
        if b"hash" not in doc:
            return None

        def number(field: bytes) -> float | None:
            return float(doc[field]) if field in doc else None

        text = {k.decode(): v.decode() for k, v in doc.items()}
        return (text["hash"], text["scopes"], number(b"expires"), number(b"revoked"), text["name"], number(b"created"))

    async def verify(self, token: str) -> Principal | None:
        parts = _split(token)
        if parts is None:
            return None
        key_id = parts[0]
        now = time.monotonic()
        cached = self._cache.get(key_id)
        row = cached[1] if cached is not None else None
        if cached is None or now - cached[0] > CACHE_SECONDS:
            try:
                # on a thread (whatever loop runs this), only every CACHE_SECONDS per key, and not for a few
                # seconds after Redis failed (the Redis link's breaker)
                row = self._row(await self._breaker.call(self._sync.hgetall, REDIS_PREFIX + key_id))
            except self._errors as exc:
                if cached is None or now - cached[0] > self.grace:
                    if not isinstance(exc, redis_link.RedisSkipped):
                        log.warning("API key %s not checked: Redis cannot be reached (%s)", key_id, exc)
                    read = "never" if cached is None else f"{now - cached[0]:.0f} s ago"
                    why = "API key %s refused (503): Redis unreachable; read there %s (auth.redisOutageGrace)"
                    hit("unconfirmed_credentials", why, key_id, read)
                    raise Unconfirmed("the API key store (Redis) cannot be reached") from None
            else:
                if row is not None:
                    if len(self._cache) >= 10_000:
                        self._cache.clear()
                    self._cache[key_id] = (now, row)
        if row is None and self.local is not None:
            row = self.local.row(key_id)
        if row is None:
            raise InvalidToken("unknown API key")
        return _principal(*parts, row[:5])


def open_keys(directory: Path, shared: str | None = None, grace: float = OUTAGE_GRACE) -> Keys:
    """The key store beside the config; with `shared` (the Redis URL replicas share), the replicas' one
    (`grace`: how long a key read there still counts while it cannot be reached)."""
    local = KeyStore(directory / "keys.db")
    if shared is not None:
        return RedisKeyStore(shared, local if local.path.exists() else None, grace)
    return local
