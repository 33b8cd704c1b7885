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


def test_mistyped_optional_fields_are_dropped_and_mistyped_schema_keywords_withheld() -> None:
    """What the official SDK clients validate: a `description` that is not a string made every
    server's tools/list fail for them (hunt s28 F1)."""
    schema = {"type": "object"}
    icon = {"src": "https://x.example/i.png", "sizes": ["48x48"], "theme": "dark"}
    items: list[dict[str, Any]] = [
        {"name": "fine", "title": "T", "description": "d", "inputSchema": schema, "icons": [icon], "_meta": {}},
        {"name": "nulls", "description": None, "annotations": None, "inputSchema": schema},
        {"name": "desc", "description": {"x": 1}, "title": 7, "inputSchema": schema},
        {"name": "notes", "annotations": {"readOnlyHint": "yes", "title": "Odd", "x": 1}, "inputSchema": schema},
        {"name": "notes2", "annotations": [], "execution": {"taskSupport": "no"}, "_meta": 1, "inputSchema": schema},
        {"name": "icons", "icons": [{"src": 5}, icon, {"src": "s", "theme": "blue"}], "inputSchema": schema},
        {"name": "icons2", "icons": "i.png", "inputSchema": schema},
        {"name": "req", "inputSchema": {"type": "object", "required": 5}},
        {"name": "req2", "inputSchema": {"type": "object", "required": ["a", 1]}},
        {"name": "props", "inputSchema": {"type": "object", "properties": {"a": 1}}},
        {"name": "props2", "inputSchema": {"properties": []}},
        {"name": "dollar", "inputSchema": {"type": "object", "$schema": 1}},
        {"name": "out", "inputSchema": schema, "outputSchema": {"type": "object", "required": "a"}},
        {"name": "both", "description": 1, "inputSchema": {"type": "object", "required": 5}},
    ]
    kept, report = repair.tools(items)
    by_name = {t["name"]: t for t in kept}
    assert list(by_name) == ["fine", "nulls", "desc", "notes", "notes2", "icons", "icons2"]
    assert by_name["fine"] is items[0] and by_name["nulls"] is items[1]  # nothing to mend
    assert "description" not in by_name["desc"] and "title" not in by_name["desc"]
    assert by_name["notes"]["annotations"] == {"title": "Odd", "x": 1}
    assert {"annotations", "execution", "_meta"}.isdisjoint(by_name["notes2"])
    assert by_name["icons"]["icons"] == [icon] and "icons" not in by_name["icons2"]
    assert items[2]["description"] == {"x": 1}  # copies, not edits of the upstream's
    assert set(report.repaired) == {"desc", "notes", "notes2", "icons", "icons2"}
    assert "description is not a string" in report.repaired["desc"]
    assert set(report.withheld) == {"req", "req2", "props", "props2", "dollar", "out", "both"}
    assert report.withheld["req"] == "inputSchema.required is not a list of strings"
    assert report.withheld["out"] == "outputSchema.required is not a list of strings"


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
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_strict_client_lists_every_server_despite_one_with_bad_schemas(mode: str) -> None:
    """The official SDK client validates every tool of the list, in both eras: one server's
    mistyped definition must not make it refuse all of them."""
    bad = fixture_command("--bad-schemas")
    servers = {
        "bad": {"command": bad[0], "args": bad[1:]},
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"], "disabledTools": ["ehco"]},
    }
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                listed = {t.name: t for t in (await client.list_tools()).tools}
            assert {"bad__untyped", "bad__echo", "bad__odd", "demo__echo"} <= set(listed)
            assert "bad__stringy" not in listed and "bad__reqnum" not in listed
            assert listed["bad__odd"].annotations is not None and listed["bad__odd"].annotations.title == "Odd"
            async with httpx.AsyncClient() as http:
                doc = (await http.get(f"{hub.base}/health")).json()
            repairs = doc["upstreams"]["bad"]["toolRepairs"]
            assert "untyped" in repairs["repaired"] and "stringy" in repairs["withheld"]
            assert "odd" in repairs["repaired"] and "reqnum" in repairs["withheld"]
            assert doc["upstreams"]["demo"]["toolRepairs"] is None
            assert doc["upstreams"]["demo"]["unmatchedToolRules"] == ["disabledTools: ehco"]  # a typo, shown
            assert doc["upstreams"]["bad"]["unmatchedToolRules"] is None
            assert json.dumps(doc)  # serialisable
