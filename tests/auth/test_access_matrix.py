"""The authorization matrix: entry point x credential kind x scope kind x operation x target.

Generated, not listed: entry points from `support.entries.CLIENTS` (checked against the hub's
`access.ENTRIES`), operations from the hub's own method tables (checked: every method the hub
answers has an operation here), targets from three fixture upstreams on the three upstream
transports (stdio, Streamable HTTP, legacy SSE). The oracle, what each scope kind may reach, is
written here from the documented scope semantics, not read from the code under test. Each case
is expected `allowed` or `refused`; a mismatch either way fails the test: an unauthorized success
or a wrongful refusal. A refusal must be a clean one (a 401/403, or a JSON-RPC error that is not
an internal error), and a hang is a failure too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.auth import access
from onemcp.auth.keys import KeyStore
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.config.context import Signer, encode, project
from onemcp.config.model import HubConfig
from onemcp.downstream.modern import MODERN_METHODS
from onemcp.hub.core import Hub
from onemcp.hub.dispatch import ROUTED
from onemcp.protocol.methods import KIND_BY_METHOD
from support.credentials import JwtIssuer, jwks_server, oauth_revoke, oauth_token
from support.entries import CLIENTS, LEGACY, MODERN, WAIT, Client, EntryClient, LegacyHttp, Refused, Target
from support.hub import HEADERS, INIT, RunningHub, running_hub

pytestmark = pytest.mark.anyio
RESOURCE = "http://hub.test/mcp"  # the hub's public URL: JWT audience and OAuth resource
ISSUER = "https://issuer.test"
SERVERS = ("alpha", "beta", "gamma")  # stdio, Streamable HTTP, SSE
TAGS = {"alpha": ["red"], "beta": ["blue"], "gamma": ["blue"]}

# ------------------------------------------------------------------------------------ the oracle
# scope kind -> the scopes its credential carries (None: the credential carries no scope at all)
SCOPES: dict[str, list[str] | None] = {
    "mcp": ["mcp"],
    "server": ["server:alpha"],
    "tag": ["tag:blue"],
    "tool": ["tool:beta/echo"],
    "admin": ["admin"],
    "none": ["openid"],  # only a scope of some other service
    "revoked": ["mcp"],
    "expired": ["mcp"],
}
ADMITTED = ("mcp", "server", "tag", "tool", "admin")
CREDENTIALS = ("key", "jwt", "oauth")
NOT_APPLICABLE = {
    ("jwt", "revoked"): "a JWT cannot be revoked at the hub",
    ("oauth", "server"): "the built-in server grants only mcp and admin",
    ("oauth", "tag"): "the built-in server grants only mcp and admin",
    ("oauth", "tool"): "the built-in server grants only mcp and admin",
    ("oauth", "none"): "the built-in server grants only mcp and admin",
}


def groups() -> Iterator[tuple[str, str]]:
    """Every (credential kind, scope kind) that applies."""
    for credential in CREDENTIALS:
        for scope in SCOPES:
            if (credential, scope) not in NOT_APPLICABLE:
                yield credential, scope


def reaches(scope_kind: str, server: str, kind: str, name: str) -> bool:
    """The documented meaning of each scope kind (README, auth docs): may it use this item?"""
    if scope_kind not in ADMITTED:
        return False
    if scope_kind in ("mcp", "admin"):
        return True
    if scope_kind == "server":
        return server == "alpha"
    if scope_kind == "tag":
        return "blue" in TAGS[server]
    return kind == "tools" and (server, name) == ("beta", "echo")  # "tool": just that tool


# ------------------------------------------------------------------------------------ operations
@dataclass
class Case:
    entry: str
    credential: str
    scope: str
    op: str
    target: str
    expected: bool
    outcome: str = ""  # "allowed" or what the refusal looked like


Probe = Callable[[Client, str], Awaitable[Any]]


@dataclass(frozen=True)
class Op:
    method: str
    kind: str | None  # the kind of item it targets (None: not about one item)
    names: tuple[str, ...]  # the upstream items it is tried on, on every server
    probe: Probe
    era: str = "both"  # "legacy", "modern" or "both"
    needs: str = ""  # "tasks" or "listen": only where the entry client has it
    label: str = ""  # what the report calls it (default: the method)


def _visible(server: str, name: str, kind: str) -> str:
    return f"{server}+{name}" if kind == "resources" else f"{server}__{name}"


async def _call(c: Client, target: str) -> Any:
    return await c.request("tools/call", {"name": target, "arguments": {"message": "m"}})


def _result_text(result: dict[str, Any]) -> str:
    """A tool result's text; a tool error is a refusal (the meta-tools answer out-of-reach names so)."""
    text = "".join(str(c.get("text", "")) for c in result.get("content", []) if isinstance(c, dict))
    if result.get("isError"):
        raise Refused(f"tool error: {text}")
    return text


async def _search(c: Client, target: str) -> Any:
    """search_tools, narrowed to the target's server: the target must be among the results."""
    server = target.split("__", 1)[0]
    query = {"query": "echo a message back as text", "server": server, "limit": 3}
    found = _result_text(await c.request("tools/call", {"name": "search_tools", "arguments": query}))
    if f"{target}(" not in found:
        raise Refused(f"not in the results: {found[:200]}")
    return found


async def _schema(c: Client, target: str) -> Any:
    return _result_text(await c.request("tools/call", {"name": "get_tool_schema", "arguments": {"name": target}}))


async def _call_through(c: Client, target: str) -> Any:
    arguments = {"name": target, "arguments": {"message": "m"}}
    return _result_text(await c.request("tools/call", {"name": "call_tool", "arguments": arguments}))


async def _get(c: Client, target: str) -> Any:
    return await c.request("prompts/get", {"name": target})


async def _read(c: Client, target: str) -> Any:
    return await c.request("resources/read", {"uri": target})


async def _complete(c: Client, target: str) -> Any:
    if "+" in target:
        ref = {"type": "ref/resource", "uri": target}
        argument = {"name": "id", "value": "1"}
    else:
        ref = {"type": "ref/prompt", "name": target}
        argument = {"name": "topic", "value": "t"}
    return await c.request("completion/complete", {"ref": ref, "argument": argument})


async def _subscribe(c: Client, target: str) -> Any:
    return await c.request("resources/subscribe", {"uri": target})


async def _unsubscribe(c: Client, target: str) -> Any:
    return await c.request("resources/unsubscribe", {"uri": target})


def _task_probe(method: str) -> Probe:
    async def probe(c: Client, target: str) -> Any:
        made = await c.request("tools/call", {"name": target, "arguments": {"message": "m"}, "task": {"ttl": 60000}})
        return await c.request(method, {"taskId": made["task"]["taskId"]})

    return probe


async def _listen(c: Client, target: str) -> Any:
    honored = await c.listen([target])
    if target not in honored:
        raise Refused(f"not honoured: {honored}")
    return honored


def _plain(method: str, params: dict[str, Any]) -> Probe:
    async def probe(c: Client, target: str) -> Any:
        return await c.request(method, params)

    return probe


OPS: tuple[Op, ...] = (
    Op("tools/call", "tools", ("echo", "log"), _call),
    # the search meta-tools (callable whenever no upstream tool has their name): the same reach as lists
    Op("tools/call", "tools", ("echo",), _search, label="search_tools"),
    Op("tools/call", "tools", ("echo", "log"), _schema, label="get_tool_schema"),
    Op("tools/call", "tools", ("echo", "log"), _call_through, label="call_tool"),
    Op("prompts/get", "prompts", ("simple",), _get),
    Op("resources/read", "resources", ("fixture://static", "fixture://item/7"), _read),
    Op("completion/complete", "prompts", ("with_args",), _complete),
    Op("completion/complete", "resources", ("fixture://item/{id}",), _complete),
    Op("resources/subscribe", "resources", ("fixture://static",), _subscribe, era="legacy"),
    Op("resources/unsubscribe", "resources", ("fixture://static",), _unsubscribe, era="legacy"),
    Op("subscriptions/listen", "resources", ("fixture://static",), _listen, era="modern", needs="listen"),
    Op("tasks/get", "tools", ("echo",), _task_probe("tasks/get"), era="legacy", needs="tasks"),
    Op("tasks/result", "tools", ("echo",), _task_probe("tasks/result"), era="legacy", needs="tasks"),
    Op("tasks/cancel", "tools", ("echo",), _task_probe("tasks/cancel"), era="legacy", needs="tasks"),
    Op("tasks/list", None, (), _plain("tasks/list", {}), era="legacy", needs="tasks"),
    Op("ping", None, (), _plain("ping", {}), era="legacy"),
    Op("logging/setLevel", None, (), _plain("logging/setLevel", {"level": "info"}), era="legacy"),
    Op("server/discover", None, (), _plain("server/discover", {}), era="modern"),
)
LISTS = tuple(KIND_BY_METHOD.items())  # every list method: its listed items must be exactly the reachable ones
HANDSHAKE = {"initialize"}  # exercised by every legacy client's connect


def applies(op: Op, client: EntryClient, era: str) -> bool:
    if op.era != "both" and op.era != era:
        return False
    if era == "modern" and op.method not in MODERN_METHODS:
        return False
    return (op.needs != "tasks" or client.tasks) and (op.needs != "listen" or client.listens)


def test_every_method_and_entry_point_is_in_the_matrix() -> None:
    """Adding a method to the hub or an entry point without a matrix case fails here."""
    hub = Hub(HubConfig.model_validate({"mcpServers": {}}))
    answered = set(KIND_BY_METHOD) | set(ROUTED) | set(MODERN_METHODS) | hub.local_methods
    covered = {op.method for op in OPS} | set(KIND_BY_METHOD) | HANDSHAKE
    assert answered - covered == set()
    assert {c.entry for c in CLIENTS.values()} == set(access.ENTRIES)


# ------------------------------------------------------------------------------------ the hub
@dataclass
class World:
    hub: RunningHub
    config_path: Path
    http: httpx.AsyncClient
    keys: KeyStore
    jwt: JwtIssuer
    inventory: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)  # kind -> (visible, server, name)

    async def credential(self, kind: str, scope: str) -> str | None:
        scopes = SCOPES[scope]
        if kind == "key":
            expires = time.time() - 1 if scope == "expired" else None
            token = self.keys.create(scope, list(scopes or []), expires=expires)
            if scope == "revoked":
                self.keys.revoke(token.split("_")[1])
            return token
        if kind == "jwt":
            return self.jwt.token(scopes, expires_in=-3600 if scope == "expired" else 300)
        oauth = self.hub.app.gate.oauth
        base = self.hub.base
        if scope == "expired":  # issued long ago: its lifetime has passed
            clock = oauth.grants.clock
            oauth.grants.clock = lambda: time.time() - 30 * 86400
            try:
                return str((await oauth_token(self.http, base, RESOURCE, ["mcp"]))["access_token"])
            finally:
                oauth.grants.clock = clock
        issued = await oauth_token(self.http, base, RESOURCE, list(scopes or ["mcp"]))
        if scope == "revoked":
            await oauth_revoke(self.http, base, issued)
        return str(issued["access_token"])


@asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    issuer = JwtIssuer(ISSUER, RESOURCE)
    async with (
        jwks_server(issuer.jwk) as jwks_url,
        running_http_fixture("--tasks", "--name", "beta") as beta_url,
        running_http_fixture("--sse", "--tasks", "--name", "gamma") as gamma_url,
    ):
        cmd = fixture_command("--tasks", "--name", "alpha")
        servers = {
            "alpha": {"command": cmd[0], "args": cmd[1:], "tags": TAGS["alpha"]},
            "beta": {"url": beta_url, "tags": TAGS["beta"]},
            "gamma": {"url": gamma_url, "type": "sse", "tags": TAGS["gamma"]},
        }
        auth = {
            "apiKeys": True,
            "jwt": {"jwksUrl": jwks_url, "issuer": ISSUER},
            "oauth": True,
            "oauthConsent": "auto",
            "publicUrl": RESOURCE,
        }
        config = {"mcpServers": servers, "onemcp": {"auth": auth, "audit": "-", "searchCache": False}}
        path = tmp_path / "mcp.json"
        path.write_text(json.dumps(config))
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient() as http:
            assert all(c.state == "ready" for c in hub.app.hub.pool.connections.values())
            w = World(hub, path, http, KeyStore(tmp_path / "keys.db"), issuer)
            for kind in KIND_BY_METHOD.values():
                rows = set()
                for item in hub.app.hub.catalog.items(kind):
                    visible = str(item.get("uriTemplate") or item.get("uri") or item.get("name"))
                    server, sep, name = visible.partition("+" if kind.startswith("resource") else "__")
                    assert sep and server in SERVERS, visible
                    rows.add((visible, server, name))
                w.inventory[kind] = rows
            yield w


# ------------------------------------------------------------------------------------ running it
def plan(name: str, client: EntryClient, credential: str, scope: str, era: str) -> Iterator[tuple[Case, Op | None]]:
    """Every case of one (entry, credential, scope) group; list cases carry no Op."""
    admitted = scope in ADMITTED
    for method, _ in LISTS:
        if era == "legacy" or method in MODERN_METHODS:
            yield Case(name, credential, scope, method, "(list)", admitted), None
    for op in OPS:
        if not applies(op, client, era):
            continue
        if op.kind is None:
            yield Case(name, credential, scope, op.method, "-", admitted), op
            continue
        label = op.label or op.method
        for server in SERVERS:
            for item in op.names:
                kind = "resources" if op.kind == "resources" else op.kind
                visible = _visible(server, item, kind)
                yield Case(name, credential, scope, label, visible, reaches(scope, server, op.kind, item)), op


def clean(refusal: str) -> bool:
    """A refusal that is an authorization answer, not a breakage."""
    return "-32603" not in refusal and "Internal error" not in refusal and "timed out" not in refusal.lower()


async def run_group(
    w: World, name: str, client_spec: EntryClient, credential: str, scope: str, token: str | None
) -> list[Case]:
    era = "modern" if client_spec.entry == access.MODERN_HTTP else "legacy"
    cases = list(plan(name, client_spec, credential, scope, era))
    target = Target(w.hub, w.config_path, w.http, token)
    limit = anyio.Semaphore(client_spec.parallel)

    async def run(client: Client, case: Case, op: Op | None) -> None:
        async with limit:
            with anyio.fail_after(30):
                try:
                    if op is None:
                        await check_list(w, client, case)
                    else:
                        await op.probe(client, case.target)
                        case.outcome = "allowed"
                except Refused as exc:
                    case.outcome = exc.how

    try:
        async with client_spec.connect(target) as client, anyio.create_task_group() as tg:
            for case, op in cases:
                tg.start_soon(run, client, case, op)
    except Refused as exc:  # the entry refused the credential before any operation
        for case, _ in cases:
            case.outcome = case.outcome or f"connect: {exc.how}"
    return [case for case, _ in cases]


async def check_list(w: World, client: Client, case: Case) -> None:
    kind = KIND_BY_METHOD[case.op]
    result = await client.request(case.op, {})
    key = "uriTemplate" if kind == "resourceTemplates" else "uri" if kind == "resources" else "name"
    listed = {str(item[key]) for item in result[kind]}
    expected = {v for v, server, name in w.inventory[kind] if reaches(case.scope, server, kind, name)}
    if listed == expected:
        case.outcome = "allowed"
    else:
        case.outcome = f"list differs: extra {sorted(listed - expected)} missing {sorted(expected - listed)}"


def verdict(case: Case) -> str | None:
    """Why the case failed, or None."""
    allowed = case.outcome == "allowed"
    if case.outcome.startswith("list differs"):
        return "UNAUTHORIZED SUCCESS" if "extra []" not in case.outcome else "wrongful refusal"
    if case.expected and not allowed:
        return "wrongful refusal"
    if not case.expected and allowed:
        return "UNAUTHORIZED SUCCESS"
    if not case.expected and not clean(case.outcome):
        return "refused uncleanly"
    return None


@pytest.mark.parametrize("name", list(CLIENTS))
async def test_authorization_matrix(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client_spec = CLIENTS[name]
    caplog.set_level(logging.INFO, logger="onemcp.audit")
    all_cases: list[Case] = []
    with anyio.fail_after(600):
        async with world(tmp_path) as w:
            for credential, scope in groups():
                token = await w.credential(credential, scope)
                monkeypatch.setenv(TOKEN_ENV, token or "")  # where the CLI, proxy and stdio serve read it
                all_cases += await run_group(w, name, client_spec, credential, scope, token)
    failures = [(verdict(c), c) for c in all_cases if verdict(c)]
    report = "\n".join(
        f"{why}: {c.entry} {c.credential}/{c.scope} {c.op} {c.target} -> {c.outcome}" for why, c in failures[:40]
    )
    assert not failures, f"{len(failures)} of {len(all_cases)} cases failed:\n{report}"
    refused = [c for c in all_cases if not c.expected]
    assert len(all_cases) >= 300 and len(refused) >= 100  # the generator did not collapse
    # refusals are audit lines naming the principal and the entry point: at the door and after it
    lines = [r.getMessage() for r in caplog.records if r.name == "onemcp.audit" and "auth denied" in r.getMessage()]
    mine = [line for line in lines if f"entry={client_spec.entry} " in line]
    assert any("principal=- " in line for line in mine), lines[:5]  # no valid credential
    assert any("principal=key:" in line and " op=" in line for line in mine), lines[:5]  # scopes refused an item


# ------------------------------------------------------------------------------------ admin endpoints
ADMIN_ENDPOINTS = (("GET", "/metrics"), ("GET", "/oauth/upstream"), ("DELETE", "/oauth/upstream/alpha"))


async def test_admin_endpoints_matrix(tmp_path: Path) -> None:
    """/metrics and the upstream OAuth endpoints: credential kind x scope kind; of these only `admin` gets in.

    (The read-only `operator` scope reads /metrics and GET /oauth/upstream too: tests/auth/test_gate.py,
    tests/upstream/oauth/test_oauth_upstream.py.)
    """
    failures: list[str] = []
    count = 0
    with anyio.fail_after(300):
        async with world(tmp_path) as w:
            for credential, scope in groups():
                token = await w.credential(credential, scope)
                for verb, path in ADMIN_ENDPOINTS:
                    count += 1
                    r = await w.http.request(verb, f"{w.hub.base}{path}", headers={"authorization": f"Bearer {token}"})
                    expected = scope == "admin"
                    if (r.status_code == 200) != expected or r.status_code not in (200, 401, 403):
                        failures.append(f"{credential}/{scope} {verb} {path} -> {r.status_code}")
    assert not failures, failures
    assert count == len(ADMIN_ENDPOINTS) * len(list(groups()))


# ------------------------------------------------------------------------------------ template instances
# A requester's template context starts the template's instance only where the requester reaches it: its
# scopes and its view let the template (or a tool of it, or a tag it renders) through. Cells: scopes x view
# x how the context came (signed with the hub's key, as the proxy and agent CLI send it; or unsigned, which
# only a credential with scope `templates` may send) -> is the instance started (and its tools listed)?
TEMPLATE_CELLS: tuple[tuple[list[str], str, bool, bool], ...] = (
    (["mcp"], "", True, True),
    (["admin"], "", True, True),
    (["server:fxt"], "", True, True),
    (["tag:team"], "", True, True),
    (["tool:fxt/echo"], "", True, True),
    (["mcp"], "tags=team", True, True),
    (["mcp", "templates"], "", False, True),
    (["server:alpha"], "", True, False),
    (["tool:alpha/echo"], "", True, False),
    (["tag:red"], "", True, False),
    (["mcp"], "tags=red", True, False),
    (["server:alpha", "templates"], "", False, False),
)


async def _listed_with_context(
    http: httpx.AsyncClient, hub: RunningHub, era: str, token: str, query: str, context: dict[str, str]
) -> set[str]:
    """The tools a client sending this template context (and token, and view) is listed, in one era."""
    url = f"{hub.url}?{query}" if query else hub.url
    headers = {**HEADERS, **context, "authorization": f"Bearer {token}"}
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    if era == "modern":
        meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
        headers |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
        r = await http.post(url, json={**tools_list, "params": {"_meta": meta}}, headers=headers)
    else:
        r = await http.post(url, json=INIT, headers=headers)
        assert r.status_code == 200, r.text
        headers |= {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": LEGACY}
        await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        r = await http.post(url, json=tools_list, headers=headers)
    assert r.status_code == 200, r.text
    return {str(t["name"]) for t in r.json()["result"]["tools"]}


@asynccontextmanager
async def _template_hub(
    tmp_path: Path, template: str, name: str
) -> AsyncIterator[tuple[RunningHub, httpx.AsyncClient, KeyStore, bytes]]:
    """A hub with API keys, the stdio fixture `alpha` (tag red) and a template of it (tag team) whose `--name`
    is `name` (a template expression); yields it, a client, its key store and its context secret."""
    fx = fixture_command()
    doc = {
        "mcpServers": {"alpha": {"command": fx[0], "args": fx[1:], "tags": ["red"]}},
        "mcpTemplates": {template: {"command": fx[0], "args": [*fx[1:], "--name", name], "tags": ["team"]}},
        "onemcp": {"auth": {"apiKeys": True}},
    }
    path = tmp_path / "hub" / "mcp.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    async with running_hub(doc, config_path=path) as hub, httpx.AsyncClient(timeout=WAIT) as http:
        secret = hub.app.hub.context_secret
        assert secret is not None
        yield hub, http, KeyStore(path.parent / "keys.db"), secret


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_template_instance_starts_only_for_requesters_it_is_in_reach_of(era: str, tmp_path: Path) -> None:
    failures: list[str] = []
    with anyio.fail_after(120):
        async with _template_hub(tmp_path, "fxt", "{{ project.name }}") as (hub, http, keys, secret):
            for n, (scopes, query, signed, expected) in enumerate(TEMPLATE_CELLS):
                cell = f"{' '.join(scopes)} ?{query} {'signed' if signed else 'unsigned'}"
                project_dir = tmp_path / f"project{n}"  # a project of its own: an instance of its own
                project_dir.mkdir()
                context = {"project": {**project(project_dir), "name": f"project{n}"}}
                headers = Signer(context, secret).headers() if signed else encode(context, None)
                listed = await _listed_with_context(http, hub, era, keys.create(f"c{n}", scopes), query, headers)
                started = [i for i in hub.app.hub.instances.instances.values() if i.summary["name"] == f"project{n}"]
                if bool(started) != expected or ("fxt__echo" in listed) != expected:
                    said = "started" if started else "not started"
                    failures.append(f"{cell}: instance {said}, listed {sorted(listed)[:3]}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------------ another principal's
async def test_another_principals_session_and_tasks_do_not_exist_for_it(tmp_path: Path) -> None:
    """A's legacy session and A's task, asked for by B (another key, and a narrower key): every way in is
    the answer to an unknown session or task. Cells: GET, DELETE and POST on A's Mcp-Session-Id, POST
    /messages naming it, and tasks/get|result|cancel of A's task id from B's own session."""
    failures: list[str] = []
    with anyio.fail_after(120):
        async with world(tmp_path) as w:
            a = Target(w.hub, w.config_path, w.http, w.keys.create("a", ["mcp"]))
            async with CLIENTS["mcp-legacy"].connect(a) as mine:
                assert isinstance(mine, LegacyHttp)
                made = await mine.request(
                    "tools/call", {"name": "alpha__echo", "arguments": {}, "task": {"ttl": 60000}}
                )
                task = made["task"]["taskId"]
                for other in (w.keys.create("b", ["mcp"]), w.keys.create("b-alpha", ["server:alpha"])):
                    stolen = {**mine.headers, "authorization": f"Bearer {other}"}
                    get = {"jsonrpc": "2.0", "id": 7, "method": "tasks/get", "params": {"taskId": task}}
                    messages = f"{w.hub.base}/messages?session_id={mine.headers['mcp-session-id']}"
                    tries = (
                        ("GET", w.hub.url, {**stolen, "accept": "text/event-stream"}, None),
                        ("DELETE", w.hub.url, stolen, None),
                        ("POST", w.hub.url, stolen, get),
                        ("POST", messages, {**HEADERS, "authorization": f"Bearer {other}"}, get),
                    )
                    for verb, url, headers, body in tries:
                        # the status only: a stream wrongly opened on A's session is not read on
                        async with w.http.stream(verb, url, headers=headers, json=body) as r:
                            if r.status_code != 404:
                                failures.append(
                                    f"{verb} {url.removeprefix(w.hub.base)} on A's session: {r.status_code}"
                                )
                    async with CLIENTS["mcp-legacy"].connect(Target(w.hub, w.config_path, w.http, other)) as theirs:
                        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
                            try:
                                await theirs.request(method, {"taskId": task})
                                failures.append(f"{method} of A's task: answered")
                            except Refused as exc:
                                if "-32602" not in exc.how or "Task not found" not in exc.how:
                                    failures.append(f"{method} of A's task: {exc.how}")
                try:  # A's session and task are untouched by all of it
                    await mine.request("tasks/get", {"taskId": task})
                except Refused as exc:
                    failures.append(f"A's own tasks/get afterwards: {exc.how}")
    assert not failures, "\n".join(failures)


# a template that does not render for a context (its client sends no project.custom.db) refuses that client,
# naming the template and the field, only where the client reaches the template: to anyone else it is not there
RENDER_ERROR_CELLS: tuple[tuple[list[str], str, bool], ...] = (
    (["mcp"], "", True),
    (["server:db"], "", True),
    (["tag:team"], "", True),
    (["server:alpha"], "", False),
    (["tool:alpha/echo"], "", False),
    (["tag:red"], "", False),
    (["mcp"], "tags=red", False),
)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_template_that_does_not_render_is_said_only_to_requesters_it_is_in_reach_of(
    era: str, tmp_path: Path
) -> None:
    failures: list[str] = []
    with anyio.fail_after(120):
        async with _template_hub(tmp_path, "db", "{{ project.custom.db }}") as (hub, http, keys, secret):
            headers = Signer({"project": project(tmp_path)}, secret).headers()
            for n, (scopes, query, reached) in enumerate(RENDER_ERROR_CELLS):
                cell = f"{' '.join(scopes)} ?{query}"
                try:
                    listed = await _listed_with_context(http, hub, era, keys.create(f"c{n}", scopes), query, headers)
                except AssertionError as exc:  # the HTTP answer was not 200
                    said = "cannot render template server 'db': mcpTemplates.db.args[2]" in str(exc)
                    if not reached or not said:
                        failures.append(f"{cell}: refused: {str(exc)[:200]}")
                    continue
                if reached:
                    failures.append(f"{cell}: served ({sorted(listed)[:2]}), not told its template does not render")
                elif not listed or any(name.startswith("db__") for name in listed):
                    failures.append(f"{cell}: listed {sorted(listed)[:3]}")
            assert not hub.app.hub.instances.instances
    assert not failures, "\n".join(failures)
