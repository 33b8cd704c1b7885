"""Template servers end to end: real `server-memory` instances per project, the official SDK client in both eras.

A hub on a loopback port with a `memory` template whose memory file lives in the client's
project (`{{ project.path }}/memory.jsonl`) and the fixture as a static server. Contexts are
signed with the hub's own key the way `onemcp proxy` and the agent CLI sign them. Checks: two
projects, two instances and two files; the same project shares one; per-session instances are
isolated; idle instances are reaped; `maxInstances` refuses clearly; forged and unsigned contexts
are refused over HTTP and see static servers only without a context; a template that does not
render names the field; a reload restarts only instances whose rendered config changed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import httpx2
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from fixtures.launch import fixture_command
from onemcp.config.context import SIGNATURE_HEADER, Signer, encode, project
from onemcp.config.model import HubConfig
from support.audit import audit_lines
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.real_servers import memory_stdio_command
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 90.0
Mode = Literal["legacy", "2026-07-28"]


def memory_template(**options: Any) -> dict[str, Any]:
    cmd = memory_stdio_command()
    return {
        "command": cmd[0],
        "args": cmd[1:],
        "env": {"MEMORY_FILE_PATH": "{{ project.path }}/memory.jsonl"},
        "template": options,
    }


def config(templates: dict[str, Any]) -> dict[str, Any]:
    fx = fixture_command()
    return {"mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}}, "mcpTemplates": templates}


@asynccontextmanager
async def hub_with(
    tmp_path: Path, templates: dict[str, Any], settings: dict[str, Any] | None = None
) -> AsyncIterator[RunningHub]:
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    doc = {**config(templates), "onemcp": settings or {}}
    path.write_text(json.dumps(doc))
    async with running_hub(doc, config_path=path) as hub:
        yield hub


def context_headers(hub: RunningHub, folder: Path) -> dict[str, str]:
    secret = hub.app.hub.context_secret
    assert secret is not None
    return Signer({"project": project(folder)}, secret).headers()


@asynccontextmanager
async def client(hub: RunningHub, folder: Path, mode: Mode = "legacy", **options: Any) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=context_headers(hub, folder)) as http:
        async with Client(streamable_http_client(hub.url, http_client=http), mode=mode, cache=None, **options) as c:
            yield c


async def remember(c: Client, name: str) -> None:
    entity = {"name": name, "entityType": "person", "observations": [f"{name} was here"]}
    result = await c.call_tool("memory__create_entities", {"entities": [entity]})
    assert not result.is_error, result


def project_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_two_projects_get_two_instances_and_one_project_shares_one(tmp_path: Path, mode: Mode) -> None:
    a, b = project_dir(tmp_path, "alpha"), project_dir(tmp_path, "beta")
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"memory": memory_template()}) as hub:
            async with client(hub, a, mode) as in_a, client(hub, b, mode) as in_b:
                names = {t.name for t in (await in_a.list_tools()).tools}
                assert {"memory__create_entities", "fx__echo"} <= names
                await remember(in_a, "Ada")
                await remember(in_b, "Bob")
                async with client(hub, a, mode) as again_in_a:
                    graph = text_of(await again_in_a.call_tool("memory__read_graph", {}))
                    assert "Ada" in graph and "Bob" not in graph
            running = hub.app.hub.instances.running()
            assert sorted(i.summary["name"] for i in running) == ["alpha", "beta"]  # two, not three
            assert "Ada" in (a / "memory.jsonl").read_text() and "Bob" not in (a / "memory.jsonl").read_text()
            assert "Bob" in (b / "memory.jsonl").read_text() and "Ada" not in (b / "memory.jsonl").read_text()
            async with httpx.AsyncClient() as http:
                health = (await http.get(f"{hub.base}/health")).json()
            assert {i["context"]["name"] for i in health["instances"]} == {"alpha", "beta"}
            assert all(i["running"] and i["startSeconds"] is not None for i in health["instances"])


async def test_per_session_instances_are_isolated(tmp_path: Path) -> None:
    a = project_dir(tmp_path, "alpha")
    template = memory_template(shareable=False)
    template["env"] = {"MEMORY_FILE_PATH": "{{ project.path }}/{{ session.id }}.jsonl"}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"memory": template}) as hub:
            async with client(hub, a) as one, client(hub, a) as two:
                await remember(one, "Ada")
                await remember(two, "Bob")
                first = text_of(await one.call_tool("memory__read_graph", {}))
                second = text_of(await two.call_tool("memory__read_graph", {}))
                assert "Ada" in first and "Bob" not in first
                assert "Bob" in second and "Ada" not in second
                assert len(hub.app.hub.instances.running()) == 2


async def test_an_idle_instance_is_reaped(tmp_path: Path) -> None:
    a = project_dir(tmp_path, "alpha")
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"memory": memory_template(idleTimeout=0.2)}) as hub:
            async with client(hub, a) as c:
                await remember(c, "Ada")
                assert len(hub.app.hub.instances.running()) == 1
            # the session ended (the client sent DELETE): nobody holds the instance, it idles out
            while hub.app.hub.instances.instances:
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            assert not any("@" in name for name in hub.app.hub.pool.slots)
            async with client(hub, a) as c:  # and comes back on demand, with its file
                assert "Ada" in text_of(await c.call_tool("memory__read_graph", {}))


async def test_a_quota_on_a_template_counts_its_instances_calls(tmp_path: Path) -> None:
    fx = fixture_command()
    quotas = [{"tool": "fxt/echo", "calls": 2, "window": 3600}]
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": {"command": fx[0], "args": fx[1:]}}, {"auth": {"quotas": quotas}}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha")) as c:
                results = [await c.call_tool("fxt__echo", {"message": "q"}) for _ in range(3)]
    assert [r.is_error for r in results] == [False, False, True]
    assert "Quota exceeded for fxt/echo" in text_of(results[2])


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_instances_template_uris_are_read_under_the_templates_name(tmp_path: Path, mode: Mode) -> None:
    """`fxt+fixture://item/3`, expanded from the instance's listed resource template, is read from the
    requester's own instance (it was "Resource not found": only listed URIs had a candidate)."""
    fx = fixture_command()
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": {"command": fx[0], "args": fx[1:]}}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha"), mode) as c:
                templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
                assert "fxt+fixture://item/{id}" in templates
                read = await c.read_resource("fxt+fixture://item/3")
                assert [getattr(r, "text", None) for r in read.contents] == ["item 3"]
                if mode == "legacy":
                    await c.subscribe_resource("fxt+fixture://item/3")


async def test_max_instances_refuses_with_a_clear_error(tmp_path: Path) -> None:
    a, b = project_dir(tmp_path, "alpha"), project_dir(tmp_path, "beta")
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"memory": memory_template(maxInstances=1)}) as hub:
            async with client(hub, a) as in_a:
                await remember(in_a, "Ada")
                async with client(hub, b) as in_b:
                    with pytest.raises(MCPError, match="maxInstances") as refused:
                        await in_b.list_tools()
                    assert "'memory' already runs 1 instances" in str(refused.value)
            assert len(hub.app.hub.instances.running()) == 1


async def raw_initialize(hub: RunningHub, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(hub.url, json=INIT, headers={**HEADERS, **headers})


async def test_forged_and_unsigned_contexts_are_refused_over_http(tmp_path: Path) -> None:
    a = project_dir(tmp_path, "alpha")
    evil = {"project": {"path": "/etc"}}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"memory": memory_template()}) as hub:
            forged = encode(evil, b"not the hub's key, but long enough to sign with")
            with audit_lines() as lines:
                r = await raw_initialize(hub, forged)
            assert r.status_code == 403 and "does not verify" in r.text
            assert any("auth denied" in line and "op=context" in line for line in lines), lines
            unsigned = encode(evil, None)
            r = await raw_initialize(hub, unsigned)
            assert r.status_code == 403 and "must be signed" in r.text
            tampered = context_headers(hub, a)
            tampered[SIGNATURE_HEADER] = tampered[SIGNATURE_HEADER][::-1]
            assert (await raw_initialize(hub, tampered)).status_code == 403
            # no context: the static servers only, no instance started
            async with Client(hub.url, mode="legacy", cache=None) as plain:
                names = {t.name for t in (await plain.list_tools()).tools}
            assert "fx__echo" in names and not any(n.startswith("memory__") for n in names)
            assert not hub.app.hub.instances.instances


async def test_a_template_that_does_not_render_names_the_field(tmp_path: Path) -> None:
    a = project_dir(tmp_path, "alpha")
    fx = fixture_command()
    template = {"command": fx[0], "args": [*fx[1:], "--name", "{{ project.custom.database }}"]}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"db": template}) as hub:
            r = await raw_initialize(hub, context_headers(hub, a))
            assert r.status_code == 400
            message = r.json()["error"]["message"]
            assert f"mcpTemplates.db.args[{len(fx)}]" in message and "database" in message, message
            (a / ".onemcprc").write_text(json.dumps({"context": {"database": "orders"}}))
            r = await raw_initialize(hub, context_headers(hub, a))
            assert r.status_code == 200, r.text


def pids_by_project(hub: RunningHub) -> dict[str, int]:
    out = {}
    for instance in hub.app.hub.instances.running():
        conn = hub.app.hub.pool.get(instance.id)
        assert conn is not None
        out[instance.summary["name"]] = getattr(conn.transport, "pid", 0)
    return out


async def test_editing_a_template_restarts_only_the_instances_whose_config_changed(tmp_path: Path) -> None:
    a, b = project_dir(tmp_path, "alpha"), project_dir(tmp_path, "beta")
    fx = fixture_command()
    before = {"command": fx[0], "args": [*fx[1:], "--name", "{{ project.name }}"], "env": {"MARK": ""}}
    after = {**before, "env": {"MARK": "{{ 'v2' if project.name == 'beta' else '' }}"}}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": before}) as hub:
            async with client(hub, a) as in_a, client(hub, b) as in_b:
                await in_a.list_tools()
                await in_b.list_tools()
                pids = pids_by_project(hub)
                await hub.app.hub.apply_config(HubConfig.model_validate(config({"fxt": after})))
                while len(hub.app.hub.instances.running()) != 2 or any(
                    hub.app.hub.pool.get(i.id) is None or hub.app.hub.pool.get(i.id).state != "ready"  # type: ignore[union-attr]
                    for i in hub.app.hub.instances.running()
                ):
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                now = pids_by_project(hub)
                assert now["alpha"] == pids["alpha"]  # rendered the same: untouched
                assert now["beta"] != pids["beta"]  # rendered differently: a new process
                result = await in_b.call_tool("fxt__echo", {"message": "still here"})
                assert text_of(result) == "still here"


async def touched_once_ready(c: Client, uri: str) -> None:
    """Touch `uri` on the instance until it is back and says it was touched (its subscriber heard it)."""
    said = ""
    while said != f"touched {uri}":
        await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
        try:
            said = text_of(await c.call_tool("fxt__touch", {"uri": uri}))
        except MCPError:
            continue  # its tools are back once it is ready


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_reload_that_replaces_an_instance_keeps_the_sessions_subscriptions(tmp_path: Path, mode: Mode) -> None:
    """The session's (or open listen's) new instance is asked for the updates it held on the old one
    (they were dropped silently: the new process said "not subscribed")."""
    fx = fixture_command()
    uri = "fixture://item/3"
    before = {"command": fx[0], "args": fx[1:], "env": {"MARK": ""}}
    after = {**before, "env": {"MARK": "v2"}}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": before}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha"), mode) as c, AsyncExitStack() as stack:
                if mode == "legacy":
                    await c.subscribe_resource(f"fxt+{uri}")
                else:
                    sub = await stack.enter_async_context(c.listen(resource_subscriptions=[f"fxt+{uri}"]))
                    assert sub.honored.resource_subscriptions == [f"fxt+{uri}"]
                assert text_of(await c.call_tool("fxt__touch", {"uri": uri})) == f"touched {uri}"
                (old,) = hub.app.hub.instances.running()
                await hub.app.hub.apply_config(HubConfig.model_validate(config({"fxt": after})))
                await touched_once_ready(c, uri)  # the new instance starts, then is asked again
                assert [i.id for i in hub.app.hub.instances.running()] != [old.id]


async def test_views_tool_rules_search_and_metrics_apply_to_instances(tmp_path: Path) -> None:
    a = project_dir(tmp_path, "alpha")
    fx = fixture_command()
    template = {
        "command": fx[0],
        "args": [*fx[1:], "--name", "{{ project.name }}"],
        "tags": ["team", "{{ project.environment }}"],
        "toolAliases": {"echo": "say"},
        "disabledTools": ["echo_args"],
    }
    (a / ".onemcprc").write_text(json.dumps({"environment": "staging"}))
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": template}) as hub:
            headers = context_headers(hub, a)
            async with httpx2.AsyncClient(headers=headers) as http:

                async def names(query: str) -> set[str]:
                    url = f"{hub.url}?{query}" if query else hub.url
                    async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                        return {t.name for t in (await c.list_tools()).tools}

                everything = await names("")
                assert "fxt__say" in everything and "fxt__echo" not in everything  # the alias
                assert not any(n.startswith("fxt__echo_args") for n in everything)  # disabledTools
                assert "fxt__say" in await names("tags=staging")  # the rendered tag
                assert not any(n.startswith("fxt__") for n in await names("tags=prod"))
                url = f"{hub.url}?exposure=search"
                async with Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as c:
                    found = text_of(await c.call_tool("search_tools", {"query": "echo a message back", "limit": 10}))
                    assert "fxt__say" in found
            # a client without a context finds none of it, by list or by search
            async with Client(f"{hub.url}?exposure=search", mode="legacy", cache=None) as plain:
                found = text_of(await plain.call_tool("search_tools", {"query": "echo a message back", "limit": 10}))
                assert "fxt__" not in found
                through = await plain.call_tool("call_tool", {"name": "fxt__say", "arguments": {"message": "x"}})
                assert through.is_error and "Tool not found: fxt__say" in text_of(through)  # a tool error: fixable
                with pytest.raises(MCPError, match="Tool not found: fxt__say"):
                    await plain.call_tool("fxt__say", {"message": "x"})
            async with httpx.AsyncClient() as http_plain:
                metrics = (await http_plain.get(f"{hub.base}/metrics")).text
            assert 'onemcp_template_instances{template="fxt"} 1.0' in metrics


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_search_shows_each_project_its_own_instance(tmp_path: Path, mode: Mode) -> None:
    """Two instances of one template list one name each with their own text: search, schemas and
    `server=` answer each project from its own instance, never the other's (a leak between projects)."""
    a, b = project_dir(tmp_path, "alpha"), project_dir(tmp_path, "beta")
    fx = fixture_command()
    template = {
        "command": fx[0],
        "args": [
            *fx[1:],
            "--echo-description",
            "Echo for project {{ project.name }} only.",
            "--tools",
            "{{ 3 if project.name == 'alpha' else 1 }}",
        ],
        "template": {"shareable": True},
        "pinToolDefinitions": "off",  # the instances' texts differ by design
    }
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": template}) as hub:
            async with client(hub, a, mode) as in_a:
                assert "fxt__tool_2" in {t.name for t in (await in_a.list_tools()).tools}  # alpha's instance first
            headers = context_headers(hub, b)
            async with httpx2.AsyncClient(headers=headers) as http:
                async with Client(streamable_http_client(hub.url, http_client=http), mode=mode, cache=None) as full:
                    listed = {t.name for t in (await full.list_tools()).tools}
                url = f"{hub.url}?exposure=search"
                async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as c:
                    found = text_of(
                        await c.call_tool("search_tools", {"query": "echo a message for project", "limit": 20})
                    )
                    assert "Echo for project beta only." in found and "alpha" not in found
                    assert "fxt__tool_0" in found and "fxt__tool_1" not in found and "fxt__tool_2" not in found
                    assert f"of {len(listed)} tools" in found  # the total is beta's list, not alpha's
                    schema = text_of(await c.call_tool("get_tool_schema", {"name": "fxt__echo"}))
                    assert "project beta" in schema and "alpha" not in schema
                    by_server = {"query": "echo", "server": "fxt", "limit": 20}
                    found = text_of(await c.call_tool("search_tools", by_server))
                    assert "fxt__echo" in found and "fxt__tool_1" not in found


async def test_the_context_key_is_made_only_when_there_are_templates(tmp_path: Path) -> None:
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    doc = config({})
    del doc["mcpTemplates"]
    path.write_text(json.dumps(doc))
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub:
            assert hub.app.hub.context_secret is None and not (path.parent / "context.key").exists()
            fx = fixture_command()
            await hub.app.hub.apply_config(HubConfig.model_validate(config({"t": {"command": fx[0], "args": fx[1:]}})))
            assert hub.app.hub.context_secret is not None and (path.parent / "context.key").exists()


async def test_metrics_count_an_instances_calls_under_its_template(tmp_path: Path) -> None:
    """Every instance that ever ran would otherwise leave its own request series behind for good."""
    fx = fixture_command()
    template = {"command": fx[0], "args": [*fx[1:], "--name", "{{ project.name }}"]}  # one instance per project
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": template}) as hub:
            for name in ("alpha", "beta"):
                async with client(hub, project_dir(tmp_path, name)) as c:
                    assert text_of(await c.call_tool("fxt__echo", {"message": name})) == name
            assert len(hub.app.hub.instances.running()) == 2
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{hub.base}/metrics")).text
    counted = {
        (sample.name, sample.labels["server"], sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name in ("onemcp_upstream_requests", "onemcp_upstream_request_duration_seconds")
        for sample in family.samples
        if "server" in sample.labels
    }
    assert {server for _, server, _ in counted} == {"fxt"}  # no `fxt@<hash>` series
    assert counted[("onemcp_upstream_requests_total", "fxt", "ok")] == 2
    assert counted[("onemcp_upstream_request_duration_seconds_count", "fxt", None)] == 2


async def test_a_running_instance_is_restarted_from_the_admin_api(tmp_path: Path) -> None:
    """The console's Restart on an instance's page: a 200, not 'no server' (only configured names counted)."""
    import httpx

    a = project_dir(tmp_path, "alpha")
    fx = fixture_command()
    tpl = {"command": fx[0], "args": [*fx[1:], "--name", "{{ project.name }}"]}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": tpl}) as hub, client(hub, a) as in_a:
            await in_a.list_tools()
            (instance,) = hub.app.hub.instances.running()
            async with httpx.AsyncClient(base_url=f"{hub.base}/api/v1", timeout=30) as http:
                r = await http.post(f"/servers/{instance.id}/restart")
                assert r.status_code == 200, r.text
                assert (await http.post("/servers/fxt@nosuch/restart")).status_code == 404
                by_template = await http.post("/servers/fxt/restart")  # it said "no enabled server 'fxt'"
                assert by_template.status_code == 404
                assert by_template.json()["error"] == (
                    f"no enabled server 'fxt': a template, restarted by its instances' names ({instance.id})"
                )


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_instance_restarted_after_a_crash_is_asked_again_for_the_subscriptions(
    tmp_path: Path, mode: Mode
) -> None:
    fx = fixture_command()
    uri = "fixture://item/3"
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": {"command": fx[0], "args": fx[1:]}}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha"), mode) as c, AsyncExitStack() as stack:
                if mode == "legacy":
                    await c.subscribe_resource(f"fxt+{uri}")
                else:
                    sub = await stack.enter_async_context(c.listen(resource_subscriptions=[f"fxt+{uri}"]))
                    assert sub.honored.resource_subscriptions == [f"fxt+{uri}"]
                assert text_of(await c.call_tool("fxt__touch", {"uri": uri})) == f"touched {uri}"
                (instance,) = hub.app.hub.instances.running()
                before = hub.app.hub.pool.get(instance.id)
                with pytest.raises(MCPError):
                    await c.call_tool("fxt__crash", {})
                while hub.app.hub.pool.get(instance.id) is before:
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                await touched_once_ready(c, uri)


async def test_a_listen_opened_after_its_instance_was_reaped_starts_it_and_is_heard(tmp_path: Path) -> None:
    """A 2026-07-28 request holds no instance: reaped at idleTimeout, it starts again for the listen that
    needs it (its URI was not honoured: the instance was not running when the listen came)."""
    fx = fixture_command()
    uri = "fixture://item/3"
    template = {"command": fx[0], "args": fx[1:], "template": {"idleTimeout": 0.2}}
    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": template}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha"), "2026-07-28") as c:
                assert text_of(await c.call_tool("fxt__echo", {"message": "up"})) == "up"
                while hub.app.hub.instances.instances:
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                async with c.listen(resource_subscriptions=[f"fxt+{uri}"]) as sub:
                    assert sub.honored.resource_subscriptions == [f"fxt+{uri}"]
                    assert text_of(await c.call_tool("fxt__touch", {"uri": uri})) == f"touched {uri}"
                    async for event in sub:
                        assert getattr(event, "uri", None) == f"fxt+{uri}", event
                        break


async def listen_raw(hub: RunningHub, folder: Path, send: MemoryObjectSendStream[str], **wanted: Any) -> None:
    """A 2026-07-28 listen read as it comes off the wire (the SDK merges events not yet consumed): each
    notification's method to `send`."""
    method, version = "subscriptions/listen", "2026-07-28"
    meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": "L1", "method": method, "params": {"notifications": wanted, "_meta": meta}}
    headers = {**HEADERS, **context_headers(hub, folder), "mcp-protocol-version": version, "mcp-method": method}
    async with httpx.AsyncClient(timeout=DEADLINE) as http:
        async with http.stream("POST", hub.url, json=body, headers=headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    await send.send(json.loads(line[5:]).get("method", ""))


async def until_updated(heard: MemoryObjectReceiveStream[str]) -> list[str]:
    """The notifications heard before the next resources/updated (a marker: it queues behind them)."""
    got: list[str] = []
    async for method in heard:
        if method == "notifications/resources/updated":
            return got
        got.append(method)
    raise AssertionError(f"the stream ended after {got}")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_reload_that_replaces_an_instance_says_list_changed_once_per_changed_list(
    tmp_path: Path, mode: Mode
) -> None:
    """The old instance's lists go, then each of the new one's comes: one tools/list_changed (its tools
    differ), none for its prompts and resources (the same). It was 7 notifications to one session."""
    fx = fixture_command()
    before = {"command": fx[0], "args": fx[1:]}
    after = {**before, "args": [*fx[1:], "--tools", "1"]}  # a tool more; the same prompts and resources
    marker = "fixture://item/1"  # on the static server: its resources/updated follows what was said before
    folder = project_dir(tmp_path, "alpha")
    send, heard = anyio.create_memory_object_stream[str](100)

    async def handler(msg: Any) -> None:
        method = getattr(getattr(msg, "root", msg), "method", None)
        if isinstance(method, str) and method != "notifications/message":
            await send.send(method)

    with anyio.fail_after(DEADLINE), send, heard:
        async with hub_with(tmp_path, {"fxt": before}) as hub, anyio.create_task_group() as tg:
            async with client(hub, folder, mode, message_handler=handler) as c:
                if mode == "legacy":
                    await c.subscribe_resource(f"fx+{marker}")
                else:
                    lists = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}
                    tg.start_soon(
                        partial(listen_raw, hub, folder, send, **lists, resourceSubscriptions=[f"fx+{marker}"])
                    )
                    assert await heard.receive() == "notifications/subscriptions/acknowledged"
                await c.call_tool("fx__touch", {"uri": marker})
                await until_updated(heard)  # whatever came before the reload
                await hub.app.hub.apply_config(HubConfig.model_validate(config({"fxt": after})))
                first = await heard.receive()  # said once the new instance was tried
                await c.call_tool("fx__touch", {"uri": marker})
                assert [first, *await until_updated(heard)] == ["notifications/tools/list_changed"]
                assert "fxt__tool_0" in {t.name for t in (await c.list_tools()).tools}
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_clients_know_an_instance_by_its_templates_name_in_errors_and_log_lines(
    tmp_path: Path, mode: Mode
) -> None:
    """An instance is `<template>@<hash>` inside the hub only: its errors and log lines reach clients
    labelled with the template's name (they said `[fxt@6702497bdc64] boom` and logger
    `fxt@6702497bdc64/fixture`)."""
    fx = fixture_command()
    logged: list[str] = []

    async def heard(params: Any) -> None:
        logged.append(str(params.logger))

    with anyio.fail_after(DEADLINE):
        async with hub_with(tmp_path, {"fxt": {"command": fx[0], "args": fx[1:]}}) as hub:
            async with client(hub, project_dir(tmp_path, "alpha"), mode, logging_callback=heard) as c:
                with pytest.raises(MCPError) as failed:
                    await c.call_tool("fxt__error", {})
                assert failed.value.error.message == "[fxt] boom", failed.value.error.message
                if mode == "legacy":  # (a 2026-07-28 call hears log lines at the level it names)
                    await c.call_tool("fxt__log", {"message": "m"})  # its log line is handled before the reply
                    assert [name.partition("/")[0] for name in logged] == ["fxt"], logged
            assert any("@" in name for name in hub.app.hub.pool.slots)  # (an instance it was)
