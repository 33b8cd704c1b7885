"""The admin API's view of each principal's own `${user:NAME}` values (`/api/v1/user-secrets`).

`GET` lists who has which name stored, when, and which enabled servers take it, never a value
(the `operator` scope may look); `DELETE ?principal=&name=` forgets one (the `admin` scope), as
`onemcp auth secret delete` does on the hub's machine. The principal's next call then has none.
Owns these two handlers; routing, scopes, CSRF and the audit line are `admin.api`'s, the store
`upstream.user_secrets`'s.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio.to_thread

from onemcp.admin.errors import ApiError
from onemcp.auth.principal import Principal
from onemcp.hub.core import Hub
from onemcp.upstream import user_secrets

FORGET_QUERY = ("principal", "name")
log = logging.getLogger("onemcp.admin")
T = TypeVar("T")


class Api(Protocol):
    """What these handlers use of `admin.api.AdminApi`."""

    hub: Hub

    def audit_change(self, who: str, action: str, target: str, outcome: str = "ok") -> None: ...


class Request(Protocol):
    """What these handlers use of `admin.routing.Request`."""

    principal: Principal

    @property
    def query(self) -> dict[str, str]: ...

    async def json(self) -> dict[str, Any]: ...


async def _store(work: Callable[..., T], *args: str) -> T:
    """The store's answer, off the event loop; a store that cannot be read is a 503, not a traceback."""
    try:
        return await anyio.to_thread.run_sync(work, *args)
    except (OSError, sqlite3.Error) as exc:
        log.warning("user secrets: the store cannot be used (%s)", exc)
        raise ApiError(503, f"the hub cannot read its user values now: {type(exc).__name__}") from None


async def listing(api: Api, request: Request) -> dict[str, Any]:
    rows = await _store(api.hub.user_secrets.listing)
    taken = user_secrets.taken(api.hub.config.enabled)
    return {
        "values": [
            {
                "principal": principal,
                "name": name,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated)),
                "servers": taken.get(name, []),
            }
            for principal, name, updated in rows
        ],
        "names": taken,
    }


async def forget(api: Api, request: Request) -> dict[str, Any]:
    await request.json()  # no body: one sent is refused, not ignored
    principal, name = (request.query.get(field, "").strip() for field in FORGET_QUERY)
    if not principal or not name:
        raise ApiError(400, "name the value: ?principal=<as the audit log names it>&name=<NAME>")
    if not await _store(api.hub.user_secrets.delete, principal, name):
        raise ApiError(404, f"no {name} is stored for {principal}")
    api.audit_change(request.principal.id, "user-secret-delete", f"{principal}/{name}")
    return {"principal": principal, "name": name, "forgotten": True}
