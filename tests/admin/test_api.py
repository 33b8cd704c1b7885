"""The admin REST API: every endpoint for every kind of caller, and what each action really does.

A hub on a loopback port with a config file (so edits and presets have somewhere to go) and two
fixture servers. With `auth.apiKeys` on, callers are: an admin key, an `operator` (read-only)
key, an `mcp`-only key, and no credential; without auth, the loopback operator (anonymous).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.admin.api import ROUTES
from onemcp.auth.keys import KeyStore
from onemcp.observability.events import MAX_PAYLOAD
from onemcp.reload import Reloader
from support.audit import audit_lines
from support.hub import RunningHub, running_hub

pytestmark = pytest.mark.anyio
MODERN_FIXTURE = str(Path(__file__).resolve().parents[1] / "fixtures" / "modern_server.py")
DEADLINE = 60.0


def config(auth: bool) -> dict[str, Any]:
    fx = fixture_command()
    doc: dict[str, Any] = {
        "mcpServers": {
            "alpha": {"command": fx[0], "args": [*fx[1:], "--name", "alpha"], "tags": ["a"]},
            "beta": {"command": fx[0], "args": [*fx[1:], "--name", "beta"]},
        }
    }
    if auth:
        doc["onemcp"] = {"auth": {"apiKeys": True}}
    return doc


@asynccontextmanager
async def hub_at(tmp_path: Path, *, auth: bool) -> AsyncIterator[tuple[RunningHub, dict[str, str]]]:
    path = tmp_path / "mcp.json"
    doc = config(auth)
    path.write_text(json.dumps(doc))
    keys: dict[str, str] = {}
    if auth:
        store = KeyStore(tmp_path / "keys.db")
        keys = {
            "admin": store.create("admin", ["admin"]),
            "operator": store.create("op", ["operator"]),
            "mcp": store.create("user", ["mcp"]),
            "narrow": store.create("narrow", ["server:alpha", "tool:beta/echo"]),
        }
    async with running_hub(doc, config_path=path) as hub:
        yield hub, keys


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


# (method, path, body) that is safe to send to every route: each reaches its handler
def sample(method: str, pattern: str) -> tuple[str, str, Any]:
    path = pattern.replace("{name}", "gamma" if method == "DELETE" else "alpha")  # gamma: the one POST added
    path = path.replace("{server}", "alpha").replace("{tool}", "echo")  # pins: approving what did not change is 200
    if pattern == "/tools/{name}/call":
        path = "/tools/alpha__echo/call"
        return method, path, {"arguments": {"message": "hi"}}
    if pattern == "/presets/{name}":
        return method, "/presets/team", {"filter": "a"} if method == "PUT" else None
    if pattern == "/servers" and method == "POST":
        fx = fixture_command()
        return method, path, {"name": "gamma", "server": {"command": fx[0], "args": fx[1:]}}
    if pattern == "/events/payloads":
        return method, path, {"on": False}
    if pattern == "/user-secrets" and method == "DELETE":  # the value `seeded` stores
        return method, f"{path}?principal=key:seeded&name=SEEDED", None
    return method, path, None


def seeded(hub: RunningHub) -> None:
    """A principal's value for DELETE /user-secrets to forget."""
    hub.app.hub.user_secrets.set("key:seeded", "SEEDED", "seeded-value-0123456789")


@pytest.mark.parametrize("caller", ["admin", "operator", "mcp", "narrow", "none"])
async def test_every_endpoint_for_every_caller(tmp_path: Path, caller: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=True) as (hub, keys), httpx.AsyncClient(timeout=30) as http:
            for route in ROUTES:
                if route.stream:
                    continue
                method, path, body = sample(route.method, route.pattern)
                seeded(hub)
                r = await http.request(method, f"{hub.base}/api/v1{path}", json=body, headers=bearer(keys.get(caller)))
                if caller == "none":
                    assert r.status_code == 401, (route, r.text)
                elif caller in ("mcp", "narrow") or (caller == "operator" and route.change):
                    assert r.status_code == 403, (route, r.text)
                    assert r.json()["scope"] == ("admin" if route.change else "operator")
                else:
                    assert r.status_code == 200, (route.method, path, r.text)


async def test_without_auth_the_loopback_operator_may_do_everything(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=False) as (hub, _), httpx.AsyncClient(timeout=30) as http:
            for route in ROUTES:
                if route.stream:
                    continue
                method, path, body = sample(route.method, route.pattern)
                seeded(hub)
                r = await http.request(method, f"{hub.base}/api/v1{path}", json=body)
                assert r.status_code == 200, (route.method, path, r.text)


async def test_what_the_actions_do(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            summary = (await http.get("/")).json()
            assert summary["servers"] == {"ready": 2} and summary["memoryMiB"] > 0
            servers = {s["name"]: s for s in (await http.get("/servers")).json()["servers"]}
            assert servers["alpha"]["state"] == "ready" and servers["alpha"]["toolTokens"] > 0
            pid = servers["alpha"]["pid"]
            # restart: a new process, ready again
            with audit_lines() as lines:
                assert (await http.post("/servers/alpha/restart")).status_code == 200
            assert any("action=restart target=alpha" in line for line in lines)
            while (s := (await http.get("/servers/alpha")).json())["state"] != "ready" or s["pid"] == pid:
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            # tools: search, schema, tokens; call one
            found = (await http.get("/tools", params={"q": "echo a message", "server": "beta"})).json()
            assert found["tools"] and all(t["server"] == "beta" for t in found["tools"])
            assert found["tools"][0]["inputSchema"]["type"] == "object" and found["tools"][0]["tokens"] > 0
            beta = (await http.get("/tools", params={"server": "beta"})).json()
            one = (await http.get("/tools", params={"q": "echo a message", "server": "beta", "limit": "1"})).json()
            assert len(one["tools"]) == 1 and one["total"] == beta["total"] == len(beta["tools"]) > 1  # searched
            for params, status, complaint in (
                ({"limit": "many"}, 400, "limit"),
                ({"limit": "0"}, 400, "limit"),
                ({"limit": "1001"}, 400, "limit"),
                ({"query": "echo"}, 400, "unknown parameter(s): query"),
                ({"q": "echo", "server": "gamma"}, 404, "no server 'gamma'"),
            ):
                refused = await http.get("/tools", params=params)
                assert refused.status_code == status and complaint in refused.json()["error"], (params, refused.text)
            assert len((await http.get("/tools", params={"limit": "1"})).json()["tools"]) == 1
            for path in ("/servers", "/servers/alpha", "/sessions", "/pins", "/presets"):
                refused = await http.get(path, params={"server": "beta"})  # a filter these routes do not have
                assert refused.status_code == 400 and "expected: none" in refused.json()["error"], (path, refused.text)
            called = (await http.post("/tools/beta__echo/call", json={"arguments": {"message": "hello"}})).json()
            assert called["result"]["content"][0]["text"] == "hello"
            missing = (await http.post("/tools/beta__nope/call", json={"arguments": {}})).json()
            assert "not found" in missing["error"]["message"]
            # config edits through the CLI's code path: file changed, backed up, applied
            assert (await http.post("/servers/beta/disable")).json()["applied"] is True
            assert json.loads((tmp_path / "mcp.json").read_text())["mcpServers"]["beta"]["disabled"] is True
            assert list((tmp_path / "backups").iterdir())
            assert (await http.get("/servers")).json()["servers"][1]["state"] == "disabled"
            bad = await http.post("/servers", json={"name": "bad name!", "server": {"command": "x"}})
            assert bad.status_code == 400 and "not changed" in bad.json()["error"]
            # presets: the CLI's validation
            assert (await http.put("/presets/team", json={"filter": "a", "exposure": "search"})).status_code == 200
            assert hub.app.hub.presets == {"team": "a"}
            wrong = await http.put("/presets/team", json={"filter": "a and ("})
            assert wrong.status_code == 400 and "invalid filter" in wrong.json()["error"]
            unknown = await http.put("/presets/team", json={"filter": "a", "colour": "red"})
            assert unknown.status_code == 400 and "colour" in unknown.json()["error"]
            assert (await http.delete("/presets/team")).status_code == 200 and hub.app.hub.presets == {}
            # errors are clear
            assert (await http.get("/servers/nope")).status_code == 404
            assert (await http.get("/nope")).status_code == 404
            assert (await http.delete("/")).status_code == 405
            assert (await http.post("/servers", content=b"{not json")).status_code == 400
            doc = (await http.get("/openapi.json")).json()
            assert doc["openapi"] == "3.1.0" and "/api/v1/servers/{name}/restart" in doc["paths"]
            added = doc["paths"]["/api/v1/servers"]["post"]["requestBody"]  # the bodies are described (were not)
            assert added["required"] and added["content"]["application/json"]["schema"]["required"] == [
                "name",
                "server",
            ]


async def test_a_reload_says_whether_it_applied_found_nothing_to_do_or_was_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /reload of a file that is the config served answered "applied": true with 0 reloads: now it
    says it is unchanged; an edit is applied; a broken file is refused and the running config kept."""
    path = tmp_path / "mcp.json"
    monkeypatch.setattr(Reloader, "_watch", lambda self: anyio.sleep_forever())  # only the API reloads here
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            with audit_lines() as lines:
                same = (await http.post("/reload")).json()
            assert same["applied"] is False and same["unchanged"] is True, same
            assert same["detail"] == "unchanged: the file is the same as the config served"
            assert same["reload"]["reloads"] == 0 and same["reload"]["lastError"] is None
            assert any("action=reload" in line and "outcome=unchanged" in line for line in lines)
            doc = json.loads(path.read_text())
            doc["mcpServers"]["beta"]["disabled"] = True
            path.write_text(json.dumps(doc))
            changed = (await http.post("/reload")).json()
            assert changed["applied"] is True and changed["unchanged"] is False and "detail" not in changed
            assert changed["reload"]["reloads"] == 1 and changed["reload"]["lastChanges"]
            path.write_text("{not json")
            refused = (await http.post("/reload")).json()
            assert refused["applied"] is False and refused["unchanged"] is False and "detail" not in refused
            assert refused["reload"]["lastError"] and refused["reload"]["reloads"] == 1


async def test_an_edit_that_changes_nothing_says_so_and_is_not_applied(tmp_path: Path) -> None:
    """Disabling a server twice: the second answered "changed": false with "applied": true though nothing
    was written or reloaded. Now it says unchanged (not applied, not refused), as POST /reload does."""
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            first = (await http.post("/servers/beta/disable")).json()
            assert first["changed"] is True and first["applied"] is True and first["unchanged"] is False, first
            assert "detail" not in first and first["backup"]
            written = (tmp_path / "mcp.json").read_text()
            for path in ("/servers/beta/disable", "/servers/alpha/enable"):
                with audit_lines() as lines:
                    again = (await http.post(path)).json()
                assert again["changed"] is False and again["applied"] is False and again["unchanged"] is True, again
                assert again["detail"] == "unchanged: the file already says so (nothing written, nothing reloaded)"
                assert again["backup"] is None
                assert any(f"target={path.split('/')[2]} outcome=unchanged" in line for line in lines), lines
            assert (tmp_path / "mcp.json").read_text() == written


async def test_a_body_that_says_what_the_route_does_not_take_is_refused(tmp_path: Path) -> None:
    """Nothing is accepted silently: an unknown field, a `replace` that is not a boolean, a body on a
    route that takes none, a new ${VAR} the hub's environment does not set (the hub could not load it)."""
    fx = fixture_command()
    entry = {"command": fx[0], "args": fx[1:]}
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            before = (tmp_path / "mcp.json").read_bytes()
            for method, route, body, complaint in (
                ("POST", "/servers", {"name": "n1", "server": entry, "bogus": 1}, "unknown field(s): bogus"),
                ("POST", "/servers", {"name": "alpha", "server": entry, "replace": "yes"}, "'replace' must be"),
                ("POST", "/servers/beta/disable", {"now": True}, "unknown field(s): now"),
                ("POST", "/servers/alpha/restart", {"hard": True}, "unknown field(s): hard"),
                ("POST", "/reload", {"force": True}, "unknown field(s): force"),
                ("POST", "/tools/beta__echo/call", {"arguments": {}, "bogus": 1}, "unknown field(s): bogus"),
                ("POST", "/events/payloads", {"on": True, "bogus": 1}, "unknown field(s): bogus"),
                (
                    "POST",
                    "/servers",
                    {"name": "n4", "server": {**entry, "env": {"A": "${ONEMCP_AUDIT_UNSET}"}}},
                    "ONEMCP_AUDIT_UNSET is not set",
                ),
            ):
                refused = await http.request(method, route, json=body)
                assert refused.status_code == 400 and complaint in refused.json()["error"], (route, refused.text)
            assert (tmp_path / "mcp.json").read_bytes() == before  # nothing was written
            assert hub.app.hub.config.servers["beta"].disabled is False


async def test_the_event_stream_carries_calls_without_arguments(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=False) as (hub, _), httpx.AsyncClient(timeout=30) as http:
            assert not hub.app.hub.bus.active  # nobody watching: the call path publishes nothing
            seen: list[dict[str, Any]] = []
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    async with http.stream("GET", f"{hub.base}/api/v1/events") as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: "):
                                event = json.loads(line[6:])
                                if event["kind"] == "call":
                                    seen.append(event)
                                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                while not hub.app.hub.bus.active:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                await http.post(f"{hub.base}/api/v1/tools/alpha__echo/call", json={"arguments": {"message": "secret"}})
            (call,) = seen
            assert call["server"] == "alpha" and call["tool"] == "echo" and call["outcome"] == "ok"
            assert "secret" not in json.dumps(call) and "arguments" not in call
            while hub.app.hub.bus.active:
                await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the watcher left)


async def test_failed_calls_are_kept_for_recent_errors_while_nobody_watches(tmp_path: Path) -> None:
    """An operator looks after the fact: `recentErrors` has the failed calls made while nobody watched
    (successes cost nothing then), and `events.watchers` counts the watchers."""
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=False) as (hub, _), httpx.AsyncClient(timeout=30) as http:
            assert not hub.app.hub.bus.active
            api = f"{hub.base}/api/v1"
            await http.post(f"{api}/tools/alpha__echo/call", json={"arguments": {"message": "fine"}})
            await http.post(f"{api}/tools/alpha__fail/call", json={"arguments": {"why": "secret-argument"}})
            errors = (await http.get(f"{api}/servers/alpha")).json()["recentErrors"]
            assert [(e["tool"], e["outcome"]) for e in errors] == [("fail", "tool_error")], errors
            assert "secret-argument" not in json.dumps(errors) and "arguments" not in errors[0]
            assert (await http.get(f"{api}/servers/beta")).json()["recentErrors"] == []
            watchers = (await http.get(f"{api}/")).json()["events"]["watchers"]
            assert type(watchers) is int and watchers == 0  # a count (was a boolean)


async def test_call_events_with_payloads_carry_at_most_max_payload_bytes_of_arguments(tmp_path: Path) -> None:
    """Hunt B (limits): with payloads on, each `call` event held the call's whole arguments, in the history (200)
    and in each watcher's queue (1,024): 800 calls of 2 MB from any `mcp` client, with a watcher that did not
    read, grew the hub to 1.6 GB (5 GB at the 4 MiB body limit), held after the watcher left."""
    big = "x" * (4 * MAX_PAYLOAD)
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=False) as (hub, _), httpx.AsyncClient(timeout=30) as http:
            r = await http.post(f"{hub.base}/api/v1/events/payloads", json={"on": True})
            assert r.status_code == 200
            seen: list[dict[str, Any]] = []
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    async with http.stream("GET", f"{hub.base}/api/v1/events") as r:
                        async for line in r.aiter_lines():
                            if line.startswith("data: ") and (event := json.loads(line[6:]))["kind"] == "call":
                                seen.append(event)
                                if len(seen) == 2:
                                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                while not hub.app.hub.bus.active:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
                for message in ("small", big):
                    call = {"arguments": {"message": message}}
                    assert (await http.post(f"{hub.base}/api/v1/tools/alpha__echo/call", json=call)).status_code == 200
            small, cut = seen
            assert small["arguments"] == {"message": "small"}  # as sent
            assert cut["arguments"]["truncated"] is True and cut["arguments"]["bytes"] > 4 * MAX_PAYLOAD
            assert len(json.dumps(cut["arguments"])) < MAX_PAYLOAD + 200
            assert all(len(json.dumps(e)) < 2 * MAX_PAYLOAD for e in hub.app.hub.bus.recent)


async def test_a_tool_of_a_2026_upstream_is_called_from_the_api(tmp_path: Path) -> None:
    """A call from the API (the console, the TUI) to a 2026-07-28 upstream carries the envelope that
    era needs, as any client's call does (it was refused for missing params._meta)."""
    doc = {"mcpServers": {"m": {"command": sys.executable, "args": [MODERN_FIXTURE]}}}
    (tmp_path / "mcp.json").write_text(json.dumps(doc))
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc, config_path=tmp_path / "mcp.json") as hub,
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            assert hub.app.hub.pool.connections["m"].era == "modern"
            called = (await http.post("/tools/echo/call", json={"arguments": {"word": "hi"}})).json()
            assert "result" in called and "hi" in json.dumps(called["result"]), called


async def test_odd_inputs_get_their_status_not_a_500(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            r = await http.get("/tools", params={"limit": "²"})  # a digit to str.isdigit, not to int()
            assert r.status_code == 400 and "limit" in r.json()["error"]
            for method, path in (
                ("DELETE", "/servers/nosuch"),
                ("POST", "/servers/nosuch/enable"),
                ("POST", "/servers/nosuch/disable"),
                ("POST", "/servers/nosuch/restart"),
            ):
                r = await http.request(method, path)
                assert r.status_code == 404 and "nosuch" in r.json()["error"], (method, path, r.text)
            (tmp_path / "presets.json").write_text("{ half written")
            r = await http.delete("/presets/zz")
            assert r.status_code == 400 and "presets.json" in r.json()["error"], r.text
            r = await http.get(f"{hub.base}/ui/static/%00.js")
            assert r.status_code == 404


async def test_the_apis_config_edits_keep_the_files_comments(tmp_path: Path) -> None:
    """cli hunt F6: the admin API edits mcp.json as `onemcp mcp add` does, and so dropped its comments."""
    path = tmp_path / "mcp.json"
    doc = config(False)
    text = "// my hub\n" + json.dumps(doc, indent=2).replace('"mcpServers": {', '"mcpServers": {\n    // "off": {},')
    path.write_text(text)
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc, config_path=path) as hub,
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            added = await http.post("/servers", json={"name": "gamma", "server": doc["mcpServers"]["alpha"]})
            assert added.status_code == 200, added.text
            assert path.read_text().startswith('// my hub\n{\n  "mcpServers": {\n    // "off": {},\n')
            assert (await http.delete("/servers/gamma")).status_code == 200
    assert path.read_text() == text


async def test_sessions_show_each_clients_identity_cut_short(tmp_path: Path) -> None:
    """s37 h4: GET /sessions showed each session's whole clientInfo (up to 64 KiB each: 10,000 sessions, 640 MB
    in one answer, which any client could make so). It shows the identity's strings (name, title, version,
    description, websiteUrl), each cut to SHOWN_CHARS."""
    from onemcp.hub.session import SHOWN_CHARS

    info = {"name": "n" * 60_000, "version": "1.0", "icons": [{"src": "data:" + "x" * 100}], "extra": {"a": 1}}
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": info}
    with anyio.fail_after(DEADLINE):
        async with hub_at(tmp_path, auth=False) as (hub, _), httpx.AsyncClient(base_url=hub.base) as http:
            made = await http.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
                headers={"accept": "application/json, text/event-stream", "content-type": "application/json"},
            )
            assert made.status_code == 200, made.text
            (shown,) = (await http.get("/api/v1/sessions")).json()["sessions"]
    assert shown["client"] == {"name": "n" * (SHOWN_CHARS - 1) + "…", "version": "1.0"}, shown["client"]


@pytest.mark.parametrize("edit", ["preset", "server"])
async def test_an_edit_waiting_for_anothers_lock_leaves_the_hub_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """Another editor (the CLI) holds the file's lock: the API's edit waits for it (up to 10 s) on a worker
    thread, the hub answering meanwhile, and goes through once the lock is free. (It waited on the event
    loop: the whole hub stood still, then the edit failed, 500, the lock still held.)"""
    import contextlib
    import threading

    from onemcp.config import files
    from onemcp.config.presets import presets_path

    refused = threading.Event()
    real_try_lock = files.try_lock

    def try_lock(fd: int) -> bool:
        got = real_try_lock(fd)
        if not got:
            refused.set()
        return got

    monkeypatch.setattr(files, "try_lock", try_lock)
    with anyio.fail_after(DEADLINE):
        async with (
            hub_at(tmp_path, auth=False) as (hub, _),
            httpx.AsyncClient(timeout=30, base_url=f"{hub.base}/api/v1") as http,
        ):
            path = presets_path(tmp_path / "mcp.json") if edit == "preset" else tmp_path / "mcp.json"
            request = (
                ("PUT", "/presets/team", {"filter": "a"})
                if edit == "preset"
                else ("POST", "/servers/beta/disable", None)
            )
            answers: list[httpx.Response] = []
            with contextlib.ExitStack() as other_editor:
                other_editor.enter_context(files.locked(path))

                async def change() -> None:
                    answers.append(await http.request(request[0], request[1], json=request[2]))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(change)
                    assert await anyio.to_thread.run_sync(refused.wait, 10)  # the edit waits for the lock
                    assert (await http.get("/servers/alpha")).status_code == 200  # the hub answers meanwhile
                    assert not answers
                    other_editor.close()  # the other editor is done
            assert answers[0].status_code == 200, answers[0].text
