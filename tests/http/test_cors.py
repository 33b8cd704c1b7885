"""CORS for the MCP endpoints: which origins are answered, and what a preflight and an answer carry.

The routes (which entries get CORS, both eras, over raw HTTP): tests/downstream/test_streamable_wire.py."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from onemcp.http import cors

pytestmark = pytest.mark.anyio


def test_only_origins_named_are_answered_never_the_wildcard() -> None:
    origins = cors.listed(["https://App.example/", "*", "http://127.0.0.1:5173"])
    assert origins == {"https://app.example", "http://127.0.0.1:5173"}
    assert cors.matches(origins, "https://app.example") and cors.matches(origins, "HTTPS://APP.EXAMPLE")
    for other in (None, "https://evil.example", "https://app.example.evil.example", "null", "*"):
        assert not cors.matches(origins, other)
    assert not cors.matches(cors.listed(["*"]), "https://anyone.example")


def test_an_answer_names_its_origin_and_exposes_what_clients_read() -> None:
    headers = dict(cors.response_headers("https://app.example"))
    assert headers[b"access-control-allow-origin"] == b"https://app.example"
    assert headers[b"vary"] == b"origin"
    exposed = headers[b"access-control-expose-headers"].split(b", ")
    assert {b"mcp-session-id", b"www-authenticate", b"retry-after"} <= set(exposed)
    assert b"access-control-allow-credentials" not in headers


def test_a_preflight_allows_mcp_s_headers_and_the_mcp_param_names_asked_for() -> None:
    asked = "Content-Type, MCP-Param-Region, mcp-param-a b, x-other, mcp-param-" + ", mcp-param-".join("0123")
    headers = dict(cors.preflight_headers(asked))
    allowed = headers[b"access-control-allow-headers"].decode().split(", ")
    assert set(cors.REQUEST_HEADERS) <= set(allowed)
    assert "mcp-param-region" in allowed and {f"mcp-param-{n}" for n in "0123"} <= set(allowed)
    assert "x-other" not in allowed and not any(" " in h for h in allowed)  # not a header name: dropped
    assert headers[b"access-control-allow-methods"] == b"POST, GET, DELETE"
    many = ", ".join(f"mcp-param-p{n}" for n in range(100))
    allowed = dict(cors.preflight_headers(many))[b"access-control-allow-headers"].decode().split(", ")
    assert len(allowed) == len(cors.REQUEST_HEADERS) + cors.PARAMS_ALLOWED
    assert (
        dict(cors.preflight_headers(None))[b"access-control-allow-headers"] == ", ".join(cors.REQUEST_HEADERS).encode()
    )


async def test_headers_are_added_to_the_head_only() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    wrapped = cors.adding(send, [cors.VARY])
    await wrapped({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await wrapped({"type": "http.response.body", "body": b"x"})
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), cors.VARY]
    assert sent[1] == {"type": "http.response.body", "body": b"x"}
