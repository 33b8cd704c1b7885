"""The built-in authorization server's state in the Redis that hub replicas share.

Owns the Redis form of what `store` keeps in SQLite (clients, codes, grant families, access and
refresh tokens, revocations), of the consent pages awaiting an answer (`PendingConsents`), and of
the secret that signs the operator cookie, so that a client registered, a consent page shown, a
code minted or a token issued through one replica is honoured by every other, and a revocation
anywhere holds everywhere. Owns no policy: `grants` and `oauth_server` decide, as they do over
SQLite.

Keys live under `onemcp:oauth:`. Everything that expires carries a Redis TTL (its expiry plus the
same grace SQLite's purge keeps, to recognise replays), so nothing needs purging. The checks that
must not race across replicas (a code redeemed once, a refresh token rotated once, a family revoked
once) are single Redis commands or scripts. Calls are synchronous and short; `oauth_server` runs
them on a worker thread so a slow Redis never stalls the event loop.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from onemcp.auth.principal import InvalidToken, Principal, Unconfirmed
from onemcp.auth.server.authorize import (
    OPERATOR_ATTEMPTS,
    PENDING_LIMIT,
    PENDING_TTL,
    PER_SOURCE,
    AuthorizationRequest,
    NotOperator,
    PendingConsent,
    TooManyPending,
)
from onemcp.auth.server.grants import Clock
from onemcp.auth.server.store import KEEP_ACCESS, KEEP_REFRESH, ClientRecord, CodeGrant, Grant, Token
from onemcp.observability.limits import hit

PREFIX = "onemcp:oauth:"
GRACE = 86400.0  # kept this long after expiry, as SQLite's purge does: a replay is recognised, not unknown
VERIFY_CACHE_SECONDS = 5.0  # a token checked in Redis is trusted this long by the replica that checked it
VERIFY_CACHE_SIZE = 10_000
OPERATOR_SECRET = PREFIX + "operator-secret"

# A code: its grant once, however many replicas redeem it at once (the used count says who was first).
REDEEM = """
if redis.call('exists', KEYS[1]) == 0 then return false end
local used = redis.call('hincrby', KEYS[1], 'used', 1)
return {redis.call('hget', KEYS[1], 'grant'), used, redis.call('hget', KEYS[1], 'family') or ''}
"""
# Set a field on an existing hash only if unset (rotated, revoked); 1 when this call set it.
MARK = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('hsetnx', KEYS[1], ARGV[1], ARGV[2])
"""
# A token with its family's revocation, in one round trip.
TOKEN = """
local fields = redis.call('hgetall', KEYS[1])
if #fields == 0 then return false end
local family = redis.call('hget', KEYS[1], 'family')
fields[#fields + 1] = 'family_revoked'
fields[#fields + 1] = redis.call('hget', ARGV[1] .. family, 'revoked') or ''
return fields
"""
# A family's newest refresh token, unless the family is gone or revoked, in one round trip.
LIVE_GRANT = """
if redis.call('exists', KEYS[1]) == 0 or redis.call('hexists', KEYS[1], 'revoked') == 1 then return false end
local newest = redis.call('lindex', KEYS[2], 0)
if not newest then return false end
return redis.call('hgetall', ARGV[1] .. newest)
"""


def _client_doc(client: ClientRecord) -> bytes:
    return orjson.dumps(
        [client.client_id, client.secret_hash, client.metadata, client.source, client.issued, client.fetched]
    )


def _client(doc: bytes) -> ClientRecord:
    client_id, secret_hash, metadata, source, issued, fetched = orjson.loads(doc)
    return ClientRecord(client_id, secret_hash, metadata, source, issued, fetched)


def _errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.RedisError, OSError)


ERRORS = _errors()  # what a call raises when Redis cannot be reached or answer


def connect(url: str) -> Any:
    """A synchronous client of the shared Redis, failing within a second when it cannot be reached."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


PURGE_BATCH = 1000  # unused registered clients forgotten by one purge
UNUSED = f"{PREFIX}clients:unused"  # registered clients that never got a code, by when they registered
# set once every client registered before UNUSED existed has been looked at (`_index_unindexed`)
INDEXED = f"{PREFIX}clients:unused:indexed"
SCAN_BATCH = 500


def _grant_of(kind: str, found: list[bytes] | None) -> Grant | None:
    """A token's hash fields (as HGETALL lists them, and TOKEN's `family_revoked`) as its Grant."""
    if not found:
        return None
    doc = {found[i].decode(): found[i + 1].decode() for i in range(0, len(found), 2)}
    revoked = bool(doc.get("family_revoked")) or (kind == "access" and "revoked" in doc)
    return Grant(
        doc["family"],
        doc["client_id"],
        tuple(doc["scopes"].split()),
        doc["resource"],
        float(doc["expires"]),
        revoked,
        "rotated" in doc,
    )


class RedisOAuthStore:
    """`store.OAuthStore`'s operations, on the shared Redis."""

    def __init__(self, client: Any, clock: Clock) -> None:
        self._redis = client
        self.clock = clock  # the server's: TTLs are counted from its now, so a test clock works too
        self._redeem = client.register_script(REDEEM)
        self._mark = client.register_script(MARK)
        self._token = client.register_script(TOKEN)
        self._live_grant = client.register_script(LIVE_GRANT)
        self._indexed = False  # this replica saw INDEXED set (or set it)

    def close(self) -> None:
        self._redis.close()

    def _ttl(self, expires: float) -> int:
        return max(1, math.ceil(expires - self.clock() + GRACE))

    # ------------------------------------------------------------------ clients
    def put_client(self, client: ClientRecord) -> None:
        pipe = self._redis.pipeline()
        pipe.set(f"{PREFIX}client:{client.client_id}", _client_doc(client))
        pipe.sadd(f"{PREFIX}clients:{client.source}", client.client_id)
        if client.source == "dcr":  # unused until it gets a code: the oldest such gives way at the cap
            pipe.zadd(UNUSED, {client.client_id: client.issued}, nx=True)
        pipe.execute()

    def client(self, client_id: str) -> ClientRecord | None:
        doc = self._redis.get(f"{PREFIX}client:{client_id}")
        return None if doc is None else _client(doc)

    def count_clients(self, source: Literal["dcr", "cimd"]) -> int:
        return int(self._redis.scard(f"{PREFIX}clients:{source}"))

    # -------------------------------------------------------------------- codes
    def add_code(self, code_hash: str, grant: CodeGrant) -> None:
        fields = (grant.client_id, grant.redirect_uri, grant.redirect_explicit, grant.challenge, grant.scopes)
        doc = orjson.dumps([*fields, grant.resource, grant.expires])
        key = f"{PREFIX}code:{code_hash}"
        pipe = self._redis.pipeline()
        pipe.zrem(UNUSED, grant.client_id)  # used now: never evicted to make room
        pipe.hset(key, mapping={"grant": doc, "used": 0})
        pipe.expire(key, self._ttl(grant.expires))
        pipe.execute()

    def redeem_code(self, code_hash: str) -> CodeGrant | None:
        found = self._redeem(keys=[f"{PREFIX}code:{code_hash}"])
        if not found:
            return None
        doc, used, family = found
        client_id, redirect_uri, explicit, challenge, scopes, resource, expires = orjson.loads(doc)
        return CodeGrant(
            client_id,
            redirect_uri,
            explicit,
            challenge,
            tuple(scopes),
            resource,
            expires,
            int(used) > 1,
            family.decode() or None,
        )

    def bind_code(self, code_hash: str, family: str) -> None:
        self._mark(keys=[f"{PREFIX}code:{code_hash}"], args=["family", family])

    # ------------------------------------------------------------------- tokens
    def issue(
        self, family: str, client_id: str, resource: str, now: float, access: Token, refresh: Token | None
    ) -> None:
        family_key = f"{PREFIX}family:{family}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(family_key, "client_id", client_id)
        pipe.hsetnx(family_key, "created", now)
        last = access.expires
        for kind, token in (("access", access), ("refresh", refresh)):
            if token is None:
                continue
            key = f"{PREFIX}{kind}:{token.hash}"
            fields = {"family": family, "client_id": client_id, "scopes": " ".join(token.scopes)}
            pipe.hset(key, mapping=fields | {"resource": resource, "expires": token.expires})
            pipe.expire(key, self._ttl(token.expires))
            pipe.lpush(f"{PREFIX}issued:{kind}:{family}", token.hash)  # the family's tokens, newest first
            last = max(last, token.expires)
        pipe.expire(family_key, self._ttl(last))  # each rotation issues later tokens, so this only grows
        for kind in ("access", "refresh"):
            pipe.expire(f"{PREFIX}issued:{kind}:{family}", self._ttl(last))
        pipe.execute()
        self._forget_older(family)

    def _forget_older(self, family: str) -> None:
        """A family keeps only its newest tokens (store.KEEP_ACCESS, KEEP_REFRESH), as in SQLite."""
        for kind, keep in (("access", KEEP_ACCESS), ("refresh", KEEP_REFRESH)):
            issued = f"{PREFIX}issued:{kind}:{family}"
            older = self._redis.lrange(issued, keep, -1)
            if older:
                pipe = self._redis.pipeline(transaction=True)
                pipe.delete(*(f"{PREFIX}{kind}:{h.decode() if isinstance(h, bytes) else h}" for h in older))
                pipe.ltrim(issued, 0, keep - 1)
                pipe.execute()

    def _grant(self, kind: str, token_hash: str) -> Grant | None:
        found = self._token(keys=[f"{PREFIX}{kind}:{token_hash}"], args=[f"{PREFIX}family:"])
        return _grant_of(kind, found)

    def live_grant(self, family: str, now: float) -> Grant | None:
        """As `store.OAuthStore.live_grant`: the family's newest refresh token while both live."""
        keys = [f"{PREFIX}family:{family}", f"{PREFIX}issued:refresh:{family}"]
        grant = _grant_of("refresh", self._live_grant(keys=keys, args=[f"{PREFIX}refresh:"]))
        return grant if grant is not None and grant.expires > now else None

    def access_token(self, token_hash: str) -> Grant | None:
        return self._grant("access", token_hash)

    def refresh_token(self, token_hash: str) -> Grant | None:
        return self._grant("refresh", token_hash)

    def rotate(self, token_hash: str, now: float) -> bool:
        return bool(self._mark(keys=[f"{PREFIX}refresh:{token_hash}"], args=["rotated", now]))

    # -------------------------------------------------------------- revocation
    def revoke_family(self, family: str, now: float) -> None:
        self._mark(keys=[f"{PREFIX}family:{family}"], args=["revoked", now])

    def revoke_access(self, token_hash: str, now: float) -> None:
        self._mark(keys=[f"{PREFIX}access:{token_hash}"], args=["revoked", now])

    def purge(self, now: float, grace: float = GRACE) -> None:
        """Every key expires by its own TTL, but a registered client: one that never got a code is
        forgotten `grace` after it registered, as in SQLite (a bounded number a call)."""
        for _ in range(PURGE_BATCH):
            if not self.evict_unused_client(now - grace):
                break

    def evict_unused_client(self, issued_before: float) -> bool:
        """Forget the oldest registered client issued before then that never got a code (room for a new
        one: a flood of registrations must not close registration for good)."""
        self._index_unindexed()
        for _ in range(3):  # another replica may take the oldest meanwhile: then the next one
            oldest = self._redis.zrangebyscore(UNUSED, "-inf", issued_before, start=0, num=1)
            if not oldest:
                return False
            client_id = oldest[0].decode() if isinstance(oldest[0], bytes) else str(oldest[0])
            if self._redis.zrem(UNUSED, client_id):  # this replica's to forget
                pipe = self._redis.pipeline()
                pipe.delete(f"{PREFIX}client:{client_id}")
                pipe.srem(f"{PREFIX}clients:dcr", client_id)
                pipe.execute()
                return True
        return False

    def _index_unindexed(self) -> None:
        """Once per Redis: put in UNUSED the registered clients that predate it and never got a code (as
        SQLite judges: no code and no grant family of theirs left), so that they too give way and are
        forgotten. Each replica asks whether that was done once; two doing it at once do no harm."""
        if self._indexed:
            return
        if self._redis.exists(INDEXED):
            self._indexed = True
            return
        candidates = self._unindexed_clients()
        if candidates:
            self._redis.zadd(UNUSED, candidates, nx=True)
            # one that got its first code while this looked is used: add_code's ZREM ran before the
            # ZADD above, so look again and take those out
            if used := set(candidates) & self._clients_with_grants():
                self._redis.zrem(UNUSED, *used)
        self._redis.set(INDEXED, 1)
        self._indexed = True

    def _unindexed_clients(self) -> dict[str, float]:
        """Registered clients not in UNUSED, none of whose codes or grant families is left: id -> issued."""
        ids: list[str] = []
        for raw in self._redis.sscan_iter(f"{PREFIX}clients:dcr", count=SCAN_BATCH):
            ids.append(raw.decode() if isinstance(raw, bytes) else str(raw))
        used = self._clients_with_grants()
        ids = [client_id for client_id in ids if client_id not in used]
        found: dict[str, float] = {}
        for start in range(0, len(ids), SCAN_BATCH):
            batch = ids[start : start + SCAN_BATCH]
            pipe = self._redis.pipeline(transaction=False)
            for client_id in batch:
                pipe.zscore(UNUSED, client_id)
                pipe.get(f"{PREFIX}client:{client_id}")
            answers = pipe.execute()
            for client_id, score, doc in zip(batch, answers[::2], answers[1::2], strict=True):
                if score is None:  # (a record gone missing: issued long ago, so it goes first)
                    found[client_id] = 0.0 if doc is None else float(_client(doc).issued)
        return found

    def _clients_with_grants(self) -> set[str]:
        """The clients a code or a grant family is left of (a scan of those keys)."""
        used: set[str] = set()
        for pattern, read in ((f"{PREFIX}code:*", "grant"), (f"{PREFIX}family:*", "client_id")):
            keys = list(self._redis.scan_iter(match=pattern, count=SCAN_BATCH))
            for start in range(0, len(keys), SCAN_BATCH):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys[start : start + SCAN_BATCH]:
                    pipe.hget(key, read)
                for value in pipe.execute():
                    if value is not None:  # a code's grant is a document, its client first
                        used.add(orjson.loads(value)[0] if read == "grant" else value.decode())
        return used


class RedisPendingConsents:
    """`authorize.PendingConsents` on the shared Redis: the page shown by one replica, answered on another.

    Each entry expires with its Redis TTL. The bound on entries is a rate across the replicas: PER_SOURCE
    new pages a minute from one address, PENDING_LIMIT from all, so at most ten minutes' worth are ever
    held. A request beyond either is refused (TooManyPending) until the minute ends; no page is dropped.
    """

    def __init__(self, client: Any) -> None:
        self._redis = client

    @staticmethod
    def _key(request_id: str) -> str:
        return f"{PREFIX}consent:{request_id}"

    @staticmethod
    def _doc(pending: PendingConsent) -> bytes:
        request = pending.request
        return orjson.dumps(
            {
                "client": orjson.loads(_client_doc(request.client)),
                "redirect_uri": request.redirect_uri,
                "explicit": request.redirect_explicit,
                "state": request.state,
                "challenge": request.challenge,
                "scopes": request.scopes,
                "csrf": pending.csrf,
                "expires": pending.expires,
                "refused": pending.refused,
            }
        )

    @staticmethod
    def _pending(raw: bytes | None, now: float) -> PendingConsent | None:
        if raw is None:
            return None
        doc = orjson.loads(raw)
        request = AuthorizationRequest(
            _client(orjson.dumps(doc["client"])),
            doc["redirect_uri"],
            doc["explicit"],
            doc["state"],
            doc["challenge"],
            tuple(doc["scopes"]),
        )
        pending = PendingConsent(request, doc["csrf"], doc["expires"], doc["refused"])
        return pending if pending.expires > now else None

    def add(self, request: AuthorizationRequest, now: float, source: str) -> tuple[str, PendingConsent]:
        window, rest = f"{PREFIX}consents:{int(now // 60)}", 60 - now % 60
        # one address's requests first: those refused for it never count against everyone's
        for counter, limit, whose in (
            (f"{window}:{source}", PER_SOURCE, " from this address"),
            (window, PENDING_LIMIT, ""),
        ):
            pipe = self._redis.pipeline()
            pipe.incr(counter)
            pipe.expire(counter, 120)
            if int(pipe.execute()[0]) > limit:
                raise TooManyPending(f"{limit} authorization requests{whose} this minute await consent", rest)
        request_id, csrf = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        pending = PendingConsent(request, csrf, now + PENDING_TTL, source=source)
        self._redis.set(self._key(request_id), self._doc(pending), ex=int(PENDING_TTL))
        return request_id, pending

    def get(self, request_id: str, now: float) -> PendingConsent | None:
        return self._pending(self._redis.get(self._key(request_id)), now)

    def take(self, request_id: str, now: float) -> PendingConsent | None:
        return self._pending(self._redis.getdel(self._key(request_id)), now)

    def refuse(self, request_id: str, now: float) -> PendingConsent | None:
        pending = self.get(request_id, now)
        if pending is None:
            return None
        if pending.refused + 1 >= OPERATOR_ATTEMPTS:
            self._redis.delete(self._key(request_id))
            return None
        again = PendingConsent(pending.request, secrets.token_urlsafe(32), pending.expires, pending.refused + 1)
        if not self._redis.set(self._key(request_id), self._doc(again), keepttl=True, xx=True):
            return None  # taken meanwhile (answered on another replica)
        return again


def operator_secret(client: Any) -> bytes:
    """The key that signs operator cookies, the same on every replica (made by the first to ask)."""
    client.set(OPERATOR_SECRET, secrets.token_bytes(32), nx=True)
    secret: bytes = client.get(OPERATOR_SECRET)
    return secret


@dataclass(frozen=True)
class SharedState:
    """What the server keeps in the replicas' Redis: its grants' store, the consent pages awaiting an
    answer, and how to get the operator cookie's key (NotOperator while Redis cannot be reached)."""

    store: RedisOAuthStore
    pending: RedisPendingConsents
    operator_secret: Callable[[], bytes]


def open_state(url: str, clock: Clock) -> SharedState:
    """The server's state on the Redis at `url` (nothing is asked of Redis before the first use)."""
    client = connect(url)

    def secret() -> bytes:
        try:
            return operator_secret(client)
        except ERRORS:
            raise NotOperator("the shared store (Redis) cannot be reached") from None

    return SharedState(RedisOAuthStore(client, clock), RedisPendingConsents(client), secret)


class CheckedTokens:
    """Access tokens this replica checked in Redis, trusted for VERIFY_CACHE_SECONDS (so the call path
    rarely waits on Redis) while unexpired. A revocation through another replica holds here within
    that; `clear` (after this replica's own token and revocation requests) makes one here hold at once.
    While Redis cannot be reached, a token checked within `grace` seconds still counts (`unconfirmed`);
    any other is refused with 503 (`auth.redisOutageGrace`)."""

    def __init__(self, clock: Clock, grace: float = 60.0) -> None:
        self.clock = clock
        self.grace = grace
        self._checked: dict[str, tuple[float, Principal]] = {}  # token digest -> (when, principal)
        self._fresh_from = 0.0  # checks before this are not trusted while Redis answers (`clear`)

    def get(self, key: str) -> Principal | None:
        seen = self._checked.get(key)
        if seen is None or seen[0] < self._fresh_from or time.monotonic() - seen[0] >= VERIFY_CACHE_SECONDS:
            return None
        return self._unexpired(seen[1])

    def unconfirmed(self, key: str) -> Principal:
        """Redis cannot be reached: the token's principal if it was checked there within `grace` seconds
        (expired since: `InvalidToken`), else `Unconfirmed`."""
        seen = self._checked.get(key)
        if seen is None or time.monotonic() - seen[0] > self.grace:
            read = "never" if seen is None else f"{time.monotonic() - seen[0]:.0f} s ago"
            why = "OAuth token refused (503): Redis unreachable; checked there %s (auth.redisOutageGrace)"
            hit("unconfirmed_credentials", why, read)
            raise Unconfirmed("the token store (Redis) cannot be reached")
        if (principal := self._unexpired(seen[1])) is None:
            raise InvalidToken("access token expired")
        return principal

    def _unexpired(self, principal: Principal) -> Principal | None:
        expires = principal.expires
        return principal if expires is None or expires > self.clock() else None

    def put(self, key: str, principal: Principal) -> None:
        if len(self._checked) >= VERIFY_CACHE_SIZE:
            self._checked.clear()
        self._checked[key] = (time.monotonic(), principal)

    def clear(self) -> None:
        """Check every token in Redis again. What was checked stays for `unconfirmed`: a refresh tried while
        Redis is down (which revokes nothing) must not end the grace of every other token here."""
        self._fresh_from = time.monotonic()
