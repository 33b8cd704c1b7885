"""Reviving a saved session: a Streamable HTTP session this hub (or an earlier run of it, or another
replica) saved, made live again for the principal it belongs to.

Owns the rebuild: the record read back (`records`), the access decided again through the hub's one
decision (`Hub.access`), its template servers bound and its subscriptions asked for again. Does not
store records (`saved.py`) nor decide access itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from onemcp.auth.access import Access
from onemcp.auth.principal import Principal
from onemcp.catalog import views
from onemcp.config.model import Exposure, HubConfig
from onemcp.hub import records
from onemcp.hub.saved import SessionRecords
from onemcp.hub.session import Session, SessionStore
from onemcp.hub.subscriptions import Subscriptions
from onemcp.protocol.errors import HubError, LimitReached

if TYPE_CHECKING:
    from onemcp.hub.replicas import Replicas

log = logging.getLogger("onemcp.hub")


class Reviving(Protocol):
    """What a revival needs of the hub."""

    config: HubConfig
    replicas: Replicas | None
    saved: SessionRecords
    sessions: SessionStore
    subscriptions: Subscriptions

    def access(
        self,
        principal: Principal,
        entry: str,
        view: views.View | None = None,
        exposure: Exposure | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        trusted: bool = False,
    ) -> Access: ...
    def view(self, query: bytes | str) -> views.View | None: ...
    def exposure_asked(self, query: bytes | str) -> Exposure | None: ...
    def bind_templates(self, session: Session) -> None: ...
    async def remember_lists(self, session: Session) -> None: ...


async def revive(hub: Reviving, session_id: str, principal: Principal) -> Session | None:
    """The saved session `session_id` live again for `principal`; None when there is none, it expired,
    or it is someone else's (raises `LimitReached` when it exists but this process has no room for it)."""
    doc = await hub.saved.load(session_id, hub.config.hub.session_idle_timeout)
    if (live := hub.sessions.get(session_id)) is not None:  # revived meanwhile, by a request beside this
        return live if live.principal.key == principal.key and live.transport == "streamable-http" else None
    if doc is None or doc.get("principal") != principal.key:
        return None
    try:
        query = str(doc.get("query") or "")
        access = hub.access(
            principal,
            str(doc.get("entry")),
            await view_of(hub, query),
            hub.exposure_asked(query),
            doc.get("context"),
            trusted=bool(doc.get("trusted")),
        )
        session = hub.sessions.create("streamable-http", replace(access, query=query), session_id)
    except LimitReached:
        raise  # the session exists; this replica has no room for its copy now: not a 404
    except (views.ViewError, HubError, ValueError) as exc:
        log.info("session %s not revived: %s", session_id[:8], exc)
        return None
    session.revived = True
    keys = records.restore(session, doc)
    try:
        hub.bind_templates(session)
    except HubError as exc:
        log.info("session %s revived without its template servers: %s", session_id[:8], exc)
    hub.subscriptions.restore(session, keys)
    await hub.remember_lists(session)  # last: it may count off the loop, the session whole meanwhile
    log.info("session %s revived (saved before a restart)", session_id[:8])
    return session


async def view_of(hub: Reviving, query: bytes | str) -> views.View | None:
    """The view `query` selects (`views.ViewError`: none); with replicas, a preset not known here is looked for
    again in the replicas' presets, taken from Redis now: it may have been made through another a moment ago."""
    try:
        return hub.view(query)
    except views.UnknownPreset:  # (a selector wrong otherwise is wrong at every replica: Redis is not asked)
        if hub.replicas is None or not await hub.replicas.presets_now():
            raise
        return hub.view(query)
