"""Tool definitions a strict client would reject: mended or withheld, one server never spoiling the list."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

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


def test_prompts_mistyped_optional_fields_are_dropped_and_unreadable_arguments_withheld() -> None:
    """What the official SDK clients validate of a prompt (both eras): one mistyped prompt made
    every server's prompts/list fail for them."""
    arg = {"name": "a", "description": "d", "required": True, "title": "A"}
    items: list[Any] = [
        {"name": "fine", "title": "T", "description": "d", "arguments": [arg], "icons": [], "_meta": {}},
        {"name": "nulls", "description": None, "arguments": None, "title": None},
        {"name": "desc", "description": {"x": 1}},
        {"name": "title", "title": 7},
        {"name": "meta", "_meta": "m"},
        {"name": "icons", "icons": [{"src": 1}, {"src": "s"}]},
        {"name": "argfields", "arguments": [{"name": "a", "description": 5, "required": "yes", "title": []}, arg]},
        {"name": "argsdict", "arguments": {"a": arg}},
        {"name": "argnoname", "arguments": [{"description": "d"}]},
        {"name": "argnumname", "arguments": [{"name": 3}]},
        {"name": "argstring", "arguments": ["a"]},
        {"name": 5},
        {"name": ""},
        "prompt",
    ]
    kept, report = repair.entries("prompts", items)
    by_name = {p["name"]: p for p in kept}
    assert list(by_name) == ["fine", "nulls", "desc", "title", "meta", "icons", "argfields"]
    assert by_name["fine"] is items[0] and by_name["nulls"] is items[1]  # nothing to mend
    assert "description" not in by_name["desc"] and "title" not in by_name["title"]
    assert "_meta" not in by_name["meta"] and by_name["icons"]["icons"] == [{"src": "s"}]
    assert by_name["argfields"]["arguments"] == [{"name": "a"}, arg]
    assert items[6]["arguments"][0]["required"] == "yes"  # copies, not edits of the upstream's
    assert set(report.repaired) == {"desc", "title", "meta", "icons", "argfields"}
    assert report.repaired["argfields"] == "argument 'a': title, description, required of the wrong type: dropped"
    assert set(report.withheld) == {"argsdict", "argnoname", "argnumname", "argstring", "#11", "#12", "#13"}
    assert report.withheld["#13"] == "not an object"


def test_resources_mistyped_optional_fields_are_dropped_and_mistyped_identities_withheld() -> None:
    """What the official SDK clients validate of a resource (both eras)."""
    notes = {"audience": ["user", "assistant"], "priority": 0.5, "lastModified": "2025-01-12T15:00:58Z"}
    fine = {"uri": "f://a", "name": "a", "mimeType": "text/plain", "size": 3, "annotations": notes, "title": "A"}
    items: list[Any] = [
        fine,
        {"uri": "f://whole", "name": "w", "size": 4.0, "mimeType": None},
        {"uri": "f://size", "name": "s", "size": "big"},
        {"uri": "f://half", "name": "h", "size": 1.5},
        {"uri": "f://bool", "name": "b", "size": True},
        {"uri": "f://mime", "name": "m", "mimeType": 3},
        {"uri": "f://desc", "name": "d", "description": [], "title": {}},
        {"uri": "f://notes", "name": "n", "annotations": "x"},
        {"uri": "f://prio", "name": "p", "annotations": {"priority": 7, "audience": ["user"], "x": 1}},
        {"uri": "f://aud", "name": "p", "annotations": {"audience": ["robot"], "lastModified": 5, "priority": True}},
        {"uri": "f://icons", "name": "i", "icons": "i.png", "_meta": []},
        {"uri": "f://noname"},
        {"uri": "f://numname", "name": 1},
        {"uri": 5, "name": "u"},
        {"name": "nouri"},
        {"uri": "", "name": "empty"},
        ["f://x"],
    ]
    kept, report = repair.entries("resources", items)
    by_uri = {r["uri"]: r for r in kept}
    assert list(by_uri) == [f"f://{n}" for n in ("a", "whole", "size", "half", "bool", "mime", "desc", "notes")] + [
        "f://prio",
        "f://aud",
        "f://icons",
    ]
    assert by_uri["f://a"] is fine and by_uri["f://whole"] is items[1]
    assert all("size" not in by_uri[f"f://{n}"] for n in ("size", "half", "bool"))
    assert "mimeType" not in by_uri["f://mime"] and {"description", "title"}.isdisjoint(by_uri["f://desc"])
    assert "annotations" not in by_uri["f://notes"]
    assert by_uri["f://prio"]["annotations"] == {"audience": ["user"], "x": 1}
    assert by_uri["f://aud"]["annotations"] == {}
    assert {"icons", "_meta"}.isdisjoint(by_uri["f://icons"])
    assert set(report.repaired) == set(by_uri) - {"f://a", "f://whole"}
    assert report.repaired["f://aud"] == "annotations audience, lastModified, priority of the wrong type: dropped"
    assert set(report.withheld) == {"f://noname", "f://numname", "#13", "#14", "#15", "#16"}
    assert report.withheld["f://noname"] == "name is not a string" and report.withheld["#13"] == "uri is not a string"
    assert report.withheld["#15"] == "uri is empty" and report.withheld["#16"] == "not an object"


def test_templates_mistyped_optional_fields_are_dropped_and_mistyped_identities_withheld() -> None:
    items: list[Any] = [
        {"uriTemplate": "f://{id}", "name": "fine", "mimeType": "text/plain"},
        {"uriTemplate": "f://m/{id}", "name": "mime", "mimeType": ["text/plain"], "annotations": {"priority": -1}},
        {"uriTemplate": ["f://{id}"], "name": "listy"},
        {"uriTemplate": "f://n/{id}", "name": None},
    ]
    kept, report = repair.entries("resourceTemplates", items)
    assert [t["name"] for t in kept] == ["fine", "mime"] and kept[0] is items[0]
    assert kept[1] == {"uriTemplate": "f://m/{id}", "name": "mime", "annotations": {}}
    assert report.repaired == {
        "f://m/{id}": "annotations priority of the wrong type: dropped; mimeType is not a string: dropped"
    }
    assert report.withheld == {"#2": "uriTemplate is not a string", "f://n/{id}": "name is not a string"}


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


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_strict_client_lists_prompts_and_resources_despite_one_server_with_bad_ones(mode: str) -> None:
    """The official SDK client validates every prompt, resource and template of a list, in both
    eras: one server's mistyped entry must not make it refuse all of them."""
    bad = fixture_command("--bad-schemas", "--name", "bad")
    servers = {
        "bad": {"command": bad[0], "args": bad[1:]},
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]},
    }
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": servers}) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                prompts = {p.name: p for p in (await client.list_prompts()).prompts}
                resources = {r.name: r for r in (await client.list_resources()).resources}
                templates = {t.name: t for t in (await client.list_resource_templates()).resource_templates}
            assert {"bad__simple", "bad__odd_prompt", "bad__odd_args"} <= set(prompts)
            assert "bad__args_dict" not in prompts and any(n.startswith("demo__") for n in prompts)
            assert prompts["bad__odd_prompt"].description is None
            odd_args = prompts["bad__odd_args"].arguments
            assert odd_args is not None and [a.name for a in odd_args] == ["a"]
            assert {"static", "odd"} <= set(resources)
            assert resources["odd"].size is None and resources["odd"].mime_type is None
            assert resources["odd"].annotations is not None and resources["odd"].annotations.audience == ["user"]
            assert {"item", "odd_item"} <= set(templates) and "numbered" not in templates
            async with httpx.AsyncClient() as http:
                doc = (await http.get(f"{hub.base}/health")).json()
            bad_doc = doc["upstreams"]["bad"]
            assert set(bad_doc["promptRepairs"]["repaired"]) == {"odd_prompt", "odd_args"}
            assert set(bad_doc["promptRepairs"]["withheld"]) == {"args_dict"}
            assert set(bad_doc["resourceRepairs"]["repaired"]) == {"fixture://odd"}
            assert set(bad_doc["resourceRepairs"]["withheld"]) == {"fixture://nameless"}
            assert set(bad_doc["resourceTemplateRepairs"]["repaired"]) == {"fixture://odd/{id}"}
            assert set(bad_doc["resourceTemplateRepairs"]["withheld"]) == {"#1"}  # uriTemplate 5
            demo_doc = doc["upstreams"]["demo"]
            assert (
                demo_doc["promptRepairs"] is demo_doc["resourceRepairs"] is demo_doc["resourceTemplateRepairs"] is None
            )


def test_an_entry_over_max_bytes_is_withheld_of_every_kind_and_said() -> None:
    """One huge definition (a 50 MB description) made every list reply carry it: withheld, and said why."""
    huge = "x" * 5000
    kept, report = repair.tools([*tools_named("small"), {"name": "big", "description": huge}], max_bytes=4096)
    assert [t["name"] for t in kept] == ["small"]
    assert report.oversized == {"big"} and "over maxListItemBytes (4096)" in report.withheld["big"]
    assert repair.tools([{"name": "big", "description": huge}])[1].withheld == {}  # no bound: kept
    for kind, key in (("prompts", "name"), ("resources", "uri"), ("resourceTemplates", "uriTemplate")):
        items = [{"name": "s", key: "small"}, {"name": "b", key: "big", "description": huge}]
        kept, report = repair.entries(kind, items, max_bytes=4096)
        assert [item[key] for item in kept] == ["small"], kind
        assert report.oversized == {"big"} and "over maxListItemBytes" in report.withheld["big"], kind


def tools_named(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "inputSchema": {"type": "object"}} for n in names]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_tool_over_max_list_item_bytes_is_left_out_said_and_refused(mode: str) -> None:
    """A server's huge tool is left out of every list (the others' and its own other tools stay), shown in
    `/health`, and a call to it is refused saying why, in both eras."""
    big = fixture_command("--echo-description", "d" * 5000)
    servers = {
        "big": {"command": big[0], "args": big[1:]},
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]},
    }
    config = {"onemcp": {"limits": {"maxListItemBytes": 4096}}, "mcpServers": servers}
    with anyio.fail_after(30):
        async with running_hub(config) as hub:
            async with Client(hub.url, mode=mode, cache=None) as client:
                listed = {t.name for t in (await client.list_tools()).tools}
                assert "big__echo" not in listed and {"big__sleep", "demo__echo"} <= listed
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("big__echo", {"message": "hi"})
            assert refused.value.error.code == -32602
            assert "withheld: big__echo" in refused.value.error.message
            assert "over maxListItemBytes (4096)" in refused.value.error.message
            async with httpx.AsyncClient() as http:
                doc = (await http.get(f"{hub.base}/health")).json()
            assert "over maxListItemBytes" in doc["upstreams"]["big"]["toolRepairs"]["withheld"]["echo"]
