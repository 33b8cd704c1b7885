"""Where the hub keeps what it holds as an OAuth client of its upstreams, encrypted.

Owns one SQLite table (`upstream-auth.db` beside mcp.json): per server, a Fernet-encrypted
JSON document (registration, tokens, the issuer they belong to). The key is `ONEMCP_SECRET_KEY`
when set (any string; it is hashed into a key), else `secret.key` beside mcp.json, made on first
use with mode 0600. A file that cannot be decrypted (another key) reads as empty, never as an
error: the operator authorizes again. Without a config directory everything lives in memory.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger("onemcp.upstream.oauth")
KEY_ENV = "ONEMCP_SECRET_KEY"


def _private_file(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def load_key(config_dir: Path | None) -> bytes:
    """The Fernet key: from the environment, the key file, or a new one."""
    secret = os.environ.get(KEY_ENV)
    if secret:
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    if config_dir is None:
        return Fernet.generate_key()
    path = config_dir / "secret.key"
    try:
        key = path.read_bytes().strip()
        Fernet(key)
        return key
    except FileNotFoundError:
        pass
    except ValueError:
        raise OSError(f"{path} is not a Fernet key; remove it (stored upstream tokens are then lost)") from None
    key = Fernet.generate_key()
    _private_file(path)
    path.write_bytes(key + b"\n")
    return key


class CredentialStore:
    def __init__(self, config_dir: Path | None) -> None:
        self._fernet = Fernet(load_key(config_dir))
        self._lock = threading.Lock()
        if config_dir is None:
            target = ":memory:"
        else:
            path = config_dir / "upstream-auth.db"
            _private_file(path)
            target = str(path)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("create table if not exists credentials (server text primary key, doc blob not null)")

    def load(self, server: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("select doc from credentials where server = ?", (server,)).fetchone()
        if row is None:
            return None
        try:
            doc = orjson.loads(self._fernet.decrypt(row[0]))
        except (InvalidToken, orjson.JSONDecodeError):
            log.warning("stored credentials for %s cannot be decrypted (another key?): authorize again", server)
            return None
        return doc if isinstance(doc, dict) else None

    def save(self, server: str, doc: dict[str, Any]) -> None:
        blob = self._fernet.encrypt(orjson.dumps(doc))
        with self._lock:
            self._db.execute(
                "insert into credentials (server, doc) values (?, ?)"
                " on conflict(server) do update set doc = excluded.doc",
                (server, blob),
            )

    def delete(self, server: str) -> bool:
        with self._lock:
            return self._db.execute("delete from credentials where server = ?", (server,)).rowcount > 0

    def servers(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("select server from credentials order by server")]

    def close(self) -> None:
        with self._lock:
            self._db.close()
