"""The admin API's bodies: each route's check and its OpenAPI `requestBody` come from one definition and agree."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from onemcp import __version__
from onemcp.admin import schema
from onemcp.admin.api import PREFIX, ROUTES
from onemcp.admin.errors import ApiError

DOC = schema.openapi(ROUTES, PREFIX, __version__)

# bodies to try on every route: the check and the documented schema must say the same of each
CANDIDATES: list[dict[str, Any]] = [
    {},
    {"bogus": 1},
    {"name": "gamma", "server": {"command": "x"}},
    {"name": "gamma", "server": {"command": "x"}, "replace": True},
    {"name": "gamma", "server": {"command": "x"}, "replace": "yes"},
    {"name": 5, "server": {}},
    {"arguments": {"message": "hi"}},
    {"arguments": ["hi"]},
    {"filter": "dev", "description": "coding", "exposure": "search"},
    {"filter": "dev", "exposure": ""},
    {"filter": "dev", "exposure": "sometimes"},
    {"description": "no filter"},
    {"tools": ["a", "b"]},
    {"tools": "a"},
    {"tools": [1]},
    {"on": True},
    {"on": "yes"},
]


def operation(method: str, pattern: str) -> dict[str, Any]:
    op: dict[str, Any] = DOC["paths"][PREFIX + (pattern if pattern != "/" else "")][method.lower()]
    return op


def accepted(body: schema.Body, doc: dict[str, Any]) -> bool:
    try:
        body.check(doc)
    except ApiError as exc:
        assert exc.status == 400
        return False
    return True


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
def test_each_route_documents_the_body_it_checks(route: Any) -> None:
    documented = operation(route.method, route.pattern).get("requestBody")
    if not route.body.fields:
        assert documented is None  # it takes no body (one that says something is refused)
        assert [c for c in CANDIDATES if accepted(route.body, c)] == [{}]
        return
    assert documented is not None
    body_schema = documented["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator.check_schema(body_schema)
    for candidate in CANDIDATES:
        valid = jsonschema.Draft202012Validator(body_schema).is_valid(candidate)
        assert valid == accepted(route.body, candidate), (route.pattern, candidate)


def test_the_bodies_described() -> None:
    """What a client reads in the document (it described no body at all before)."""
    add = operation("POST", "/servers")["requestBody"]["content"]["application/json"]["schema"]
    assert add["required"] == ["name", "server"] and add["additionalProperties"] is False
    assert operation("POST", "/events/payloads")["requestBody"]["required"] is True
    assert operation("POST", "/tools/{name}/call")["requestBody"]["required"] is False
    assert set(
        operation("PUT", "/presets/{name}")["requestBody"]["content"]["application/json"]["schema"]["properties"]
    ) == {"filter", "description", "exposure"}
    assert "requestBody" in operation("POST", "/pins/{server}/approve")
    assert "requestBody" not in operation("POST", "/pins/{server}/{tool}/approve")
    assert "requestBody" not in operation("DELETE", "/servers/{name}")
