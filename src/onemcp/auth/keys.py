"""Static API keys: made by `onemcp auth key create`, stored hashed, each with scopes and an expiry.

A key reads `omk_<id>_<secret>`; the store keeps the id, a SHA-256 of the secret (keys are
random and long, so a slow hash adds nothing), the scopes, the expiry and revocation.
The plain key is shown once, when it is made. SQLite, one small file beside mcp.json.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from onemcp.auth.principal import BASE, InvalidToken, Principal
from onemcp.config.sqlite import open_store

PREFIX = "omk_"
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

    async def verify(self, token: str) -> Principal | None:
        if not token.startswith(PREFIX):
            return None
        key_id, _, secret = token[len(PREFIX) :].partition("_")
        query = "select secret_hash, scopes, expires, revoked, name from api_keys where id = ?"
        rows = self._conn().execute(query, (key_id,)).fetchall()  # (fetchone would pin an old WAL snapshot)
        row = rows[0] if rows else None
        if row is None or not hmac.compare_digest(row[0], _hash(secret)):
            raise InvalidToken("unknown API key")
        if row[3] is not None:
            raise InvalidToken("the API key was revoked")
        if row[2] is not None and row[2] < time.time():
            raise InvalidToken("the API key has expired")
        return Principal(
            f"key:{key_id}", frozenset(row[1].split()), kind="key", expires=row[2], labels={"name": row[4]}
        )
