"""Every status an admin API route answers is in the OpenAPI document the hub serves, with its error body.

Each route is driven to every status its handler and the dispatcher give (read off them): on a hub
with API keys and a rate limit (401, 403, 429, a query parameter or body it does not take, a body
too large), on one without auth (the CSRF check, what each handler refuses), and on one started
without a config file (409). Each answer must be listed for its operation by that hub's own
/openapi.json, its body must fit the documented error schema, and every status the full document
lists for a route must have been seen. Each document passes openapi-spec-validator.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from admin.test_api import DEADLINE, bearer, config, sample, seeded
from onemcp import __version__
from onemcp.admin import api as api_module
from onemcp.admin import schema
from onemcp.admin.api import PREFIX, ROUTES
from onemcp.admin.routing import Route
from onemcp.auth.gate import RateLimiter
from onemcp.auth.keys import KeyStore
from support.hub import RunningHub, running_hub

pytestmark = pytest.mark.anyio
Seen = dict[tuple[str, str], set[int]]


def route_of(method: str, path: str) -> Route:
    bare = path.split("?")[0].rstrip("/") or "/"
    return next(r for r in ROUTES if r.method == method and r.regex.match(bare))


class Driver:
    """Requests to one hub's API, each checked against the document that hub serves."""

    def __init__(self, hub: RunningHub, http: httpx.AsyncClient, doc: dict[str, Any], seen: Seen) -> None:
        self.hub, self.http, self.doc, self.seen = hub, http, doc, seen

    def check(self, route: Route, status: int, body: bytes) -> None:
        path = PREFIX + (route.pattern if route.pattern != "/" else "")
        responses = self.doc["paths"][path][route.method.lower()]["responses"]
        assert str(status) in responses, f"{route.method} {route.pattern} answered {status}, undocumented"
        if status >= 400:
            documented = responses[str(status)]["content"]["application/json"]["schema"]
            assert documented == {"$ref": "#/components/schemas/Error"}
            jsonschema.validate(json.loads(body), self.doc["components"]["schemas"]["Error"])
        self.seen[(route.method, route.pattern)].add(status)

    async def send(self, expect: int, method: str, path: str, key: str | None = None, **kw: Any) -> None:
        route = route_of(method, path)
        headers = {**bearer(key), **kw.pop("headers", {})}
        if route.stream:
            async with self.http.stream(method, f"{self.hub.base}{PREFIX}{path}", headers=headers, **kw) as r:
                status, body = r.status_code, b"" if r.status_code == 200 else await r.aread()
        else:
            r = await self.http.request(method, f"{self.hub.base}{PREFIX}{path}", headers=headers, **kw)
            status, body = r.status_code, r.content
        assert status == expect, (method, path, status, body[:300])
        self.check(route, status, body)


@asynccontextmanager
async def driver(hub: RunningHub, seen: Seen, key: str | None = None) -> AsyncIterator[Driver]:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"{hub.base}{PREFIX}/openapi.json", headers=bearer(key))
        doc = r.json()
        validate(doc)  # a real OpenAPI 3.1 validator
        yield Driver(hub, http, doc, seen)


async def test_every_status_a_route_answers_is_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: Seen = defaultdict(set)
    too_large = b" " * (schema.MAX_BODY + 1)
    with anyio.fail_after(DEADLINE * 3):
        # with API keys and a rate limit: the gate's refusals, and what every route refuses
        (tmp_path / "a").mkdir()
        path = tmp_path / "a" / "mcp.json"
        doc = config(auth=True)
        doc["onemcp"]["auth"]["rateLimit"] = {"requestsPerMinute": 6000, "burst": 10000}
        path.write_text(json.dumps(doc))
        store = KeyStore(tmp_path / "a" / "keys.db")
        admin, mcp = store.create("admin", ["admin"]), store.create("user", ["mcp"])
        async with running_hub(doc, config_path=path) as hub, driver(hub, seen, admin) as d:
            assert {"401", "429"} <= set(d.doc["paths"][f"{PREFIX}/servers"]["get"]["responses"])
            for route in ROUTES:
                method, where, body = sample(route.method, route.pattern)
                await d.send(401, method, where, json=body)
                await d.send(403, method, where, mcp, json=body)
                await d.send(400, method, where + ("&" if "?" in where else "?") + "bogus=1", admin, json=body)
                if route.change:
                    await d.send(400, method, where, admin, json={"bogus": 1})
                    await d.send(413, method, where, admin, content=too_large)
                seeded(hub)
                await d.send(200, method, where, admin, json=body)
            hub.app.gate.limiter = RateLimiter(0.001, 1)  # one request, then none for a long while
            await d.send(200, "GET", "/", admin)
            for route in ROUTES:
                method, where, body = sample(route.method, route.pattern)
                await d.send(429, method, where, admin, json=body)

        # without auth: the CSRF check on a browser's changes, and what each handler refuses
        (tmp_path / "b").mkdir()
        path = tmp_path / "b" / "mcp.json"
        doc = config(auth=False)
        path.write_text(json.dumps(doc))
        async with running_hub(doc, config_path=path) as hub, driver(hub, seen) as d:
            assert not {"401", "429"} & set(d.doc["paths"][f"{PREFIX}/servers"]["get"]["responses"])
            for route in ROUTES:
                if route.change:
                    method, where, body = sample(route.method, route.pattern)
                    await d.send(403, method, where, json=body, headers={"origin": hub.base})
            for method, where in (
                ("GET", "/servers/nosuch"),
                ("DELETE", "/servers/nosuch"),
                ("POST", "/servers/nosuch/restart"),
                ("POST", "/servers/nosuch/enable"),
                ("POST", "/servers/nosuch/disable"),
                ("GET", "/tools?server=nosuch"),
                ("DELETE", "/presets/nosuch"),
                ("POST", "/pins/nosuch/approve"),
                ("POST", "/pins/nosuch/echo/approve"),
                ("DELETE", "/user-secrets?principal=key:nobody&name=NONE"),
            ):
                await d.send(404, method, where)
            await d.send(400, "DELETE", "/user-secrets")  # ?principal=&name= are required
            await d.send(400, "GET", "/tools?limit=1&limit=2")  # which one? (the last was taken, silently)
            (tmp_path / "b" / "presets.json").write_text("{ half written")
            await d.send(500, "GET", "/presets")
            (tmp_path / "b" / "presets.json").unlink()

            def unwritable(*args: Any, **kwargs: Any) -> Any:
                raise PermissionError(13, "Permission denied")

            async def cancelled(*args: Any, **kwargs: Any) -> None:
                return None

            def unreadable(*args: Any) -> Any:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr(api_module, "edit_config", unwritable)  # the disk, not the request, fails
            for method, where, body in (sample("POST", "/servers"), ("DELETE", "/servers/alpha", None)):
                await d.send(500, method, where, json=body)
            for action in ("enable", "disable"):
                await d.send(500, "POST", f"/servers/alpha/{action}")
            monkeypatch.setattr(api_module, "answer", cancelled)  # the call ended without an answer
            await d.send(504, "POST", "/tools/alpha__echo/call", json={"arguments": {}})
            monkeypatch.setattr(hub.app.hub.user_secrets, "listing", unreadable)
            monkeypatch.setattr(hub.app.hub.user_secrets, "delete", unreadable)
            await d.send(503, "GET", "/user-secrets")
            await d.send(503, "DELETE", "/user-secrets?principal=key:seeded&name=SEEDED")

        # started without a config file: nothing to edit
        async with running_hub(config(auth=False)) as hub, driver(hub, seen) as d:
            for method, where, body in (
                sample("POST", "/servers"),
                ("DELETE", "/servers/alpha", None),
                ("POST", "/servers/alpha/enable", None),
                ("POST", "/servers/alpha/disable", None),
                sample("PUT", "/presets/{name}"),
                ("DELETE", "/presets/team", None),
                ("POST", "/reload", None),
            ):
                await d.send(409, method, where, json=body)

    # the other way: each status the full document lists for a route was answered above
    full = schema.openapi(ROUTES, PREFIX, __version__)
    validate(full)
    for route in ROUTES:
        where = PREFIX + (route.pattern if route.pattern != "/" else "")
        listed = {int(s) for s in full["paths"][where][route.method.lower()]["responses"]}
        assert listed == seen[(route.method, route.pattern)], (route.method, route.pattern)


def test_the_query_parameters_a_route_needs_are_required() -> None:
    doc = schema.openapi(ROUTES, PREFIX, __version__)
    forget = doc["paths"][f"{PREFIX}/user-secrets"]["delete"]["parameters"]
    assert {p["name"]: p["required"] for p in forget} == {"principal": True, "name": True}
    tools = doc["paths"][f"{PREFIX}/tools"]["get"]["parameters"]
    assert not any(p["required"] for p in tools)
