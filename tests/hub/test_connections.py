"""Which connection a session's call goes to (connections.py): here, a principal's own connection in the era
its client needs. Balanced, sticky replicas: tests/upstream/test_replicas.py; the shared legacy-era companion
of a dual-era server: tests/hub/test_subscriptions.py.

A server whose config takes `${user:NAME}` values (or `perUser` OAuth) gets one connection per principal;
such a call was sent there before the legacy-era check, so a legacy client of a dual-era server of that kind
never reached its legacy era: its server's live requests (sampling, elicitation, roots) had no back-channel,
and the subscriptions the server takes in that era alone were refused, though the hub offered them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from fixtures.launch import running_http_fixture
from onemcp.auth.keys import KeyStore
from onemcp.hub import connections
from onemcp.protocol.errors import LimitReached, UpstreamUnavailable
from onemcp.upstream.isolation import principal_owner
from onemcp.upstream.user_secrets import UserSecrets
from support.hub import HEADERS, INIT, running_hub
from support.results import Heard, text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),  # resources/subscribe
]
DEADLINE = 60.0
MODERN_SERVER = str(Path(__file__).parents[1] / "fixtures" / "modern_server.py")


def answering(word: str) -> Any:
    """A sampling callback whose model says `word` (so a request shows whose client it reached)."""

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=word), model="m")

    return sampling


async def test_a_legacy_client_of_a_dual_era_server_with_user_values_reaches_its_legacy_era_its_own(
    tmp_path: Path,
) -> None:
    dual = {"command": sys.executable, "args": [MODERN_SERVER], "env": {"SECRET": "${user:TOKEN}"}}
    other = {"command": sys.executable, "args": [MODERN_SERVER, "--no-subscribe"]}  # two servers: names prefixed
    config = {"mcpServers": {"dual": dual, "other": other}, "onemcp": {"auth": {"apiKeys": True}}}
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    keys = KeyStore(tmp_path / "keys.db")
    alice, bob = keys.create("alice", ["mcp"]), keys.create("bob", ["mcp"])
    heard = Heard(types.ResourceUpdatedNotification, lambda n: str(n.params.uri))
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=tmp_path / "mcp.json") as hub:
            core = hub.app.hub
            assert core.pool.connections["dual"].era == "modern"
            async with httpx.AsyncClient() as http:
                for key in (alice, bob):
                    value, bearer = {"value": f"{key[:20]}-value"}, {"authorization": f"Bearer {key}"}
                    assert (
                        await http.put(f"{hub.base}/me/secrets/TOKEN", json=value, headers=bearer)
                    ).status_code == 200
            owners = {}
            for name, key in (("alice", alice), ("bob", bob)):
                async with (
                    httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as h2,
                    Client(
                        streamable_http_client(hub.url, http_client=h2),
                        mode="legacy",
                        cache=None,
                        sampling_callback=answering(name),
                        message_handler=heard,
                    ) as c,
                ):
                    caps = c.server_capabilities.resources
                    assert caps is not None and caps.subscribe  # offered, and now true
                    # a live server->client request: the legacy era's alone (2026-07-28 has no back-channel)
                    sampled = json.loads(text_of(await c.call_tool("dual__push_sample", {})))
                    assert sampled["content"]["text"] == name  # asked of this principal's client
                    if name == "alice":  # a subscription the server takes in the legacy era alone
                        await c.subscribe_resource("dual+modern://note")
                        touched = text_of(await c.call_tool("dual__touch", {"uri": "modern://note"}))
                        assert touched == "touched modern://note"
                        await heard.came.wait()
                        assert heard.values == ["dual+modern://note"]
                        # the hub's sweep of idle ones (sessionIdleTimeout) keeps the one her subscription is
                        # held on: its updates come over it alone, calls or not
                        core.isolated.close_idle("user:", 0)
                        owner = principal_owner(f"key:{key.split('_')[1]}", legacy=True)
                        assert core.isolated.held_by(owner)
                        # nor is it closed to make room for another (maxOwnConnections), however long unused
                        (held,) = [k for k in core.isolated._conns if k[0] == owner]
                        core.isolated._used[held] -= 3600
                        assert core.isolated._stalest([held]) is None
                    principal = f"key:{key.split('_')[1]}"
                    (own,) = core.isolated.held_by(principal_owner(principal, legacy=True))
                    assert (own.name, own.era, own.config.env["SECRET"]) == ("dual", "legacy", f"{key[:20]}-value")
                    # what it lists is this principal's view of the server (its only connection to it)
                    assert core.events.views.principals[principal].lists["dual"][0] is own
                    owners[name] = own
            assert owners["alice"] is not owners["bob"]  # each principal's own, never shared
            assert core.isolated.principal_of(owners["alice"]) is not None  # heard by its principal's sessions alone
            # alice deletes her value; her next call (a 2026-07-28 one) is refused, and neither era's
            # connection keeps running with it (only the era of that call's was closed)
            async with httpx.AsyncClient() as http:
                bearer = {"authorization": f"Bearer {alice}"}
                assert (await http.delete(f"{hub.base}/me/secrets/TOKEN", headers=bearer)).status_code < 300
            async with (
                httpx2.AsyncClient(headers={"authorization": f"Bearer {alice}"}, timeout=30) as h2,
                Client(streamable_http_client(hub.url, http_client=h2), cache=None) as modern,
            ):
                with pytest.raises(MCPError, match="needs your own TOKEN"):
                    await modern.call_tool("dual__echo", {})
            alice_principal = f"key:{alice.split('_')[1]}"
            assert not core.isolated.held_by(principal_owner(alice_principal, legacy=True))
            core.isolated.close_idle("user:", 0)  # the hub's sweep after sessionIdleTimeout: reaped as its own are
            assert core.isolated.count("dual") == 0


class Stand:
    """What `_in_era` reads of the shared connection."""

    name, speaks_legacy = "dual", True


@pytest.mark.parametrize("modern", ["starts", "fails", "was running"])
async def test_a_principals_legacy_era_connection_that_fails_is_given_up_on_only_when_the_era_was_why(
    modern: str,
) -> None:
    """One that fails where a 2026-07-28 one starts just now: the server does not speak legacy (bridged from
    then on); where both fail (the principal's values, its authorization), its error is the caller's, the era
    kept. Where the principal's 2026-07-28 one was running already (made before its token or value was
    revoked, or the legacy-era one was slow to start), this call is bridged and the era kept for everyone."""
    shared, made, running = Stand(), Stand(), Stand()
    tried: list[bool] = []

    async def get(legacy: bool) -> Any:
        tried.append(legacy)
        if legacy or modern == "fails":
            raise UpstreamUnavailable("dual", f"the session's own connection is failed ({legacy=})")
        return running if modern == "was running" else made

    before = cast(Any, running) if modern == "was running" else None
    if modern == "fails":
        with pytest.raises(UpstreamUnavailable, match="legacy=False"):
            await connections._in_era(cast(Any, shared), True, get, before)
    else:
        got: Any = await connections._in_era(cast(Any, shared), True, get, before)
        assert got is (running if modern == "was running" else made)
    assert (tried, shared.speaks_legacy) == ([True, False], modern != "starts")


async def test_a_principal_at_its_servers_own_connection_limit_is_bridged_not_refused() -> None:
    """Its legacy-era one refused by `maxOwnConnections` (LimitReached, not UpstreamUnavailable): the call goes
    over its 2026-07-28 one, as it did before it had a legacy-era one; the era is not why, so it is kept."""
    shared, made = Stand(), Stand()

    async def get(legacy: bool) -> Any:
        if legacy:
            raise LimitReached("own_connections", "dual has 8 own connections, the limit", 503)
        return made

    got: Any = await connections._in_era(cast(Any, shared), True, get, None)
    assert got is made and shared.speaks_legacy


async def test_a_stored_value_its_header_cannot_carry_is_a_clear_error_to_its_user_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A per-user value an HTTP server's header cannot carry (non-ASCII, or a line break or NUL stored before
    `auth secret set` refused them): a line break went out as a header of the value's choosing, a character
    beyond latin-1 failed the connection with a UnicodeEncodeError traceback. Now its user's call is told
    which value and which header, never the value, and nothing is sent; other users are served."""
    bad = {"alice": "t\u00f6k\u00e9n-value", "carol": "line\r\nX-Injected: 1", "erin": "\u0442\u043e\u043a\u0435\u043d"}
    async with running_http_fixture() as url:
        config = {
            "mcpServers": {"t": {"url": url, "headers": {"Authorization": "Bearer ${user:TOK}"}}},
            "onemcp": {"auth": {"apiKeys": True}},
        }
        (tmp_path / "mcp.json").write_text(json.dumps(config))
        store = KeyStore(tmp_path / "keys.db")
        keys = {name: store.create(name, ["mcp"]) for name in [*bad, "bob"]}
        ids = {name: f"key:{key.split('_')[1]}" for name, key in keys.items()}
        values = UserSecrets(tmp_path)
        for name, value in {**bad, "bob": "good-token-value-123"}.items():
            values.set(ids[name], "TOK", value)

        async def call(http: httpx.AsyncClient, hub: Any, who: str) -> dict[str, Any]:
            auth = {"authorization": f"Bearer {keys[who]}"}
            r = await http.post(hub.url, json=INIT, headers={**HEADERS, **auth})
            h = {**HEADERS, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            body = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": "hi"}},
            }
            doc: dict[str, Any] = (await http.post(hub.url, json=body, headers=h)).json()
            return doc

        with anyio.fail_after(DEADLINE):
            async with running_hub(config, config_path=tmp_path / "mcp.json") as hub, httpx.AsyncClient() as http:
                for who, value in bad.items():
                    error = (await call(http, hub, who))["error"]
                    assert error["code"] == -32000 and "your stored TOK cannot be sent" in error["message"], error
                    assert "Authorization header" in error["message"] and value not in json.dumps(error)
                    assert f"onemcp auth secret set '{ids[who]}' TOK" in error["message"]
                    assert "result" in await call(http, hub, "bob")
                values.set(ids["erin"], "TOK", "a-good-value-now-456")  # set again: her next call is served
                assert "result" in await call(http, hub, "erin")
        values.close()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
