"""Tool definitions a strict client would reject: mended or withheld, one server never spoiling the list."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from fixtures.launch import fixture_command
from onemcp.catalog import repair
from onemcp.protocol.headers import header_params
from support.hub import running_hub


def test_missing_types_are_mended_and_hopeless_schemas_withheld() -> None:
    items: list[dict[str, Any]] = [
        {"name": "ok", "inputSchema": {"type": "object"}},
        {"name": "untyped", "inputSchema": {"properties": {"q": {"type": "string"}}}},
        {"name": "bare"},
        {"name": "out", "inputSchema": {"type": "object"}, "outputSchema": {"properties": {}}},
        {"name": "stringy", "inputSchema": {"type": "string"}},
        {"name": "listy", "inputSchema": [1]},
        {"inputSchema": {"type": "object"}},
    ]
    kept, report = repair.tools(items)
    assert [t["name"] for t in kept] == ["ok", "untyped", "bare", "out"]
    assert kept[1]["inputSchema"] == {"type": "object", "properties": {"q": {"type": "string"}}}
    assert kept[2]["inputSchema"] == {"type": "object"} and kept[3]["outputSchema"]["type"] == "object"
    assert kept[0] is items[0] and "type" not in items[1]["inputSchema"]  # copies, not edits of the upstream's
    assert set(report.repaired) == {"untyped", "bare", "out"}
    assert set(report.withheld) == {"stringy", "listy", "#6"}


def test_a_name_listed_twice_keeps_its_first_definition_and_says_so() -> None:
    first = {"name": "dup", "description": "first", "inputSchema": {"type": "object"}}
    other = {"name": "x", "inputSchema": {"type": "object"}}
    kept, report = repair.tools([first, {**first, "description": "second"}, other])
    assert kept == [first, other]
    assert report.withheld == {"dup (#1)": "the server lists this name twice: its first definition is shown"}


def test_tools_with_invalid_header_annotations_are_withheld() -> None:
    """The spec: a client drops a tool whose x-mcp-header annotations are invalid. A name with CR LF
    would put the upstream's own header lines into the hub's requests to it; one outside latin-1
    could not be written at all."""

    def tool(name: str, **props: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "inputSchema": {"type": "object", "properties": props}}

    items = [
        tool("ok", region={"type": "string", "x-mcp-header": "Region"}, n={"type": "integer"}),
        tool("crlf", a={"type": "string", "x-mcp-header": "A\r\nX-Injected: 1"}),
        tool("unicode", a={"type": "string", "x-mcp-header": "Région"}),
        tool("empty", a={"type": "string", "x-mcp-header": ""}),
        tool("twice", a={"type": "string", "x-mcp-header": "Acct"}, b={"type": "string", "x-mcp-header": "acct"}),
        tool("objecty", a={"type": "object", "x-mcp-header": "Blob"}),
        tool("numbered", a={"type": "string", "x-mcp-header": 7}),
    ]
    kept, report = repair.tools(items)
    assert [t["name"] for t in kept] == ["ok"]
    assert set(report.withheld) == {"crlf", "unicode", "empty", "twice", "objecty", "numbered"}
    assert header_params(items) == {"ok": {"region": "Region"}}  # what the transport would send


@pytest.mark.anyio
async def test_a_strict_client_lists_every_server_despite_one_with_bad_schemas() -> None:
    bad = fixture_command("--bad-schemas")
    servers = {
        "bad": {"command": bad[0], "args": bad[1:]},
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"], "disabledTools": ["ehco"]},
    }
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as client:
                names = {t.name for t in (await client.list_tools()).tools}
            assert {"bad__untyped", "bad__echo", "demo__echo"} <= names and "bad__stringy" not in names
            async with httpx.AsyncClient() as http:
                doc = (await http.get(f"{hub.base}/health")).json()
            repairs = doc["upstreams"]["bad"]["toolRepairs"]
            assert "untyped" in repairs["repaired"] and "stringy" in repairs["withheld"]
            assert doc["upstreams"]["demo"]["toolRepairs"] is None
            assert doc["upstreams"]["demo"]["unmatchedToolRules"] == ["disabledTools: ehco"]  # a typo, shown
            assert doc["upstreams"]["bad"]["unmatchedToolRules"] is None
            assert json.dumps(doc)  # serialisable
