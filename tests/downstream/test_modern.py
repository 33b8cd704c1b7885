"""The 2026-07-28 era through the hub: the SDK client's default mode, and the wire rules raw."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.protocol import headers as mcp_headers
from support.hub import running_hub
from support.results import text_of

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
V = "2026-07-28"


def config() -> dict[str, Any]:
    cmd = fixture_command()
    return {"mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}, "b": {"command": cmd[0], "args": cmd[1:]}}}


def modern(method: str, rid: Any = 1, meta: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    base = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": {**base, **(meta or {})}}}


def headers(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    out = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": V,
        "mcp-method": method,
    }
    if name is not None:
        out["mcp-name"] = name
    return {**out, **extra}


async def test_sdk_client_default_mode_is_modern_through_the_hub() -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, Client(hub.url, cache=None) as c:
            assert c.protocol_version == V
            names = {t.name for t in (await c.list_tools()).tools}
            assert "a__echo" in names
            assert text_of(await c.call_tool("b__echo", {"message": "modern"})) == "modern"
            result = await c.call_tool("a__progress", {}, progress_callback=on_progress)
            assert not result.is_error
            got = await c.get_prompt("a__with_args", {"topic": "x"})
            assert got.messages
            read = await c.read_resource("b+fixture://static")
            assert str(read.contents[0].uri) == "b+fixture://static"
            with pytest.raises(MCPError) as err:
                await c.call_tool("a__nope", {})
            assert err.value.error.code == -32602


async def test_listen_delivers_list_changed_tagged_with_the_subscription() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, Client(hub.url, cache=None) as c:
            async with c.listen(tools_list_changed=True) as sub:
                assert sub.honored.tools_list_changed
                await c.call_tool("a__add_tool", {"name": "fresh"})
                async for event in sub:
                    assert "ToolsListChanged" in type(event).__name__
                    break
            assert "a__fresh" in {t.name for t in (await c.list_tools()).tools}


async def test_listen_ends_with_its_result_when_the_hub_stops() -> None:
    """A stopping hub ends each listen stream with the listen request's `complete` result."""
    events: list[dict[str, Any]] = []
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            body = modern("subscriptions/listen", rid="L1", notifications={"toolsListChanged": True})
            json_only = headers("subscriptions/listen", accept="application/json")  # a stream it does not take
            refused = await http.post(hub.url, json=body, headers=json_only)
            assert refused.status_code == 406 and refused.json()["id"] == "L1", refused.text
            async with http.stream("POST", hub.url, json=body, headers=headers("subscriptions/listen")) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if events[-1].get("method") == "notifications/subscriptions/acknowledged":
                            hub.server.should_exit = True  # what SIGTERM does
    assert events[0]["method"] == "notifications/subscriptions/acknowledged"
    last = events[-1]
    assert last["id"] == "L1" and last["result"]["resultType"] == "complete"
    assert last["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "L1"
    assert last["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "onemcp"


async def test_discover_and_result_decoration_raw() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json=modern("server/discover"), headers=headers("server/discover"))
            result = r.json()["result"]
            assert r.status_code == 200 and V in result["supportedVersions"]
            assert result["resultType"] == "complete" and result["_meta"]["io.modelcontextprotocol/serverInfo"]
            assert "tools" in result["capabilities"] and "tasks" not in result["capabilities"]
            r = await http.post(hub.url, json=modern("tools/list"), headers=headers("tools/list"))
            listed = r.json()["result"]
            assert (
                listed["resultType"] == "complete"
                and "ttlMs" in listed
                and listed["cacheScope"]
                in (
                    "private",
                    "shared",
                )
            )
            assert listed["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "onemcp"
            call = modern("tools/call", name="a__whoami", arguments={"k": 1})
            r = await http.post(hub.url, json=call, headers=headers("tools/call", "a__whoami"))
            result = r.json()["result"]
            assert result["resultType"] == "complete" and "io.modelcontextprotocol/serverInfo" in result["_meta"]
            forwarded = json.loads(result["content"][0]["text"])
            assert forwarded["arguments"] == {"k": 1}


async def test_modern_wire_errors() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:

            async def post(body: dict[str, Any], hdrs: dict[str, str]) -> httpx.Response:
                return await http.post(hub.url, content=orjson.dumps(body), headers=hdrs)

            r = await post(modern("tools/list"), headers("tools/call"))  # Mcp-Method mismatch
            assert r.status_code == 400 and r.json()["error"]["code"] == -32020
            r = await post(modern("x" * 100_000), headers("tools/list"))  # the body's method is repeated by its start
            message = r.json()["error"]["message"]
            assert r.status_code == 400 and "(100002 characters)" in message and len(message) < 400, message[:300]
            call = modern("tools/call", name="a__echo", arguments={"message": "x"})
            r = await post(call, headers("tools/call"))  # Mcp-Name missing
            assert r.status_code == 400 and r.json()["error"]["code"] == -32020
            r = await post(call, headers("tools/call", "b__echo"))  # Mcp-Name mismatch
            assert r.status_code == 400 and r.json()["error"]["code"] == -32020
            bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            r = await post(bare, headers("tools/list"))  # no _meta
            assert r.status_code == 400 and r.json()["error"]["code"] == -32602
            r = await post(modern("tools/list"), headers("tools/list", **{"mcp-protocol-version": "2099-01-01"}))
            assert r.status_code == 400 and r.json()["error"]["code"] == -32022
            assert V in r.json()["error"]["data"]["supported"]
            other = modern("tools/list", meta={"io.modelcontextprotocol/protocolVersion": "2025-11-25"})
            r = await post(other, headers("tools/list"))  # header and _meta disagree
            assert r.status_code == 400 and r.json()["error"]["code"] == -32020
            for legacy in ("initialize", "ping", "logging/setLevel", "resources/subscribe", "no/such"):
                r = await post(modern(legacy), headers(legacy))
                assert r.status_code == 404 and r.json()["error"]["code"] == -32601, legacy
            r = await http.get(hub.url, headers={"accept": "text/event-stream", "mcp-protocol-version": V})
            assert r.status_code == 405
            r = await http.delete(hub.url, headers={"mcp-protocol-version": V})
            assert r.status_code == 405
            # base64-encoded header values are decoded before comparing
            call = modern("tools/call", name="a__echo", arguments={"message": "x"})
            r = await post(call, headers("tools/call", "=?base64?YV9fZWNobw==?="))
            assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "x"
            # one status per error code, whether the hub answers it itself or routes it (a list, a listen)
            r = await post(modern("tools/list", cursor="nope"), headers("tools/list"))
            assert r.status_code == 400 and r.json()["error"]["code"] == -32602, r.text
            r = await post(modern("subscriptions/listen"), headers("subscriptions/listen"))
            assert r.status_code == 400 and r.json()["error"]["code"] == -32602, r.text
            # ... in Mcp-Name and Mcp-Param-*; Mcp-Method is sent plain (a gateway filters on it as written)
            method_b64 = headers("tools/call", "a__echo", **{"mcp-method": "=?base64?dG9vbHMvY2FsbA==?="})
            r = await post(call, method_b64)
            assert r.status_code == 400 and r.json()["error"]["code"] == -32020


async def test_logs_only_when_the_request_asks_for_a_level() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            call = modern("tools/call", name="a__log", arguments={})
            r = await http.post(hub.url, json=call, headers=headers("tools/call", "a__log"))
            assert r.headers["content-type"] == "application/json"  # no log, no stream
            call = modern("tools/call", meta={"io.modelcontextprotocol/logLevel": "info"}, name="a__log", arguments={})
            r = await http.post(hub.url, json=call, headers=headers("tools/call", "a__log"))
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [orjson.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: ") and x[6:].strip()]
            assert events[0]["method"] == "notifications/message" and events[0]["params"]["logger"].startswith("a")
            assert events[-1]["result"]["resultType"] == "complete"


async def test_closing_the_reply_stream_cancels_the_call_upstream() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            conn = hub.app.hub.pool.connections["a"]
            call = modern("tools/call", name="a__sleep", arguments={"seconds": 30})
            async with anyio.create_task_group() as tg:

                async def doomed() -> None:
                    async with httpx.AsyncClient(timeout=None) as own:
                        await own.post(hub.url, json=call, headers=headers("tools/call", "a__sleep"))

                tg.start_soon(doomed)
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                tg.cancel_scope.cancel()  # the client goes away mid-call
            while conn.in_flight:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            running = modern("tools/call", name="a__running", arguments={})
            while True:
                r = await http.post(hub.url, json=running, headers=headers("tools/call", "a__running"))
                if r.json()["result"]["content"][0]["text"] == "0":
                    break
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline


@pytest.mark.parametrize(
    ("value", "shown", "same"),
    [
        (42, "42", True),
        (42, "42.0", True),  # streamable-http.mdx: compared as numbers
        (42.0, "42", True),
        (1e21, "1000000000000000000000", True),
        (0.1, "0.1", True),
        (42, "43", False),
        (42, "forty-two", False),
        (42, "NaN", False),
        (True, "true", True),
        (True, "1", False),
        ("42", "42.0", False),  # a string argument is compared as written
    ],
)
def test_a_param_header_mirrors_its_argument_numbers_by_value(value: object, shown: str, same: bool) -> None:
    from onemcp.protocol import headers as mcp_headers

    assert mcp_headers.matches_param(value, shown) is same


@pytest.mark.parametrize(
    ("value", "sent"),
    [("echo", "echo"), (" echo", "=?base64?IGVjaG8=?="), ("\u00e9", "=?base64?w6k=?="), ("\ud800", "=?base64?7aCA?=")],
)
def test_a_header_value_is_sent_plain_or_in_base64_a_lone_surrogate_too(value: str, sent: str) -> None:
    """A name JSON may escape as a lone surrogate raised UnicodeEncodeError (it ended `onemcp proxy`)."""
    assert mcp_headers.encode_header(value) == sent
    assert mcp_headers.is_plain(value) is (value == sent)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Bearer abc", True),
        ("a\tb c~", True),
        ("", True),
        ("a\r\nx-evil: 1", False),
        ("a\x00", False),
        ("a\x1b[2J", False),
        ("a\x7f", False),
        ("caf\u00e9", False),
        ("\u2028", False),
    ],
)
def test_a_header_value_is_sendable_as_written_visible_ascii_spaces_and_tabs(value: str, ok: bool) -> None:
    """One rule for the config's headers, a principal's values rendered into them, and h1's last guard."""
    from onemcp.config.values import header_problem

    assert mcp_headers.sendable(value) is ok
    assert (header_problem("X-Key", value) is None) is ok


async def test_the_hub_s_own_refusals_count_alike_in_both_eras() -> None:
    """onemcp_answered_errors_total counts an error the hub answers itself, whichever era asked: a
    2026-07-28 request refused before routing (an unknown or legacy-only method, a bad cursor) was not
    counted, the same request in the 2025-11-25 era was."""
    from support.inprocess import fixture, inprocess_hub

    def answered(text: str) -> dict[tuple[str, str], float]:
        prefix = "onemcp_answered_errors_total{"
        found = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                labels = dict(part.split("=") for part in line[len(prefix) : line.index("}")].split(","))
                found[(labels["method"].strip('"'), labels["code"].strip('"'))] = float(line.split()[-1])
        return found

    with anyio.fail_after(10):
        async with inprocess_hub({"alpha": fixture()}) as h:
            session = await h.session()
            for ask in (session.ask, lambda method, params: h.client.modern(method, **params)):
                await ask("nosuch/method", {})
                await ask("tools/list", {"cursor": "2"})
            _, (modern,) = await h.client.modern("logging/setLevel", level="debug")
            assert modern["error"]["code"] == -32601
            counted = answered(h.app.hub.metrics.render().decode())
    assert counted == {("other", "-32601"): 2, ("tools/list", "-32602"): 2, ("logging/setLevel", "-32601"): 1}


async def test_in_search_exposure_a_tool_found_by_search_is_called_without_its_param_header() -> None:
    """The SDK client mirrors the `x-mcp-header`s its tools/list annotates; in search exposure that list
    is the meta-tools, so it calls a found tool with no `Mcp-Param-*` header: taken (call_tool carries
    the same arguments with none). A header sent is still checked, and a full list still requires it."""
    cmd = fixture_command("--header-tool")
    servers = {"fx": {"command": cmd[0], "args": cmd[1:]}, "b": config()["mcpServers"]["b"]}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers, "onemcp": {"searchCache": False}}) as hub:
            async with Client(f"{hub.url}?exposure=search", mode=V, cache=None) as c:
                found = await c.call_tool("fx__lookup", {"account": "acme"})
                assert (found.is_error, text_of(found)) == (False, '{"account":"acme"}')
            call = modern("tools/call", name="fx__lookup", arguments={"account": "acme"})
            async with httpx.AsyncClient(timeout=DEADLINE) as http:
                wrong = headers("tools/call", "fx__lookup", **{"mcp-param-account": "other"})
                r = await http.post(f"{hub.url}?exposure=search", json=call, headers=wrong)
                assert r.status_code == 400 and "Mcp-Param-Account does not match" in r.json()["error"]["message"]
                r = await http.post(f"{hub.url}?exposure=full", json=call, headers=headers("tools/call", "fx__lookup"))
                assert r.status_code == 400 and "Mcp-Param-Account is missing" in r.json()["error"]["message"]
