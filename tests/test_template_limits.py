"""A template at its instance cap, over the wire in both eras: what a requester whose instance may not
start gets (JSON-RPC -32000 with `data.limit`, HTTP 429), and that only its requests that need that
instance are refused.

A hub on a loopback port with the fixture as a static server (`fx`) and as a template (`fxt`,
`maxInstances: 1`); contexts are signed with the hub's own key, as `onemcp proxy` signs them. The
first project's requests start the one instance the template may run; the second project's are
the ones checked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.config.context import Signer, project
from support.hub import HEADERS, INIT, RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 60.0
V = "2026-07-28"


@asynccontextmanager
async def capped_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    fx = fixture_command()
    server = {"command": fx[0], "args": fx[1:]}
    template = {**server, "env": {"PROJECT": "{{ project.name }}"}, "template": {"maxInstances": 1}}  # one per project
    doc = {"mcpServers": {"fx": server}, "mcpTemplates": {"fxt": template}}
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    async with running_hub(doc, config_path=path) as hub:
        yield hub


def context_of(hub: RunningHub, tmp_path: Path, name: str) -> dict[str, str]:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    secret = hub.app.hub.context_secret
    assert secret is not None
    return Signer({"project": project(folder)}, secret).headers()


async def modern(
    http: httpx.AsyncClient, hub: RunningHub, context: dict[str, str], method: str, rid: int = 7, **params: Any
) -> httpx.Response:
    meta = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
    headers = {**HEADERS, **context, "mcp-protocol-version": V, "mcp-method": method}
    if method == "tools/call":
        headers["mcp-name"] = str(params["name"])
    return await http.post(hub.url, json=body, headers=headers)


async def legacy_session(http: httpx.AsyncClient, hub: RunningHub, context: dict[str, str]) -> dict[str, str]:
    r = await http.post(hub.url, json=INIT, headers={**HEADERS, **context})
    assert r.status_code == 200, r.text
    headers = {
        **HEADERS,
        **context,
        "mcp-session-id": r.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }
    r = await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert r.status_code == 202
    return headers


def assert_refused(r: httpx.Response, rid: int) -> None:
    assert r.status_code == 429, r.text
    reply = r.json()
    assert reply["id"] == rid
    assert reply["error"]["code"] == -32000 and reply["error"]["data"] == {"limit": "maxInstances"}
    assert "'fxt' already runs 1 instances" in reply["error"]["message"]


async def test_a_list_that_needs_an_instance_past_max_instances_is_refused_with_429(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with capped_hub(tmp_path) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            alpha, beta = context_of(hub, tmp_path, "alpha"), context_of(hub, tmp_path, "beta")
            assert (await modern(http, hub, alpha, "tools/list")).status_code == 200  # the one instance
            for method in ("tools/list", "prompts/list"):  # was HTTP 500 "Internal error", id null
                assert_refused(await modern(http, hub, beta, method), 7)
            headers = await legacy_session(http, hub, beta)
            r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=headers)
            assert_refused(r, 3)
            assert r.headers["retry-after"] == "5"
            assert len(hub.app.hub.instances.running()) == 1


async def test_only_the_requests_that_need_the_refused_instance_fail(tmp_path: Path) -> None:
    """A ping and calls to a static server go on; a call to the template's tool is refused with 429."""
    echo: dict[str, Any] = {"name": "fx__echo", "arguments": {"message": "still here"}}
    refused: dict[str, Any] = {"name": "fxt__echo", "arguments": {"message": "no instance"}}
    with anyio.fail_after(DEADLINE):
        async with capped_hub(tmp_path) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            alpha, beta = context_of(hub, tmp_path, "alpha"), context_of(hub, tmp_path, "beta")
            assert (await modern(http, hub, alpha, "tools/list")).status_code == 200  # the one instance
            headers = await legacy_session(http, hub, beta)

            async def legacy(rid: int, method: str, **params: Any) -> httpx.Response:
                body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
                return await http.post(hub.url, json=body, headers=headers)

            r = await legacy(2, "ping")
            assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
            r = await legacy(3, "tools/call", **echo)
            assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "still here", r.text
            assert_refused(await legacy(4, "tools/call", **refused), 4)
            r = await modern(http, hub, beta, "tools/call", **echo)
            assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "still here", r.text
            assert_refused(await modern(http, hub, beta, "tools/call", rid=5, **refused), 5)
            assert len(hub.app.hub.instances.running()) == 1


async def test_a_runaway_template_fails_its_requester_and_holds_no_other_client(tmp_path: Path) -> None:
    """A template that loops long (loops inside loops: the sandbox bounds one `range` only), rendered
    on the event loop for a legacy `initialize` and for each 2026-07-28 request that names a context:
    the requester is told which field went past which bound, and another client is still answered.
    Without the bound, 10^10 iterations held every client for hours (not even SIGTERM was handled);
    the 10^7 here hold the hub a second or so, then the requester got its instance."""
    fx = fixture_command()
    forever = "{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}{{ project.name }}"
    server = {"command": fx[0], "args": fx[1:]}
    doc = {"mcpServers": {"fx": server}, "mcpTemplates": {"loop": {**server, "env": {"P": forever}}}}
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    why = "cannot render template server 'loop': mcpTemplates.loop.env.P: takes more than 10000 steps"
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub, httpx.AsyncClient(timeout=DEADLINE) as http:
            alpha = context_of(hub, tmp_path, "alpha")
            other = await http.post(hub.url, json=INIT, headers=HEADERS)  # no context: renders nothing
            assert other.status_code == 200, other.text
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, **alpha})
            assert r.json()["error"]["code"] == -32602 and why in r.json()["error"]["message"], r.text
            r = await modern(http, hub, alpha, "tools/list")
            assert r.json()["error"]["code"] == -32602 and why in r.json()["error"]["message"], r.text
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            session = {"mcp-session-id": other.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            r = await http.post(hub.url, json=ping, headers={**HEADERS, **session})
            assert r.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
