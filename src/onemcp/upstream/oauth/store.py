"""Where the hub keeps what it holds as an OAuth client of its upstreams, encrypted.

Owns one SQLite table (`upstream-auth.db` beside mcp.json): per server, a Fernet-encrypted
JSON document (registration, tokens, the issuer they belong to). The key is `ONEMCP_SECRET_KEY`
when set (a Fernet key, or any passphrase: stretched with scrypt), else `secret.key` beside
mcp.json, made on first use with mode 0600. A file that cannot be decrypted (another key) reads
as empty, never as an error: the operator authorizes again. Without a config directory
everything lives in memory.

Several hubs may share one config directory (an HTTP hub and the stdio hubs editors start), and
a refresh token is single-use: `exclusive` is a lock across processes (a lock file) under which
a credential is re-read, refreshed and written back, so two hubs never spend the same token.

Hub replicas on several machines share a Redis instead (`RedisCredentialStore`): the same
encrypted documents in one hash, `exclusive` as a Redis lock with an expiry, and the pending
authorization links, so that the callback may reach any replica. The documents are encrypted with
the same key as above: replicas must share `ONEMCP_SECRET_KEY` (or one `secret.key`), or each
reads the others' documents as empty and asks for authorization again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from cryptography.fernet import Fernet, InvalidToken

from onemcp.config import redis_link
from onemcp.config.files import try_lock
from onemcp.config.sqlite import open_store

log = logging.getLogger("onemcp.upstream.oauth")
KEY_ENV = "ONEMCP_SECRET_KEY"
KDF_SALT = b"onemcp upstream credentials v1"
LOCK_WAIT = 30.0
SCHEMA = "create table if not exists credentials (server text primary key, doc blob not null)"
T = TypeVar("T")


def _private_file(path: Path) -> None:
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def load_key(config_dir: Path | None) -> bytes:
    """The Fernet key: from the environment, the key file, or a new one."""
    secret = os.environ.get(KEY_ENV)
    if secret:
        with contextlib.suppress(ValueError):
            Fernet(secret.encode())
            return secret.encode()  # a key already
        stretched = hashlib.scrypt(secret.encode(), salt=KDF_SALT, n=2**14, r=8, p=1, dklen=32)
        return base64.urlsafe_b64encode(stretched)
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


class CredentialsUnavailable(ConnectionError):
    """The store cannot say now (the replicas' Redis cannot be reached): what is held in memory stays."""


class CredentialStore:
    """Credentials in a local file. Reads are short (WAL: they never wait for a writer), so asked inline
    (`local`), also from the event loop, on a connection of their own; a write may wait for another
    process's lock (a stdio hub, `onemcp auth upstream login`) up to the busy timeout, so the async
    `write` and `remove` run off the loop, one at a time (`_lock`).

    Once the hub stops (`stop`) it waits on no other process: a wait for a credential's lock ends
    (`exclusive`), and so does the wait for a write, which goes on, on its own thread (not a daemon: the
    process ends once it is done), holding that credential's lock until then (a renewed refresh token
    reaches the file before another hub may read the spent one and use it)."""

    local = True

    def __init__(self, config_dir: Path | None) -> None:
        self._fernet = Fernet(load_key(config_dir))
        self._lock = threading.Lock()  # the writing connection
        self._read_lock = threading.Lock()  # the reading one
        self._locks = config_dir / "upstream-auth.locks" if config_dir is not None else None
        if config_dir is None:
            target = ":memory:"
        else:
            path = config_dir / "upstream-auth.db"
            _private_file(path)
            target = str(path)
        self._db = open_store(target, SCHEMA)
        self._reader = self._db if config_dir is None else open_store(target, SCHEMA)  # (":memory:": one db)
        self._stopping = False  # the hub is stopping (`stop`)
        self._waits: set[anyio.CancelScope] = set()  # writes waited for (`write`): ended by `stop`
        self._guard = threading.Lock()  # the three below, and closing
        self._writing: dict[str, int] = {}  # server -> its writes under way
        self._held: dict[str, list[int]] = {}  # server -> its lock files, closed once its writes are done
        self._closed = False  # (`close`: with writes under way, the last one closes the connections)

    @contextlib.asynccontextmanager
    async def exclusive(self, server: str) -> AsyncIterator[None]:
        """`server`'s credential, held by one process at a time (a POSIX lock file per server, so one
        slow authorization server holds up no other); waits up to LOCK_WAIT, then goes on unlocked."""
        if self._locks is None or sys.platform == "win32":  # not POSIX: one hub per config directory
            yield
            return
        self._locks.mkdir(mode=0o700, exist_ok=True)
        path = self._locks / hashlib.sha256(server.encode()).hexdigest()[:24]
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while not try_lock(fd):
                if time.monotonic() > deadline:
                    log.warning("%s is held by another hub for over %gs; going on", path, LOCK_WAIT)
                    break
                if self._stopping:
                    log.info("%s is held by another hub; the hub is stopping: going on", path)
                    break
                await anyio.sleep(0.05)
            yield
        finally:
            with self._guard:
                if self._writing.get(server):  # a write the hub stopped waiting for: the lock goes with it
                    self._held.setdefault(server, []).append(fd)
                    fd = -1
            if fd != -1:
                os.close(fd)  # releases the lock

    def load(self, server: str) -> dict[str, Any] | None:
        try:
            with self._read_lock:
                rows = self._reader.execute("select doc from credentials where server = ?", (server,)).fetchall()
        except sqlite3.Error as exc:
            log.error("cannot read stored credentials for %s: %s", server, exc)
            return None
        if not rows:
            return None
        try:
            doc = orjson.loads(self._fernet.decrypt(rows[0][0]))
        except (InvalidToken, orjson.JSONDecodeError):
            log.warning("stored credentials for %s cannot be decrypted (another key?): authorize again", server)
            return None
        return doc if isinstance(doc, dict) else None

    def save(self, server: str, doc: dict[str, Any]) -> None:
        blob = self._fernet.encrypt(orjson.dumps(doc))
        try:
            with self._lock:
                self._db.execute(
                    "insert into credentials (server, doc) values (?, ?)"
                    " on conflict(server) do update set doc = excluded.doc",
                    (server, blob),
                )
        except sqlite3.Error as exc:  # the credential still works in memory
            log.error("cannot store credentials for %s: %s", server, exc)

    def delete(self, server: str) -> bool:
        try:
            with self._lock:
                return self._db.execute("delete from credentials where server = ?", (server,)).rowcount > 0
        except sqlite3.Error as exc:
            log.error("cannot delete stored credentials for %s: %s", server, exc)
            return False

    def servers(self) -> list[str]:
        with self._read_lock:
            return [r[0] for r in self._reader.execute("select server from credentials order by server")]

    async def read(self, server: str) -> dict[str, Any] | None:
        return self.load(server)

    async def write(self, server: str, doc: dict[str, Any]) -> None:
        """Begun, it is done (a rotated refresh token): on a thread of its own, waited for until it is, or
        until the hub stops (`stop`)."""
        with self._guard:
            self._writing[server] = self._writing.get(server, 0) + 1
        done = threading.Event()
        threading.Thread(target=self._write, args=(server, doc, done), name="onemcp-upstream-auth-write").start()
        waited = anyio.CancelScope(shield=True)
        if self._stopping:
            waited.cancel()
        self._waits.add(waited)
        try:
            with waited:
                await anyio.to_thread.run_sync(done.wait, abandon_on_cancel=True)
        finally:
            self._waits.discard(waited)
        if not done.is_set():
            log.warning("the hub is stopping: storing the credentials of %s goes on (the process waits for it)", server)

    def _write(self, server: str, doc: dict[str, Any], done: threading.Event) -> None:
        try:
            self.save(server, doc)
        finally:
            with self._guard:
                self._writing[server] -= 1
                held = [] if self._writing[server] else self._held.pop(server, [])
                if not self._writing[server]:
                    del self._writing[server]
                last = self._closed and not self._writing
            for fd in held:
                os.close(fd)  # the credential's lock, which a stopping hub let go of before this was written
            if last:
                self._close()
            done.set()

    def stop(self) -> None:
        """The hub is stopping: it waits for no other process's lock any more (`exclusive`, `write`)."""
        self._stopping = True
        for waited in list(self._waits):
            waited.cancel()

    async def remove(self, server: str) -> bool:
        with anyio.CancelScope(shield=True):
            gone = await anyio.to_thread.run_sync(self.delete, server)
        return gone

    async def names(self) -> list[str]:
        return self.servers()

    def close(self) -> None:
        """Close the file now, or, while writes are under way (waiting for another process's lock), once
        the last one is done."""
        with self._guard:
            self._closed = True
            if self._writing:
                return
        self._close()

    def _close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()


CREDENTIALS_KEY = "onemcp:upstream-auth"
LOCK_PREFIX = "onemcp:upstream-auth:lock:"
LINK_PREFIX = "onemcp:upstream-auth:link:"
LOCK_TTL = 60.0  # a replica that dies holding the lock holds it no longer than this
LINK_WAIT = 5.0  # a link is handed out once the other replicas can read it, or after this long
UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisCredentialStore:
    """`CredentialStore` on the Redis hub replicas share. Never on the event loop: each read, write and
    lock is asked on a worker thread (a link handed out is written by a thread of its own), through the
    Redis link's breaker: a Redis that does not answer costs one request its 1 s deadline, then is
    skipped for a few seconds (`CredentialsUnavailable`, a credential kept as it is in memory)."""

    local = False

    def __init__(self, url: str, config_dir: Path | None) -> None:
        self._fernet = Fernet(load_key(config_dir))
        if not os.environ.get(KEY_ENV):
            log.warning(
                "upstream credentials in the replicas' Redis are encrypted with this replica's secret.key:"
                " set %s (the same on every replica) for the others to read them",
                KEY_ENV,
            )
        self._errors = redis_link.errors()
        self._redis: Any = redis_link.client(url)
        self._unlock = self._redis.register_script(UNLOCK)
        self._breaker = redis_link.breaker(url)
        self._links = redis_link.Writer(self._breaker, "an authorization link for the other replicas")
        self._stopping = False  # the hub is stopping (`stop`): the replicas' lock is waited for no more

    def stop(self) -> None:
        self._stopping = True

    async def _ask(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a worker thread through the breaker; `CredentialsUnavailable` when Redis cannot say."""
        try:
            return await self._breaker.call(fn, *args)
        except self._errors as exc:
            if not isinstance(exc, redis_link.RedisSkipped):
                log.error("cannot %s in Redis: %s", what, exc)
            raise CredentialsUnavailable(f"the replicas' credential store (Redis) cannot be reached: {exc}") from None

    @contextlib.asynccontextmanager
    async def exclusive(self, server: str) -> AsyncIterator[None]:
        """`server`'s credential, held by one replica at a time; waits up to LOCK_WAIT, then goes on unlocked."""
        name, token = LOCK_PREFIX + server, os.urandom(12).hex()
        held = False
        deadline = time.monotonic() + LOCK_WAIT
        while not held:
            try:
                held = await self._ask(f"take the lock of {server}", self._take_lock, name, token)
            except CredentialsUnavailable:
                log.warning("the replicas' lock for %s cannot be taken; going on", server)
                break
            if not held:
                if time.monotonic() > deadline:
                    log.warning("%s is held by another replica for over %gs; going on", name, LOCK_WAIT)
                    break
                if self._stopping:
                    log.info("%s is held by another replica; the hub is stopping: going on", name)
                    break
                await anyio.sleep(0.05)
        try:
            yield
        finally:
            if held:  # (if Redis cannot be asked, the lock expires after LOCK_TTL)
                with anyio.CancelScope(shield=True), contextlib.suppress(CredentialsUnavailable):
                    await self._ask(f"release the lock of {server}", lambda: self._unlock(keys=[name], args=[token]))

    def _take_lock(self, name: str, token: str) -> bool:
        return bool(self._redis.set(name, token, nx=True, px=int(LOCK_TTL * 1000)))

    def _decrypt(self, what: str, blob: bytes) -> dict[str, Any] | None:
        try:
            doc = orjson.loads(self._fernet.decrypt(blob))
        except (InvalidToken, orjson.JSONDecodeError):
            log.warning("stored %s cannot be decrypted (another ONEMCP_SECRET_KEY?): authorize again", what)
            return None
        return doc if isinstance(doc, dict) else None

    async def read(self, server: str) -> dict[str, Any] | None:
        blob = await self._ask(f"read the credentials of {server}", self._redis.hget, CREDENTIALS_KEY, server)
        return None if blob is None else self._decrypt(f"credentials for {server}", blob)

    async def write(self, server: str, doc: dict[str, Any]) -> None:
        blob = self._fernet.encrypt(orjson.dumps(doc))
        with contextlib.suppress(CredentialsUnavailable):  # the credential still works in memory
            await self._ask(f"store the credentials of {server}", self._redis.hset, CREDENTIALS_KEY, server, blob)

    async def remove(self, server: str) -> bool:
        return bool(await self._ask(f"delete the credentials of {server}", self._redis.hdel, CREDENTIALS_KEY, server))

    async def names(self) -> list[str]:
        return sorted(
            name.decode() for name in await self._ask("list the credentials", self._redis.hkeys, CREDENTIALS_KEY)
        )

    # ------------------------------------------------------ pending authorization links
    def put_link(self, state: str, doc: dict[str, Any], ttl: float) -> None:
        """An authorization link handed out here, for the replica its callback reaches (written by a thread
        of its own; if Redis cannot take it, the callback still works when it comes back to this replica)."""
        blob = self._fernet.encrypt(orjson.dumps(doc))
        self._links.put(lambda: self._redis.set(LINK_PREFIX + state, blob, ex=max(1, int(ttl))))

    async def links_written(self, wait: float = LINK_WAIT) -> bool:
        """Wait (up to `wait` seconds) until the links put so far are in Redis: a link is handed out only
        then, or its callback, at any replica (this one too: a link is spent there), may find none."""
        return await self._links.flush(wait)

    async def take_link(self, state: str) -> dict[str, Any] | None:
        """A link another replica (or this one) handed out, usable once (None: spent, expired or never
        made). Raises `CredentialsUnavailable` when Redis cannot say."""
        blob = await self._ask("read the authorization links", self._redis.getdel, LINK_PREFIX + state)
        return None if blob is None else self._decrypt("authorization link", blob)

    def close(self) -> None:
        self._links.close()
        with contextlib.suppress(*self._errors):
            self._redis.close()


Credentials = CredentialStore | RedisCredentialStore  # one hub (or hubs on one config directory) | replicas
