"""Per-user upstream credentials: each principal's own values for a server's `${user:NAME}` placeholders.

Owns the store (`user-secrets.db` beside mcp.json, each value Fernet-encrypted with the key the
upstream OAuth store uses: `ONEMCP_SECRET_KEY` or `secret.key`; made on the first `set`, never by
reading) and the rendering of a server's config for one principal: every `${user:NAME}` in `env`
and `headers` values becomes that principal's NAME, and a config the principal lacks a value for is
refused with the names missing. The shared connection (the one that lists tools for the catalog)
gets each placeholder's default (`${user:NAME:-default}`) or nothing: a header left empty is dropped.
Does not decide which connection a call uses (`hub/connections.py`): a server with placeholders
gets one connection per principal, never shared between two.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from onemcp.config import values as checks
from onemcp.config.model import ServerConfig
from onemcp.config.sqlite import open_store
from onemcp.observability.redact import REDACTOR

if TYPE_CHECKING:  # loaded with the store, on first use: a hub without user secrets never loads it
    from cryptography.fernet import Fernet

FILE = "user-secrets.db"
PLACEHOLDER = re.compile(r"\$\{user:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SCHEMA = (
    "create table if not exists secrets (principal text not null, name text not null, value blob not null,"
    " updated real not null, primary key (principal, name))"
)


class MissingSecrets(Exception):
    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class UnsendableSecrets(Exception):
    """A principal's value that the place it goes cannot carry: a header value outside printable ASCII (a
    line break would add a header of the caller's choosing), or NUL in an env value. Stored before `onemcp
    auth secret set` refused such values, or (non-ASCII) for a name it did not know went into a header.
    Names the values and where they go, never the values."""

    def __init__(self, names: list[str], where: str) -> None:
        super().__init__(f"{', '.join(names)} ({where})")
        self.names = names
        self.where = where


def per_user(config: ServerConfig) -> bool:
    """Does the server take per-user values? (A substring test: this is asked on every call.)"""
    return any("${user:" in v for v in config.env.values()) or any("${user:" in v for v in config.headers.values())


def needs(config: ServerConfig) -> list[str]:
    """The names of `${user:NAME}` placeholders in the server's env and header values."""
    found: list[str] = []
    for value in [*config.env.values(), *config.headers.values()]:
        for match in PLACEHOLDER.finditer(value):
            if match.group(1) not in found:
                found.append(match.group(1))
    return found


def taken(servers: Mapping[str, ServerConfig]) -> dict[str, list[str]]:
    """Each placeholder name these servers take, with the servers that take it (in name order)."""
    names: dict[str, list[str]] = {}
    for server, config in sorted(servers.items()):
        for name in needs(config):
            names.setdefault(name, []).append(server)
    return names


def in_headers(servers: Mapping[str, ServerConfig], name: str) -> list[str]:
    """Where NAME fills a header (`server's Header`, in name order): a value there must be ASCII."""
    return [
        f"{server}'s {header}"
        for server, config in sorted(servers.items())
        for header, value in config.headers.items()
        if any(m.group(1) == name for m in PLACEHOLDER.finditer(value))
    ]


def render(config: ServerConfig, values: dict[str, str] | None, owner: str | None = None) -> ServerConfig:
    """`config` with each placeholder replaced: by `values` (`owner`'s; missing ones raise
    MissingSecrets), or with `values` None, by its default or nothing (the shared connection)."""
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if values is None:
            return default or ""
        if name not in values:
            missing.append(name)
            return ""
        return values[name]

    env = {k: PLACEHOLDER.sub(fill, v) for k, v in config.env.items()}
    headers = {k: PLACEHOLDER.sub(fill, v) for k, v in config.headers.items()}
    if missing:
        raise MissingSecrets(sorted(set(missing)))
    for field, filled, check in (("headers", headers, checks.header_problem), ("env", env, checks.env_problem)):
        for key, value in filled.items():
            if check(key, value) is not None:  # the config's own text passed this check: a value did not
                names = [m.group(1) for m in PLACEHOLDER.finditer(getattr(config, field)[key])]
                where = f"the {key} header: printable ASCII only" if field == "headers" else f"{key}: no NUL"
                raise UnsendableSecrets(list(dict.fromkeys(names)), where)
    headers = {k: v for k, v in headers.items() if v.strip() and not v.strip().endswith(("Bearer", "Basic"))}
    if values:
        REDACTOR.add(values.values(), owner)  # a principal's values are masked wherever the server's are
    return config.model_copy(update={"env": env, "headers": headers})


class UserSecrets:
    def __init__(self, config_dir: Path | None) -> None:
        self._dir = config_dir
        self._db: sqlite3.Connection | None = None  # writes, under `_lock` (on worker threads: they may wait)
        self._reader: sqlite3.Connection | None = None  # reads, under `_read_lock` (WAL: they never wait)
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writes = 0  # this process's own changes (SQLite's data_version counts only other connections')

    def _open(self, create: bool) -> sqlite3.Connection | None:
        if self._db is None:
            with self._lock:  # two first uses at once (the endpoint's threads): one opens, one key is made
                return self._open_locked(create)
        return self._db

    def _open_locked(self, create: bool) -> sqlite3.Connection | None:
        if self._db is None:
            path = self._dir / FILE if self._dir is not None else None
            if path is not None and not create and not path.exists():
                return None
            from cryptography.fernet import Fernet

            from onemcp.upstream.oauth.store import load_key

            self._fernet = Fernet(load_key(self._dir))
            db = open_store(path if path is not None else ":memory:", SCHEMA)
            self._reader = db if path is None else open_store(path, SCHEMA)  # (":memory:" is one connection's)
            self._db = db
        return self._db

    def set(self, principal: str, name: str, value: str) -> None:
        db = self._open(create=True)
        assert db is not None and self._fernet is not None
        blob = self._fernet.encrypt(value.encode())
        with self._lock:
            db.execute("insert or replace into secrets values (?, ?, ?, ?)", (principal, name, blob, time.time()))
            self._writes += 1

    def delete(self, principal: str, name: str) -> bool:
        db = self._open(create=False)
        if db is None:
            return False
        with self._lock:
            self._writes += 1
            return db.execute("delete from secrets where principal = ? and name = ?", (principal, name)).rowcount > 0

    def version(self) -> tuple[int, int]:
        """Changes when any value changes, here or in another process (`onemcp auth secret set`): a few
        microseconds, so a principal's running connection can be checked against it on every call."""
        db = self._open(create=False)
        if db is None:
            return (0, self._writes)
        with self._read_lock:
            (changes,) = self._reader_of(db).execute("pragma data_version").fetchone()
        return (int(changes), self._writes)

    def values(self, principal: str) -> dict[str, str]:
        """The principal's values (those that decrypt: another key reads as unset)."""
        db = self._open(create=False)
        if db is None:
            return {}
        assert self._fernet is not None
        from cryptography.fernet import InvalidToken

        with self._read_lock:
            query = "select name, value from secrets where principal = ?"
            rows = self._reader_of(db).execute(query, (principal,)).fetchall()
        out: dict[str, str] = {}
        for name, blob in rows:
            try:
                out[name] = self._fernet.decrypt(blob).decode()
            except InvalidToken:
                continue
        return out

    def listing(self, principal: str | None = None) -> list[tuple[str, str, float]]:
        """(principal, name, updated) of every value (or `principal`'s); never the values."""
        db = self._open(create=False)
        if db is None:
            return []
        where, args = ("where principal = ?", (principal,)) if principal is not None else ("", ())
        with self._read_lock:
            rows = self._reader_of(db).execute(
                f"select principal, name, updated from secrets {where} order by 1, 2", args
            )
            return [(p, n, u) for p, n, u in rows]

    def _reader_of(self, db: sqlite3.Connection) -> sqlite3.Connection:
        return self._reader if self._reader is not None else db

    def close(self) -> None:
        if self._db is not None:
            with self._lock, self._read_lock:
                self._db.close()
                if self._reader is not None:
                    self._reader.close()
            self._db = self._reader = None
