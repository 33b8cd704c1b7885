"""Which upstream connection takes a session's call to a server.

Owns the choice: a ready, balanced replica (sticky per session) whose breaker lets the call through,
the session's own connection for `isolation: session` servers (or `auto` ones that ask clients back),
and the shared legacy-era companion of a dual-era upstream for legacy clients that can be asked
back; a principal's own connections (its `${user:NAME}` values, its own OAuth tokens; a second one in
the legacy era for its legacy clients that need it of a dual-era upstream), and which values they
take. Says why when none may take it (removed, not ready, circuit open), and what a client of each era
is offered of a server (`offered`: a legacy client may subscribe over a legacy-era connection). Does
not own the connections: the `Pool` and `IsolatedConnections` do.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from onemcp.auth.principal import Principal
from onemcp.config.model import ServerConfig, UpstreamOAuth
from onemcp.hub.session import Session
from onemcp.protocol.errors import HubError, LimitReached, UpstreamUnavailable
from onemcp.upstream import user_secrets
from onemcp.upstream.connection import UpstreamConnection
from onemcp.upstream.isolation import IsolatedConnections, principal_owner, principal_owners
from onemcp.upstream.pool import Pool
from onemcp.upstream.user_secrets import UserSecrets

log = logging.getLogger("onemcp.hub")
LEGACY_COMPANION = ""  # the key of the shared legacy-era connection to a dual-era upstream
REVERSE_KINDS = ("sampling", "elicitation", "roots")  # client capabilities a server->client request needs


def hash_key(setting: str, session: Session | None, params: Mapping[str, Any] | None) -> str:
    """What a call is hashed by for `balance: consistent-hash` (`hashKey`): session, principal or an argument."""
    if setting.startswith("argument:"):
        arguments = (params or {}).get("arguments")
        value = arguments.get(setting[9:]) if isinstance(arguments, dict) else None
        return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if session is None:
        return ""
    if setting == "session" and not session.ephemeral:
        return session.id
    return session.principal.id  # "principal", or a 2026-07-28 request (it has no session)


def ready(
    pool: Pool, server: str, session: Session | None = None, params: Mapping[str, Any] | None = None
) -> UpstreamConnection:
    """A connection to `server` that may take a call now (a balanced replica, sticky per session)."""
    pins = session.replica_pins if session is not None and not session.ephemeral else None
    slot = pool.slots.get(server)
    key = None
    if slot is not None and slot.replicas and slot.config.balance == "consistent-hash":
        key = hash_key(slot.config.hash_key, session, params)
    member = pool.pick(server, pins, key)
    if member is not None and member.breaker.allow():
        return member.conn
    if slot is None:
        raise UpstreamUnavailable(server, "server is removed")
    conn = pool.get(server)
    assert conn is not None
    if conn.state != "ready":
        detail = f": {conn.last_error}" if conn.last_error else ""
        raise UpstreamUnavailable(server, f"server is {conn.state}{detail}")
    breaker = (member or slot).breaker
    raise UpstreamUnavailable(
        server,
        f"circuit open after {breaker.failures} consecutive failures; next attempt in {breaker.retry_in():.0f}s",
    )


def takes_subscriptions(conn: UpstreamConnection | None) -> bool:
    """Does the server take `resources/subscribe` in the era this connection speaks?"""
    caps = conn.capabilities.get("resources") if conn is not None else None
    return isinstance(caps, dict) and bool(caps.get("subscribe"))


def subscribes_in_legacy(conn: UpstreamConnection, isolated: IsolatedConnections) -> bool:
    """May a legacy client's `resources/subscribe` be taken by this dual-era server (one the hub speaks
    2026-07-28 to, where it takes none) over a legacy-era connection to it (`wants_legacy`: the companion, a
    session's own, or a principal's own for a `perUser` OAuth or `${user:NAME}` server)? What such a one
    declared once one ran; before, yes if the server has resources at all: learning it sooner would cost a
    connection (over stdio, a process) per such server."""
    if conn.era != "modern" or not conn.speaks_legacy or not isinstance(conn.capabilities.get("resources"), dict):
        return False
    known = [c for c in isolated.connections() if c.name == conn.name and c.state == "ready" and c.era != "modern"]
    return takes_subscriptions(known[0]) if known else True


def offered(conn: UpstreamConnection, isolated: IsolatedConnections, legacy: bool) -> dict[str, Any]:
    """The capabilities a client gets of `conn`'s server through the hub: those it declared in the era the
    hub speaks to it, and for a `legacy` client `resources.subscribe` where only its legacy era may take
    subscriptions (`subscribes_in_legacy`): the hub takes them there, so it says so."""
    caps = conn.capabilities
    if not legacy or takes_subscriptions(conn) or not subscribes_in_legacy(conn, isolated):
        return caps
    return {**caps, "resources": {**caps["resources"], "subscribe": True}}


def wants_legacy(conn: UpstreamConnection, session: Session, server: str, subscribing: bool = False) -> bool:
    """Does this legacy session need the legacy era of a dual-era upstream the hub speaks 2026-07-28 to?
    When it can be asked back (it declared sampling, elicitation or roots: such a server's tools that ask
    with a server->client request have no back-channel in 2026-07-28), and when it subscribes, or holds
    subscriptions, to the server's resources while its 2026-07-28 era takes none (SDK 2.x servers take
    `resources/subscribe` in the legacy era and subscriptions only on `subscriptions/listen` in 2026-07-28):
    its calls go there too, so that what they change is heard where it subscribed, as directly."""
    if conn.era != "modern" or not conn.speaks_legacy or session.ephemeral:
        return False
    if any(kind in session.client_capabilities for kind in REVERSE_KINDS):
        return True
    held = subscribing or any(key[0] == server for key in session.subscriptions)
    return held and not takes_subscriptions(conn)


async def for_session(
    pool: Pool,
    isolated: IsolatedConnections,
    servers: Mapping[str, ServerConfig],
    session: Session,
    server: str,
    params: Mapping[str, Any] | None = None,
    secrets: UserSecrets | None = None,
    subscribing: bool = False,
) -> UpstreamConnection:
    """The shared connection, or the session's own for `isolation: session` servers (a 2026-07-28
    request's principal's own: it has no session).

    A legacy client's calls to a dual-era upstream (one the hub speaks 2026-07-28 to) go over a
    legacy-era connection, as they would directly, when it needs that era (`wants_legacy`; `subscribing`:
    the request is a `resources/subscribe`).
    """
    conn = ready(pool, server, session, params)
    own = servers.get(server)
    legacy = wants_legacy(conn, session, server, subscribing)
    if own is not None and isinstance(own.oauth, UpstreamOAuth) and own.oauth.per_user:
        get = functools.partial(_users_oauth, isolated, own, conn, session, server)
        return await _in_era(conn, legacy, get, isolated.ready(principal_owner(session.principal.id), server))
    if secrets is not None and own is not None and user_secrets.per_user(own):
        get = functools.partial(_users_own, isolated, secrets, own, conn, session, server)
        return await _in_era(conn, legacy, get, isolated.ready(principal_owner(session.principal.id), server))
    asks_back = any(kind in session.client_capabilities for kind in REVERSE_KINDS)  # else no use for one
    config = conn.config.model_copy(update={"protocol": "legacy"}) if legacy else conn.config
    auto = conn.config.isolation == "auto" and conn.asks_clients and asks_back and not session.ephemeral
    if session.ephemeral and conn.config.isolation == "session":
        # a 2026-07-28 request has no session to keep a connection for: its principal's own (reaped idle)
        return await isolated.get(principal_owner(session.principal.id), None, server, config, servers.get(server))
    if conn.config.isolation == "session" or auto:
        mine = isolated.ready(session.id, server)
        if legacy and mine is not None and mine.era == "modern" and not mine.in_flight:
            isolated.close_owned(session.id, server)  # it needs the legacy era now: its next one speaks it
        return await isolated.get(session.id, session, server, config, servers.get(server), group=session.principal.id)
    if legacy:  # one for all legacy clients, like the shared one
        try:
            return await isolated.get(LEGACY_COMPANION, None, server, config, servers.get(server))
        except UpstreamUnavailable as exc:  # it said it speaks legacy, but does not: bridge instead
            log.warning("upstream %s: no legacy-era connection (%s); bridging legacy clients", server, exc)
            conn.speaks_legacy = False
    return conn


def user_values(enabled: Mapping[str, ServerConfig], principal: Principal) -> dict[str, list[str]]:
    """The `${user:NAME}` values the principal's own connections would take: the names of the
    enabled servers its scopes reach, with those servers."""
    reach = principal.reach({name: own.tags for name, own in enabled.items()})
    return user_secrets.taken({name: own for name, own in enabled.items() if reach.touches(name)})


def per_user_credential(server: str, principal: str) -> str:
    """The name a principal's own OAuth credential with `server` is kept (and called back) under."""
    return f"{server}~{hashlib.sha256(principal.encode()).hexdigest()[:16]}"


async def _in_era(
    conn: UpstreamConnection,
    legacy: bool,
    get: Callable[[bool], Awaitable[UpstreamConnection]],
    running: UpstreamConnection | None,
) -> UpstreamConnection:
    """A principal's own connection (`get`), in the legacy era when its legacy client needs that era
    (`wants_legacy`), as the companion is for other servers' legacy clients. One that fails is bridged
    instead: this call goes to the principal's 2026-07-28 connection. Only where that one was started
    just now, with the same values or tokens, is the era known to be why (the server said it speaks
    legacy, but does not), and given up on for every client of the shared connection `conn`; where the
    principal's was `running` already, the failure may be its own (a revoked token or value, a slow
    start), which must not take the legacy era from everyone else: the next call tries again. One refused
    by `maxOwnConnections` (LimitReached) is bridged as well, the era kept."""
    if legacy:
        try:
            return await get(True)
        except (UpstreamUnavailable, LimitReached) as exc:  # at `maxOwnConnections`: bridged, as before
            failed: HubError | None = exc
    else:
        failed = None
    fresh = await get(False)
    if isinstance(failed, UpstreamUnavailable) and fresh is not running:  # made now, same values: the era
        log.warning("upstream %s: no legacy-era connection (%s); bridging legacy clients", conn.name, failed)
        conn.speaks_legacy = False
    elif failed is not None:
        log.info("upstream %s: no legacy-era connection of its own for this user (%s); bridged", conn.name, failed)
    return fresh


async def _users_oauth(
    isolated: IsolatedConnections,
    own: ServerConfig,
    conn: UpstreamConnection,
    session: Session,
    server: str,
    legacy: bool = False,
) -> UpstreamConnection:
    """The principal's own connection to a `perUser` OAuth server (in the legacy era: `legacy`), carrying
    the tokens it authorized; when it has none yet, the error hands it its own authorization link."""
    principal = session.principal.id
    credential = per_user_credential(server, principal)
    config = conn.config.model_copy(update={"protocol": "legacy"}) if legacy else conn.config
    try:
        return await isolated.get(principal_owner(principal, legacy), None, server, config, own, credential)
    except UpstreamUnavailable:
        auth = isolated.auth
        mine = auth.servers.get(credential) if auth is not None else None
        usable = auth is not None and mine is not None and mine.blocked and mine.linkable
        link = auth.start_url(credential) if usable and auth is not None else None
        if link is None:
            raise
        raise UpstreamUnavailable(
            server,
            f"each user authorizes onemcp with {server} once, and you ({principal}) have not yet: open {link}"
            " in your browser, sign in with the key your client uses, and call again",
        ) from None


async def _users_own(
    isolated: IsolatedConnections,
    secrets: UserSecrets,
    own: ServerConfig,
    conn: UpstreamConnection,
    session: Session,
    server: str,
    legacy: bool = False,
) -> UpstreamConnection:
    """The principal's own connection to a server whose config takes `${user:NAME}` values (in the legacy
    era: `legacy`): made with its values (at the balanced replica's URL), shared by its sessions, never by
    another principal's."""
    principal = session.principal.id
    owner, version = principal_owner(principal, legacy), secrets.version()
    running = isolated.ready(owner, server)
    if running is not None and isolated.stamp(owner, server) == version:
        return running  # no value changed since it was made (or checked)
    update: dict[str, Any] = {"url": conn.config.url, **({"protocol": "legacy"} if legacy else {})}
    try:
        config = user_secrets.render(own.model_copy(update=update), secrets.values(principal), principal)
    except user_secrets.MissingSecrets as exc:
        for made in principal_owners(principal):  # made from a value deleted since: neither era's may keep it
            isolated.close_owned(made, server)
        names, first = ", ".join(exc.names), exc.names[0]
        yourself = (  # a principal of several people may not choose for all (`downstream.my_secrets`)
            f" set it yourself with `onemcp auth secret mine set {first}` (PUT /me/secrets/{first}), or"
            if not session.principal.shared
            else ""
        )
        raise UpstreamUnavailable(
            server,
            f"it needs your own {names}, and none is stored for you ({principal}):{yourself} an operator sets"
            f" it with `onemcp auth secret set '{principal}' {first}`",
        ) from None
    except user_secrets.UnsendableSecrets as exc:
        for made in principal_owners(principal):  # made from an earlier value: neither era's may keep it
            isolated.close_owned(made, server)
        names, first = ", ".join(exc.names), exc.names[0]
        yourself = (
            f" set it yourself with `onemcp auth secret mine set {first}`, or" if not session.principal.shared else ""
        )
        raise UpstreamUnavailable(
            server,
            f"your stored {names} cannot be sent to it ({exc.where}), so nothing was sent:{yourself} an operator"
            f" sets it again with `onemcp auth secret set '{principal}' {first}`",
        ) from None
    if running is not None and (running.config.env, running.config.headers) == (config.env, config.headers):
        isolated.stamp(owner, server, version)
        return running
    if running is not None:  # a value changed (set, replaced or deleted): its next connection carries it
        isolated.close_owned(owner, server)
    fresh = await isolated.get(owner, None, server, config, config)
    if (fresh.config.env, fresh.config.headers) != (config.env, config.headers):  # one still starting, made
        isolated.close_owned(owner, server)  # from the old values by another call: this one's are newer
        fresh = await isolated.get(owner, None, server, config, config)
    isolated.stamp(owner, server, version)
    return fresh
