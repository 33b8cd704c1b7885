"""The /mcp wire as raw HTTP sees it: status codes, headers, JSON vs SSE, the GET stream."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from onemcp.config.model import HubConfig
from onemcp.hub import replay
from support.hub import HEADERS, INIT, raw_session, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NEEDS_CHROMIUM = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium not installed"
)


def config(**settings: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {
        "mcpServers": {"a": {"command": cmd[0], "args": cmd[1:]}, "b": {"command": cmd[0], "args": cmd[1:]}},
        "onemcp": settings,
    }


def req(method: str, rid: int | str = 7, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


async def test_session_rules() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json=req("tools/list"), headers=HEADERS)
            assert r.status_code == 400 and r.json()["error"]["code"] == -32600
            said = r.json()["error"]["message"]  # it said only "missing Mcp-Session-Id header": curl stopped there
            assert "send initialize first" in said and "MCP-Protocol-Version: 2026-07-28" in said, said
            r = await http.post(hub.url, json=req("tools/list"), headers={**HEADERS, "mcp-session-id": "nope"})
            assert r.status_code == 404
            headers = await raw_session(http, hub.url)
            r = await http.post(hub.url, json=req("ping"), headers=headers)
            assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}
            assert r.headers["content-type"] == "application/json"
            r = await http.delete(hub.url, headers=headers)
            assert r.status_code == 200
            r = await http.post(hub.url, json=req("ping"), headers=headers)
            assert r.status_code == 404


async def test_a_get_without_a_session_is_405_so_probing_clients_move_on() -> None:
    """The Vercel AI SDK GETs /mcp before it initializes (a 405 it takes as "no stream", a 400 it
    reported as an error on every connect); mcp-remote's sse-first falls back to Streamable HTTP
    only on a 405. With a session the GET is the session's stream, as before."""
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.get(hub.url, headers={"accept": "text/event-stream"})
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            assert "/sse" in r.json()["error"]["message"]
            r = await http.get(hub.url, headers={"accept": "text/event-stream", "mcp-session-id": "nope"})
            assert r.status_code == 404  # a session that is not (any more) is still told so
            headers = await raw_session(http, hub.url)
            async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200


async def test_protocol_version_header_is_validated() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            r = await http.post(hub.url, json=req("ping"), headers={**headers, "mcp-protocol-version": "1999-01-01"})
            assert r.status_code == 400 and "1999-01-01" in r.json()["error"]["message"]
            r = await http.post(hub.url, json=req("ping"), headers={**headers, "mcp-protocol-version": "2025-06-18"})
            assert r.status_code == 200


async def test_a_client_that_comes_while_upstreams_start_is_told_what_they_serve() -> None:
    """`initialize` and `server/discover` wait for the upstreams as a first list does (`firstListWait`):
    a client that came at once was told for good that subscriptions and completions did not exist."""
    from downstream.test_modern import headers as modern_headers
    from downstream.test_modern import modern

    cmd = fixture_command()
    late = {"command": "sh", "args": ["-c", 'sleep 0.5; exec "$0" "$@"', *cmd]}  # slow to start (in its own process)
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": late}}, wait=False) as hub, httpx.AsyncClient() as http:
            caps = (await http.post(hub.url, json=INIT, headers=HEADERS)).json()["result"]["capabilities"]
            assert caps["resources"].get("subscribe") is True and "completions" in caps, caps
        async with running_hub({"mcpServers": {"a": late}}, wait=False) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json=modern("server/discover"), headers=modern_headers("server/discover"))
            caps = r.json()["result"]["capabilities"]
            assert caps["resources"].get("subscribe") is True and "completions" in caps, caps


async def test_initialize_negotiates_version_and_advertises_capabilities() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-03-26"}}
            r = await http.post(hub.url, json=init, headers=HEADERS)
            result = r.json()["result"]
            assert result["protocolVersion"] == "2025-03-26"
            assert result["serverInfo"]["name"] == "onemcp"
            caps = result["capabilities"]
            assert caps["tools"] == {"listChanged": True}
            assert caps["resources"]["subscribe"] is True and "completions" in caps
            init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2099-01-01"}}
            r = await http.post(hub.url, json=init, headers=HEADERS)
            assert r.json()["result"]["protocolVersion"] == "2025-11-25"
            sessions = len(hub.app.hub.sessions)
            for field, value, complaint in (
                ("protocolVersion", 20251125, "protocolVersion, a string"),
                ("protocolVersion", None, "protocolVersion, a string"),
                ("capabilities", "all", "capabilities must be an object"),
                ("clientInfo", ["me"], "clientInfo must be an object"),
            ):
                init = {**INIT, "params": {**INIT["params"], field: value}}
                r = await http.post(hub.url, json=init, headers=HEADERS)
                error = r.json()["error"]
                assert error["code"] == -32602 and complaint in error["message"], (field, value, r.text)
                assert "mcp-session-id" not in r.headers
            assert len(hub.app.hub.sessions) == sessions  # no session left behind


async def test_origin_and_host_validation() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "origin": "http://evil.example"})
            assert r.status_code == 403
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "host": "evil.example:80"})
            assert r.status_code == 421
            # trial s39-h16: an operator behind nginx got "Invalid Host header" and nothing in the log: it
            # names the host and the setting that lets it in, the log says it (tests/http/test_guard.py)
            message = r.json()["error"]["message"]
            assert "'evil.example:80'" in message and 'onemcp.allowedHosts (add "evil.example:80"' in message
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "origin": "http://localhost:5173"})
            assert r.status_code == 200


PAGE = "http://127.0.0.1:5173"  # a browser-based MCP client's page, on another origin


def cors_of(r: httpx.Response) -> tuple[str | None, str | None]:
    return r.headers.get("access-control-allow-origin"), r.headers.get("vary")


async def test_a_listed_origin_gets_cors_on_every_mcp_entry_in_both_eras() -> None:
    """A page on an origin allowedOrigins names can use /mcp (both eras) and /sse + /messages: its preflight
    is answered, every answer names its origin; a page on another origin gets nothing it could read."""
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(allowedOrigins=[PAGE])) as hub, httpx.AsyncClient() as http:
            asked = "content-type, mcp-session-id, Mcp-Param-Region, x-other"
            preflight = {
                "origin": PAGE,
                "access-control-request-method": "POST",
                "access-control-request-headers": asked,
            }
            for path in ("/mcp", "/sse", "/messages"):
                r = await http.options(f"{hub.base}{path}", headers=preflight)
                assert r.status_code == 204, (path, r.text)
                assert cors_of(r) == (PAGE, "origin")
                assert r.headers["access-control-allow-methods"] == "POST, GET, DELETE"
                allowed = r.headers["access-control-allow-headers"].split(", ")
                assert {"authorization", "mcp-session-id", "mcp-protocol-version", "last-event-id"} <= set(allowed)
                assert {"mcp-method", "mcp-name", "mcp-param-region"} <= set(allowed) and "x-other" not in allowed
                assert int(r.headers["access-control-max-age"]) > 0
                assert "access-control-allow-credentials" not in r.headers
            # the answers: legacy era (a session, its DELETE), modern era, legacy SSE
            page = {**HEADERS, "origin": PAGE}
            r = await http.post(hub.url, json=INIT, headers=page)
            assert r.status_code == 200 and cors_of(r) == (PAGE, "origin")
            assert "mcp-session-id" in r.headers["access-control-expose-headers"]
            assert "www-authenticate" in r.headers["access-control-expose-headers"]
            r = await http.delete(hub.url, headers={**page, "mcp-session-id": r.headers["mcp-session-id"]})
            assert r.status_code in (200, 204) and cors_of(r) == (PAGE, "origin")
            meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
            meta["io.modelcontextprotocol/clientCapabilities"] = {}  # type: ignore[assignment]
            body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}
            modern = {**page, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
            r = await http.post(hub.url, json=body, headers=modern)
            assert r.status_code == 200 and "tools" in r.json()["result"] and cors_of(r) == (PAGE, "origin")
            async with http.stream(
                "GET", f"{hub.base}/sse", headers={"accept": "text/event-stream", "origin": PAGE}
            ) as s:
                assert s.status_code == 200 and cors_of(s) == (PAGE, "origin")
                lines = s.aiter_lines()
                endpoint = ""
                while not endpoint.startswith("data:"):
                    endpoint = await anext(lines)
                messages = hub.base + endpoint.removeprefix("data:").strip()
                r = await http.post(messages, json=INIT, headers=page)
                assert r.status_code == 202 and cors_of(r) == (PAGE, "origin")
            # a loopback page not listed passes the Origin check, but is given nothing to read
            other = "http://127.0.0.1:5174"
            r = await http.options(hub.url, headers={**preflight, "origin": other})
            assert r.status_code == 403 and "allowedOrigins" in r.json()["error"]["message"]
            assert cors_of(r)[0] is None
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "origin": other})
            assert r.status_code == 200 and cors_of(r)[0] is None
            # the admin API is not opened to the listed page (docs/deployment.md)
            r = await http.options(f"{hub.base}/api/v1/servers", headers=preflight)
            assert cors_of(r)[0] is None


BROWSER_CLIENT = """async ([hub, initialize]) => {
    const headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"};
    const post = (body, extra) =>
        fetch(hub, {method: "POST", headers: {...headers, ...extra}, body: JSON.stringify(body)});
    try {
        const init = await post(initialize, {});
        const sid = init.headers.get("mcp-session-id");
        const legacy = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"};
        await post({jsonrpc: "2.0", method: "notifications/initialized"}, legacy);
        const tools = await (await post({jsonrpc: "2.0", id: 2, method: "tools/list"}, legacy)).json();
        const meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}};
        const modern = await post({jsonrpc: "2.0", id: 3, method: "tools/list", params: {_meta: meta}},
                                  {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"});
        const ended = await fetch(hub, {method: "DELETE", headers: legacy});
        return {sid: !!sid, tools: tools.result.tools.length, modern: (await modern.json()).result.tools.length,
                ended: ended.status};
    } catch (e) {
        return {error: String(e)};
    }
}"""


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """A page on another 127.0.0.1 port (a real server: Chromium lets only a page it fetched from loopback
    reach loopback)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<p>a browser-based MCP client</p>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@NEEDS_CHROMIUM
async def test_a_browser_page_on_a_listed_origin_uses_the_hub_with_fetch() -> None:
    """Chromium, on a page of another 127.0.0.1 port: with its origin listed, fetch initializes, reads the
    session id, lists tools in both eras and ends the session. On a page of a port not listed, the browser
    gives the script nothing."""
    from playwright.async_api import async_playwright

    with page_server() as listed, page_server() as unlisted, anyio.fail_after(120):
        async with running_hub(config(allowedOrigins=[listed])) as hub, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                await page.goto(f"{listed}/")
                outcome = await page.evaluate(BROWSER_CLIENT, [hub.url, INIT])
                assert outcome.get("sid") is True and outcome["tools"] > 0 and outcome["modern"] > 0, outcome
                assert outcome["ended"] in (200, 204), outcome
                await page.goto(f"{unlisted}/")
                outcome = await page.evaluate(BROWSER_CLIENT, [hub.url, INIT])
                assert "Failed to fetch" in outcome.get("error", ""), outcome
            finally:
                await browser.close()


async def test_a_listed_page_reads_the_challenge_of_a_hub_with_auth(tmp_path: Path) -> None:
    """A preflight carries no credential: it is answered before admission; the 401 carries CORS and exposes
    WWW-Authenticate, so the page can find the hub's authorization; its key then works."""
    settings = {"allowedOrigins": [PAGE], "auth": {"apiKeys": True}}
    path = tmp_path / "mcp.json"
    path.write_text(orjson.dumps(config(**settings)).decode())
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(**settings), config_path=path) as hub, httpx.AsyncClient() as http:
            asked = {
                "origin": PAGE,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization",
            }
            r = await http.options(hub.url, headers=asked)
            assert r.status_code == 204 and cors_of(r) == (PAGE, "origin")
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "origin": PAGE})
            assert r.status_code == 401 and cors_of(r) == (PAGE, "origin") and "www-authenticate" in r.headers
            assert "www-authenticate" in r.headers["access-control-expose-headers"]
            key = KeyStore(tmp_path / "keys.db").create("page", ["mcp"])
            r = await http.post(
                hub.url, json=INIT, headers={**HEADERS, "origin": PAGE, "authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200 and cors_of(r) == (PAGE, "origin")


async def test_a_wildcard_origin_opens_no_cors_and_no_origin_is_reflected() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(allowedOrigins=["*"])) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "origin": "https://anyone.example"})
            assert r.status_code == 200 and cors_of(r)[0] is None
            preflight = {"origin": "https://anyone.example", "access-control-request-method": "POST"}
            r = await http.options(hub.url, headers=preflight)
            assert r.status_code == 403 and cors_of(r)[0] is None


async def test_the_protected_resource_metadata_is_readable_from_any_page() -> None:
    """A browser-based client discovers the hub's authorization from its page: public metadata, `*`."""
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            url = f"{hub.base}/.well-known/oauth-protected-resource/mcp"
            r = await http.options(url, headers={"origin": PAGE, "access-control-request-method": "GET"})
            assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
            r = await http.get(url, headers={"origin": PAGE})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


async def test_a_cross_site_request_without_origin_opens_nothing() -> None:
    """A cross-site `<img src=".../sse">` carries no Origin (the Origin check passes it) but does carry
    Sec-Fetch-Site: it opened a legacy session. MCP entries and APIs refuse it; the pages stay linkable."""
    blind = {"sec-fetch-site": "cross-site", "accept": "text/event-stream"}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            for method, path in (("GET", "/sse"), ("POST", "/mcp"), ("GET", "/api/v1/servers"), ("GET", "/me/secrets")):
                r = await http.request(method, f"{hub.base}{path}", headers=blind)
                assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"], (path, r.text)
            assert len(hub.app.hub.sessions) == 0  # no legacy session was opened
            r = await http.get(f"{hub.base}/ui", headers={"sec-fetch-site": "cross-site"})
            assert r.status_code == 200  # a link to the console from elsewhere
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, "sec-fetch-site": "same-origin"})
            assert r.status_code == 200


async def test_upstream_oauth_listing_and_logout_are_behind_the_origin_check() -> None:
    evil = {"origin": "http://evil.example"}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.get(f"{hub.base}/oauth/upstream", headers=evil)
            assert r.status_code == 403 and "Origin" in r.json()["error"]["message"]
            r = await http.delete(f"{hub.base}/oauth/upstream/a", headers=evil)
            assert r.status_code == 403 and "Origin" in r.json()["error"]["message"]
            r = await http.get(f"{hub.base}/oauth/upstream")
            assert r.status_code == 200 and "upstreams" in r.json()


async def test_bad_bodies_get_clear_errors() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(maxBodyBytes=2048)) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            r = await http.post(hub.url, content=b"{not json", headers=headers)
            assert r.status_code == 400 and r.json()["error"]["code"] == -32700
            r = await http.post(hub.url, content=b"[1,2]", headers=headers)
            assert r.status_code == 400 and r.json()["error"]["code"] == -32600
            r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": True, "method": "ping"}, headers=headers)
            assert r.status_code == 400
            big = req("tools/call", name="a__echo", arguments={"message": "x" * 5000})
            r = await http.post(hub.url, json=big, headers=headers)
            assert r.status_code == 413
            r = await http.post(hub.url, content=b"ping", headers={**headers, "content-type": "text/plain"})
            assert r.status_code == 415
            for ctype in ("application/jsonx", "application/json; charset=latin1"):  # a prefix is not the type
                r = await http.post(hub.url, json=req("ping"), headers={**headers, "content-type": ctype})
                assert r.status_code == 415, ctype
            for ctype in ("Application/JSON", 'application/json; charset="UTF-8"'):
                r = await http.post(hub.url, json=req("ping"), headers={**headers, "content-type": ctype})
                assert r.status_code == 200, ctype
            r = await http.post(hub.url, json=req("no/such/method"), headers=headers)
            assert r.status_code == 200 and r.json()["error"]["code"] == -32601
            r = await http.post(hub.url, json=req("tools/call", name=5), headers=headers)
            assert r.json()["error"]["code"] == -32602
            # still serving after all that
            r = await http.post(
                hub.url, json=req("tools/call", name="a__echo", arguments={"message": "ok"}), headers=headers
            )
            assert r.json()["result"]["content"][0]["text"] == "ok"


async def test_related_messages_switch_the_reply_to_sse() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            call = req("tools/call", name="a__progress", arguments={}, _meta={"progressToken": "tok-1"})
            r = await http.post(hub.url, json=call, headers=headers)
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [m for _, m in sse_events(r.text.splitlines())]  # (the priming event has no data)
            progress = [e for e in events if e.get("method") == "notifications/progress"]
            assert [p["params"]["progressToken"] for p in progress] == ["tok-1"] * 3
            assert events[-1]["id"] == 7 and "result" in events[-1]


async def test_get_stream_delivers_list_changed() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            r = await http.get(hub.url, headers={**headers, "accept": "application/json"})
            assert r.status_code == 406
            async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                add = req("tools/call", name="b__add_tool", arguments={"name": "late"})
                r = await http.post(hub.url, json=add, headers=headers)
                assert "result" in r.json()
                async for line in stream.aiter_lines():
                    if line.startswith("data: ") and line[6:].strip():
                        assert orjson.loads(line[6:])["method"] == "notifications/tools/list_changed"
                        break
            r = await http.post(hub.url, json=req("tools/list"), headers=headers)
            assert "b__late" in {t["name"] for t in r.json()["result"]["tools"]}


async def test_cancelled_request_is_never_answered() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            replies: list[httpx.Response] = []

            async def slow_call() -> None:
                call = req("tools/call", rid=99, name="a__sleep", arguments={"seconds": 30})
                replies.append(await http.post(hub.url, json=call, headers=headers))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_call)
                conn = hub.app.hub.pool.connections["a"]
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
                r = await http.post(hub.url, json=cancel, headers=headers)
                assert r.status_code == 202
            assert "result" not in replies[0].text and "error" not in replies[0].text
            assert conn.in_flight == 0
            # the upstream stopped the work too: nothing is left running in the fixture
            running = req("tools/call", name="a__running", arguments={})
            while (await http.post(hub.url, json=running, headers=headers)).json()["result"]["content"][0][
                "text"
            ] != "0":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the cancel is a notification)


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_a_delete_answers_the_session_s_calls_in_flight_and_cancels_them_upstream(
    era: str, streamed: bool
) -> None:
    # A direct SDK server (TypeScript or Python) just ends the reply stream: the client's call then waits
    # for its own timeout (60 s). The hub answers it at once, and the upstream is told (either era).
    cmd = fixture_command(*(("--modern-raw",) if era == "modern" else ()))
    server = {"command": cmd[0], "args": cmd[1:], "protocol": era}
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub({"mcpServers": {"a": server, "b": server}}) as hub,
            httpx.AsyncClient(timeout=None) as http,
        ):
            conn = hub.app.hub.pool.connections["a"]
            assert conn.era == era
            headers = await raw_session(http, hub.url)
            if streamed:  # progress first: the reply is an SSE stream
                progress = {"steps": 1000, "pause": 0.05}
                params = {"name": "a__progress", "arguments": progress, "_meta": {"progressToken": 1}}
            else:
                params = {"name": "a__sleep", "arguments": {"seconds": 30}}
            replies: list[httpx.Response] = []

            async def slow_call() -> None:
                replies.append(await http.post(hub.url, json=req("tools/call", rid=99, **params), headers=headers))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_call)
                while conn.in_flight == 0:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                assert (await http.delete(hub.url, headers=headers)).status_code == 200
            reply = replies[0]
            assert reply.status_code == 200
            if streamed:
                assert reply.headers["content-type"].startswith("text/event-stream")
                last = [line for line in reply.text.splitlines() if line.startswith("data: {")][-1]
                answer = orjson.loads(last.removeprefix("data: "))
            else:
                answer = reply.json()
            assert answer["id"] == 99 and answer["error"]["code"] == -32000
            assert "session ended" in answer["error"]["message"]
            assert conn.in_flight == 0
            # the upstream stopped the work too
            other = await raw_session(http, hub.url)
            running = req("tools/call", name="a__running", arguments={})
            while (await http.post(hub.url, json=running, headers=other)).json()["result"]["content"][0]["text"] != "0":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the cancel is a notification)


async def test_idle_sessions_expire() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config(sessionIdleTimeout=0.2)) as hub, httpx.AsyncClient() as http:
            headers = await raw_session(http, hub.url)
            while len(hub.app.hub.sessions):  # (a request would keep it alive)
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            r = await http.post(hub.url, json=req("ping"), headers=headers)
            assert r.status_code == 404


async def test_health_endpoints() -> None:
    cfg = config()
    cfg["mcpServers"]["dead"] = {"command": "/nonexistent/onemcp-test-binary"}
    cfg["mcpServers"]["lost"] = {"command": sys.executable, "cwd": "/nonexistent/onemcp-test-dir"}
    cfg["mcpServers"]["off"] = {"command": "whatever", "disabled": True}
    with anyio.fail_after(DEADLINE):
        async with running_hub(cfg) as hub, httpx.AsyncClient() as http:
            doc = (await http.get(f"{hub.base}/health")).json()
            assert doc["status"] == "degraded"
            assert doc["upstreams"]["a"]["state"] == "ready" and doc["upstreams"]["a"]["tools"] > 5
            assert doc["upstreams"]["dead"]["state"] == "failed"
            assert "command not found" in doc["upstreams"]["dead"]["lastError"]
            assert doc["upstreams"]["lost"]["lastError"].endswith(
                "working directory not found: /nonexistent/onemcp-test-dir"
            )
            while doc["upstreams"]["dead"]["supervisor"] != "command-not-found":  # not retried: nothing would change
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                doc = (await http.get(f"{hub.base}/health")).json()
            assert doc["upstreams"]["dead"]["nextAttempt"] is None and doc["upstreams"]["dead"]["restarts"] == 0
            assert doc["upstreams"]["off"]["state"] == "disabled"
            assert (await http.get(f"{hub.base}/health/live")).status_code == 200
            assert (await http.get(f"{hub.base}/health/ready")).status_code == 200


async def test_a_probe_answers_a_rebound_host_naming_no_server() -> None:
    """The probes skip the Host check (a balancer's may name the pod), but a DNS-rebound page gets a
    loopback hub's answer too: /health/ready named every configured server and its state
    (`{"upstreams": {"alpha": "ready"}}`) to any web page, and /health/live an internal failure's text.
    A Host the guard refuses now gets the status alone; a loopback Host the same body as before."""
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            rebound = {"host": "evil.example:80"}
            r = await http.get(f"{hub.base}/health/ready", headers=rebound)
            assert (r.status_code, r.json()) == (200, {"ready": True})
            r = await http.get(f"{hub.base}/health/live", headers=rebound)
            assert (r.status_code, r.json()) == (200, {"live": True})
            hub.app.failed = "internal error: /home/someone/secret-project/mcp.json"
            r = await http.get(f"{hub.base}/health/live", headers=rebound)
            assert (r.status_code, r.json()) == (503, {"live": False})
            r = await http.get(f"{hub.base}/health/live")
            assert r.json()["error"] == hub.app.failed
            r = await http.get(f"{hub.base}/health/ready")
            assert r.json()["upstreams"] == dict.fromkeys(config()["mcpServers"], "ready")


async def test_ready_is_503_until_upstreams_were_tried() -> None:
    cmd = fixture_command("--hang-on-start")
    cfg = {"mcpServers": {"slow": {"command": cmd[0], "args": cmd[1:], "startupTimeout": 60}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(cfg, wait=False) as hub, httpx.AsyncClient() as http:
            r = await http.get(f"{hub.base}/health/ready")
            assert r.status_code == 503 and r.json()["upstreams"]["slow"] == "starting"
            # a reload removing the one server the start-up still waits for ends the wait
            await hub.app.hub.apply_config(HubConfig.model_validate({"mcpServers": {}}))
            while "slow" in hub.app.hub.pool.slots:  # removed in the background
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            r = await http.get(f"{hub.base}/health/ready")
            assert (r.status_code, r.json()) == (200, {"ready": True, "upstreams": {}})


async def test_ready_stays_200_while_a_server_added_changed_or_restarted_later_starts() -> None:
    """Only the start-up waits: a server a reload adds or changes, or an operator restarts, later shows as
    starting while the hub stays ready (replicas reading one edit would otherwise all drop out at once)."""
    hang = fixture_command("--hang-on-start")
    slow = {"command": hang[0], "args": hang[1:], "startupTimeout": 30}
    cfg = config()
    with anyio.fail_after(DEADLINE):
        async with running_hub(cfg) as hub, httpx.AsyncClient() as http:
            pool = hub.app.hub.pool

            async def ready_while_starting(name: str) -> None:
                while (conn := pool.get(name)) is None or conn.state != "starting":  # a change: in the background
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                r = await http.get(f"{hub.base}/health/ready")
                assert (r.status_code, r.json()["ready"], r.json()["upstreams"][name]) == (200, True, "starting")

            cfg["mcpServers"]["slow"] = slow  # added
            await hub.app.hub.apply_config(HubConfig.model_validate(cfg))
            await ready_while_starting("slow")
            cfg["mcpServers"]["a"] = slow  # changed
            await hub.app.hub.apply_config(HubConfig.model_validate(cfg))
            await ready_while_starting("a")
            await hub.app.hub.restart_server("slow")  # restarted: a new connection, never tried
            await ready_while_starting("slow")
            assert (await http.get(f"{hub.base}/health")).json()["status"] == "degraded"


async def test_a_server_that_never_answers_says_why_through_its_retries() -> None:
    cmd = fixture_command("--hang-on-start")
    cfg = {"mcpServers": {"slow": {"command": cmd[0], "args": cmd[1:], "startupTimeout": 0.3}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(cfg, wait=False) as hub, httpx.AsyncClient() as http:
            while True:  # the second attempt is starting: the first one's failure is still shown
                doc = (await http.get(f"{hub.base}/health")).json()
                slow = doc["upstreams"]["slow"]
                if slow["state"] == "starting" and slow["restarts"] >= 1:
                    break
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            assert doc["status"] == "degraded"
            assert slow["lastError"].startswith("did not start within 0.3s (attempt ")


def sse_events(lines: list[str]) -> list[tuple[str | None, dict[str, Any]]]:
    """(event id, message) for every data event in raw SSE lines."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    event_id: str | None = None
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: ") and line[6:].strip():
            out.append((event_id, orjson.loads(line[6:])))
        elif not line:
            event_id = None
    return out


async def test_dropped_reply_stream_is_resumed_with_last_event_id() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            call = req(
                "tools/call",
                rid="r1",
                name="a__progress",
                arguments={"steps": 2, "pause": 0.5},
                _meta={"progressToken": 5},
            )
            seen: list[str] = []
            async with http.stream("POST", hub.url, json=call, headers=headers) as reply:
                assert reply.headers["content-type"].startswith("text/event-stream")
                async for line in reply.aiter_lines():
                    seen.append(line)
                    if line.startswith("retry: "):
                        assert int(line[7:]) > 0
                    if sse_events(seen):
                        break  # got the first progress event: drop the stream mid-call
            last_id, first = sse_events(seen)[0]
            assert first["method"] == "notifications/progress" and last_id is not None
            resumed = await http.get(
                hub.url, headers={**headers, "accept": "text/event-stream", "last-event-id": last_id}
            )
            events = sse_events(resumed.text.splitlines())
            methods = [m.get("method") for _, m in events]
            assert methods[:-1] == ["notifications/progress"]  # the second step only: no duplicate
            final = events[-1][1]
            assert final["id"] == "r1" and final["result"]["content"][0]["text"] == "progress done"


async def test_get_stream_is_primed_and_resumable() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = {**(await raw_session(http, hub.url)), "accept": "text/event-stream"}
            lines: list[str] = []
            async with http.stream("GET", hub.url, headers=headers) as stream:
                add = req("tools/call", name="b__add_tool", arguments={"name": "one"})
                await http.post(hub.url, json=add, headers={**headers, "accept": "application/json, text/event-stream"})
                async for line in stream.aiter_lines():
                    lines.append(line)
                    if sse_events(lines):
                        break
            assert lines[0].startswith("id: ") and lines[0].endswith("-0")  # the priming event
            last_id = sse_events(lines)[0][0]
            assert last_id is not None
            # a second change while no stream is open is queued, then delivered after the resume point
            add = req("tools/call", name="b__add_tool", arguments={"name": "two"})
            await http.post(hub.url, json=add, headers={**headers, "accept": "application/json, text/event-stream"})
            got: list[str] = []
            async with http.stream("GET", hub.url, headers={**headers, "last-event-id": last_id}) as stream:
                async for line in stream.aiter_lines():
                    got.append(line)
                    if sse_events(got):
                        break
            (event_id, msg), *_ = sse_events(got)
            assert msg["method"] == "notifications/tools/list_changed" and event_id != last_id


async def test_streams_ask_the_client_to_wait_stream_retry_before_reconnecting() -> None:
    # 1000 ms had the SDK clients (two attempts that far apart) lose their GET stream for good over an
    # `onemcp restart`, which keeps the port closed 2-10 s
    async def priming_retry(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
        async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("retry: "):
                    return line
        raise AssertionError("no retry field")

    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            assert await priming_retry(http, hub.url, await raw_session(http, hub.url)) == "retry: 5000"
            await hub.app.hub.apply_config(HubConfig.model_validate(config(streamRetry=2.5)))
            headers = await raw_session(http, hub.url)  # a new session takes it
            assert await priming_retry(http, hub.url, headers) == "retry: 2500"
            call = req("tools/call", name="a__progress", arguments={"steps": 1}, _meta={"progressToken": 1})
            reply = await http.post(hub.url, json=call, headers=headers)
            assert "retry: 2500" in reply.text.splitlines()  # a POST's reply stream too


async def test_a_hub_that_fails_while_serving_is_not_live_and_stops_its_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task of the hub ending on an internal error leaves no process that looks healthy with a dead
    hub inside: /health/live says 503 and the server is told to stop, for a supervisor to restart it."""
    from onemcp.app import HubServer, OneMcpApp
    from onemcp.config.model import HubConfig
    from onemcp.hub.core import Hub

    go = anyio.Event()

    async def broken(self: Hub) -> None:
        await go.wait()
        raise RuntimeError("injected")

    monkeypatch.setattr(Hub, "_reap_instances", broken)
    app = OneMcpApp(HubConfig.model_validate({"mcpServers": {}}))
    server = HubServer(app.server_config())
    to_app, inbox = anyio.create_memory_object_stream[Any](10)
    outbox, from_app = anyio.create_memory_object_stream[Any](10)

    async def lifespan() -> None:
        async def send(message: Any) -> None:
            await outbox.send(message)

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.receive, send)

    async def live() -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": "/health/live", "raw_path": b"/health/live",
                 "query_string": b"", "headers": [(b"host", b"127.0.0.1")]}  # fmt: skip
        await app(scope, receive, send)
        return sent[0]["status"], orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    with anyio.fail_after(DEADLINE):
        async with to_app, inbox, outbox, from_app, anyio.create_task_group() as tg:
            tg.start_soon(lifespan)
            await to_app.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"
            assert await live() == (200, {"live": True})
            assert not server.should_exit
            go.set()
            assert (await from_app.receive())["type"] == "lifespan.shutdown.failed"
            status, doc = await live()
            assert status == 503 and doc["live"] is False and "injected" in doc["error"]
            assert server.should_exit


def test_a_last_event_id_of_thousands_of_digits_finds_nothing_and_breaks_nothing() -> None:
    """Python refuses to read an int of more than 4,300 digits: that was a 500 and a traceback."""
    store = replay.StreamStore()
    stream = store.open("g")
    stream.add({"jsonrpc": "2.0", "method": "notifications/message", "params": {}})
    assert stream.priming().startswith(b"id: g1-0\n")
    assert store.find("g1-0") is not None
    assert store.find("g1-" + "9" * 5000) is None


def test_events_kept_for_replay_are_bounded_in_bytes_not_only_in_number() -> None:
    """A message may be megabytes: a session keeps at most replay.MAX_BYTES of events to replay,
    the oldest forgotten first, but never the newest reply or request of a live stream (one may be
    following it; a notification was sent live)."""
    store = replay.StreamStore()
    big = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * (1024 * 1024)}}
    done = store.open("r")
    done.add(big)
    done.finish()
    live = store.open("g")
    for _ in range(3 * replay.MAX_BYTES // (1024 * 1024)):
        live.add(big)
    assert store.bytes <= replay.MAX_BYTES
    assert store.bytes == sum(len(e) for s in (done, live) for _, e in s.events)
    assert not done.events and live.after(live.seq - 1)  # the finished stream went first; the newest stays
    huge = store.open("r")
    huge.add(
        {"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage", "params": {"x": "y" * 2 * replay.MAX_BYTES}}
    )
    assert (
        len(huge.events) == 1 and not live.events
    )  # over the budget: a live stream's request stays, not a notification
    for _ in range(replay.MAX_STREAMS):  # finished streams are forgotten, never the live GET stream
        store.open("r").finish()
    assert live.store is store and store.find(f"{live.id}-{live.seq}") is not None
    live.add(big)
    assert store.bytes == sum(len(e) for s in store._streams.values() for _, e in s.events)


async def test_a_session_keeps_a_bounded_client_declaration() -> None:
    """Each session holds (and saves) its client's capabilities and clientInfo: a client that sends
    megabytes of them is refused at initialize, and holds no session."""
    from onemcp.hub.session import MAX_CLIENT_STATE

    bulky = {**INIT["params"], "capabilities": {"experimental": {"x": "y" * MAX_CLIENT_STATE}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.post(hub.url, json={**INIT, "params": bulky}, headers=HEADERS)
            assert r.json()["error"]["code"] == -32602 and str(MAX_CLIENT_STATE) in r.json()["error"]["message"]
            assert "mcp-session-id" not in r.headers and len(hub.app.hub.sessions) == 0
            headers = await raw_session(http, hub.url)  # a usual declaration is taken
            assert (await http.post(hub.url, json=req("ping"), headers=headers)).status_code == 200


async def test_a_declaration_of_many_small_values_is_refused_where_it_is_kept() -> None:
    """s37 h4: within MAX_CLIENT_STATE bytes, 20,000 empty objects in a clientInfo took 1.5 MB a session as
    Python objects (10,000 sessions: 15 GB). Past MAX_CLIENT_VALUES values an initialize is -32602, and so
    is a 2026-07-28 subscriptions/listen (its stream holds its envelope as long); a plain request is not."""
    from onemcp.hub.session import MAX_CLIENT_STATE, MAX_CLIENT_VALUES

    many: dict[str, Any] = {"name": "t", "version": "0", "x": [{} for _ in range(MAX_CLIENT_VALUES)]}
    assert len(orjson.dumps(many)) < MAX_CLIENT_STATE
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": many,
    }
    modern = {**HEADERS, "mcp-protocol-version": "2026-07-28"}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            r = await http.post(
                hub.url, json={**INIT, "params": {**INIT["params"], "clientInfo": many}}, headers=HEADERS
            )
            error = r.json()["error"]
            assert error["code"] == -32602 and f"more than {MAX_CLIENT_VALUES} JSON values" in error["message"], error
            assert "mcp-session-id" not in r.headers and len(hub.app.hub.sessions) == 0
            listen = {"jsonrpc": "2.0", "id": 2, "method": "subscriptions/listen"}
            listen["params"] = {"notifications": {"toolsListChanged": True}, "_meta": meta}
            r = await http.post(hub.url, json=listen, headers={**modern, "mcp-method": "subscriptions/listen"})
            assert r.json()["error"]["code"] == -32602, r.text
            discover = {"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": meta}}
            r = await http.post(hub.url, json=discover, headers={**modern, "mcp-method": "server/discover"})
            assert r.json()["result"]["resultType"] == "complete", r.text


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
@pytest.mark.parametrize(
    ("accept", "reply_type"),
    [
        ("application/json", "application/json"),  # progress cannot come first: the reply alone, as JSON
        ("application/*", "application/json"),  # a media range that covers JSON (RFC 9110 12.5.1)
        ("text/event-stream", "text/event-stream"),  # the reply on a stream, the one type it takes
        ("text/event-stream, application/json;q=0", "text/event-stream"),
        ("image/png", None),  # neither: 406
    ],
)
async def test_a_reply_comes_in_a_type_the_client_accepts(era: str, accept: str, reply_type: str | None) -> None:
    from downstream.test_modern import headers as modern_headers
    from downstream.test_modern import modern

    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient(timeout=None) as http:
            meta = {"progressToken": "tok-1"}
            if era == "legacy":
                sent = {**await raw_session(http, hub.url), "accept": accept}
                call = req("tools/call", name="a__progress", arguments={}, _meta=meta)
            else:
                sent = modern_headers("tools/call", "a__progress", accept=accept)
                call = modern("tools/call", 7, meta=meta, name="a__progress", arguments={})
            r = await http.post(hub.url, json=call, headers=sent)
            if reply_type is None:
                assert r.status_code == 406, r.text
                return
            assert r.status_code == 200 and r.headers["content-type"].startswith(reply_type), (r.headers, r.text)
            if reply_type == "application/json":
                assert r.json()["id"] == 7 and "result" in r.json()
            else:
                events = [m for _, m in sse_events(r.text.splitlines())]
                assert events[-1]["id"] == 7 and "result" in events[-1]


async def test_a_client_that_takes_only_sse_gets_every_reply_as_an_event() -> None:
    """Not only routed calls: `initialize`, the lists and `server/discover`, which the hub answers
    itself, come as one event on a stream too (a review found them JSON)."""
    from downstream.test_modern import headers as modern_headers
    from downstream.test_modern import modern

    sse_only = "text/event-stream"
    with anyio.fail_after(DEADLINE):
        async with running_hub(config()) as hub, httpx.AsyncClient() as http:
            replies = [await http.post(hub.url, json=INIT, headers={**HEADERS, "accept": sse_only})]
            session = {**HEADERS, "accept": sse_only, "mcp-session-id": replies[0].headers["mcp-session-id"]}
            replies.append(await http.post(hub.url, json=req("tools/list"), headers=session))
            for method in ("server/discover", "tools/list"):
                body, sent = modern(method, 7), modern_headers(method, accept=sse_only)
                replies.append(await http.post(hub.url, json=body, headers=sent))
    for r in replies:
        assert r.status_code == 200 and r.headers["content-type"].startswith(sse_only), (r.headers, r.text)
        events = [m for _, m in sse_events(r.text.splitlines())]
        assert "result" in events[-1], events


async def test_a_server_whose_circuit_is_open_makes_the_hub_degraded() -> None:
    """An upstream that is connected but hung (it answers no call and no ping: its breaker opened) serves
    nothing: every call to it fails at once. /health said "ok" (its state stays "ready"); now "degraded",
    as the onemcp_upstream_breaker_open gauge says, and "ok" again once the breaker closes."""
    import time

    from support.inprocess import fixture, inprocess_hub

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture(), "b": fixture()}) as h:
            breaker = h.app.hub.pool.slots["a"].breaker

            async def health() -> dict[str, Any]:
                _, (doc,) = await h.client.request("GET", path="/health")
                return doc

            assert (await health())["status"] == "ok"
            for _ in range(breaker.threshold):
                breaker.record(False)  # as `Pool.judge` records a call that no answer or ping followed
            doc = await health()
            assert (doc["status"], doc["upstreams"]["a"]["state"], doc["upstreams"]["a"]["breaker"]) == (
                "degraded", "ready", "open"
            )  # fmt: skip
            breaker.opened_at = time.monotonic() - breaker.cooldown  # its cooldown is over: half-open, probing
            assert (await health())["status"] == "degraded"
            breaker.record(True)  # the probe answered
            assert (await health())["status"] == "ok"


HUGE_ERROR = r"""
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" in m:
        error = {"code": -32000, "message": "no " * 70000}
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": error}), flush=True)
"""


async def test_an_upstream_s_huge_error_is_shown_by_its_start() -> None:
    """A server answering initialize with a 210,000-character error: /health's lastError (and every client's
    error naming the server, and the log) carried all of it, on each scrape. Now its first 2,000 characters
    and its length."""
    cfg = {"mcpServers": {"big": {"command": sys.executable, "args": ["-c", HUGE_ERROR], "protocol": "legacy"}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(cfg, wait=False) as hub, httpx.AsyncClient() as http:
            while not (said := (await http.get(f"{hub.base}/health")).json()["upstreams"]["big"]["lastError"]):
                await anyio.sleep(0.05)  # allowed-sleep: polling for the failure, within fail_after
    assert said.startswith("initialize failed: no no ") and said.endswith(" characters)") and len(said) < 2100


async def test_a_get_stream_does_not_hold_the_message_it_sent_while_it_waits() -> None:
    """h6: a session's GET stream kept the last message it wrote (parsed, and its SSE bytes) while it
    waited for the next: one 20 MB log line from an upstream, read by 20 listening sessions, held a
    real hub at 876 MB until something else was said to them (56 MB with this)."""
    import gc

    from support.inprocess import fixture, inprocess_hub

    def alive(text: str) -> list[object]:
        return [
            o
            for o in gc.get_objects()
            if type(o) is dict
            and o.get("method") == "notifications/message"
            and o.get("params", {}).get("data") == text
        ]

    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture()}) as h:
            session = await h.session()
            async with session.listen() as stream:
                call = {"name": "log", "arguments": {"detached": True, "message": "said once"}}
                assert "result" in await session.ask("tools/call", call)
                heard = await stream.message()
                assert heard["params"]["data"] == "said once"
                del heard
                await anyio.wait_all_tasks_blocked()  # the stream waits for the session's next message
                assert alive("said once") == []
