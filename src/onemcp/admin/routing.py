"""The admin API's routes and requests: what `admin.api` dispatches on, and what a handler reads.

Owns `Route` (a method and path pattern, what it needs and takes, its handler) and `Request` (the
path's parameters, the query, the body checked against the route's `schema.Body`). Does not list the
routes or handle them (`admin.api`), nor describe them (`admin.schema`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from onemcp.admin import schema
from onemcp.admin.errors import ApiError
from onemcp.auth.principal import Principal
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope


@dataclass
class Request:
    scope: Scope
    receive: Receive
    principal: Principal
    params: dict[str, str]
    body: schema.Body = schema.NO_BODY  # what the route takes

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The query's parameters in order, blank ones too (`?server=` is a parameter, though empty)."""
        from urllib.parse import parse_qsl

        return parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.pairs)

    @property
    def repeated(self) -> list[str]:
        """The parameters given more than once (which would they mean? a 400, as a repeated `/mcp`
        selector is)."""
        names = [name for name, _ in self.pairs]
        return sorted({name for name in names if names.count(name) > 1})

    async def json(self) -> dict[str, Any]:
        """The body, a JSON object ({} when empty) that is the route's `Body`; else 400."""
        try:
            raw = await asgi.read_body(self.receive, schema.MAX_BODY)
        except asgi.BodyTooLarge:
            raise ApiError(413, f"the body is larger than {schema.MAX_BODY} bytes") from None
        if not raw.strip():
            return {}
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "the body must be a JSON object")
        return self.body.check(doc)


Handler = Callable[[Any, Request], Awaitable[Any]]  # (`admin.api.AdminApi`, the request)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # /servers/{name}
    summary: str
    change: bool  # needs admin (else admin or operator)
    handler: Handler
    stream: bool = False  # answers with a stream of its own (`events`)
    query: tuple[str, ...] = ()  # the query parameters it takes (another one is a 400)
    query_required: bool = False  # each of them must be given
    body: schema.Body = schema.NO_BODY  # the body it takes (NO_BODY: one that says something is a 400)
    # what its handler refuses with, beyond what every route may answer (`schema.statuses`): documented
    fails: tuple[int, ...] = ()

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")
