"""Per-user upstream OAuth: each principal authorizes the hub with a protected upstream once, for itself.

A real protected upstream (a onemcp hub with its OAuth server, auto consent, in front of a fixture)
and a hub with API keys whose server has `oauth: {"perUser": true}`. The operator authorizes the
hub's own connection (it lists the tools); alice's first call is refused with her own
authorization link, she follows it, and her calls then carry her own tokens on her own
connection; bob does the same and gets other tokens. Neither user's call ever rides the
operator's credential or the other's. A user's link is bound to them: it asks for their key, and
the authorization can be finished only in the browser that gave it; a forwarded link, another
user's key, the upstream's page opened elsewhere, or a form posted without its cookie get nowhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore, open_keys
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.config.model import ServerConfig
from onemcp.downstream.user_link import link_cookie
from onemcp.hub.connections import per_user_credential
from onemcp.upstream.isolation import principal_owner
from support.entries import CLIENTS, Refused, Target, first_refusal
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.services import NEEDS_REDIS
from upstream.oauth.test_oauth_upstream import hub_file, protected_upstream

pytestmark = pytest.mark.anyio


async def echo(
    http: httpx.AsyncClient, hub: RunningHub, key: str, text: str, capabilities: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A legacy session's `echo` call as `key`'s principal (a client declaring `capabilities`)."""
    auth = {"authorization": f"Bearer {key}"}
    init = {**INIT, "params": {**INIT["params"], "capabilities": capabilities or {}}}
    r = await http.post(hub.url, json=init, headers={**HEADERS, **auth})
    assert r.status_code == 200, r.text
    h = {**HEADERS, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    params = {"name": "echo", "arguments": {"message": text}}
    doc: dict[str, Any] = (
        await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}, headers=h)
    ).json()
    return doc


async def authorize(http: httpx.AsyncClient, link: str, callback: str) -> None:
    """The person's browser: the (auto-approving) authorization page redirects to the hub's callback."""
    r = await http.get(link)
    assert r.status_code == 302, r.text
    assert f"/oauth/upstream/callback/{callback}?" in r.headers["location"]
    page = await http.get(r.headers["location"])
    assert page.status_code == 200, page.text


@dataclass
class World:
    """A protected upstream, a hub with API keys whose server has `perUser` OAuth, authorized by
    its operator (the hub's own connection is up); alice and bob have authorized nothing yet."""

    hub: RunningHub
    path: Path
    http: httpx.AsyncClient
    admin: str
    alice: str
    bob: str


@asynccontextmanager
async def per_user_hub(tmp_path: Path) -> AsyncIterator[World]:
    async with protected_upstream(tmp_path) as upstream:
        config = {
            "mcpServers": {"remote": {"url": upstream.url, "oauth": {"perUser": True}}},
            "onemcp": {"auth": {"apiKeys": True}},
        }
        path = hub_file(tmp_path, config)
        keys = KeyStore(tmp_path / "hub" / "keys.db")
        admin, alice, bob = (keys.create(n, [s]) for n, s in (("op", "admin"), ("a", "mcp"), ("b", "mcp")))
        async with httpx.AsyncClient(timeout=30) as http, running_hub(config, config_path=path) as hub:
            await operator_authorizes(http, hub, admin)  # the hub's own connection, for the tool list
            yield World(hub, path, http, admin, alice, bob)


async def operator_authorizes(http: httpx.AsyncClient, hub: RunningHub, admin: str) -> None:
    """The operator follows the hub's own link (from the admin listing) and the server comes up."""
    with anyio.fail_after(30):
        while not (
            link := (await http.get(f"{hub.base}/oauth/upstream", headers={"authorization": f"Bearer {admin}"}))
            .json()["upstreams"]
            .get("remote", {})
            .get("authorizeUrl")
        ):
            await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
    await authorize(http, link, "remote")
    with anyio.fail_after(30):
        while hub.app.hub.pool.get("remote").state != "ready":  # type: ignore[union-attr]
            await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline


def link_in(message: str) -> str:
    return message.split("open ", 1)[1].split(" in your browser", 1)[0]


async def sign_in(http: httpx.AsyncClient, link: str, key: str) -> httpx.Response:
    """The person's browser opens their link (the hub's sign-in form) and posts their key."""
    form = await http.get(link)
    assert form.status_code == 200 and "name=key" in form.text, form.text
    csrf = re.search(r'name=csrf value="([^"]+)"', form.text)
    assert csrf is not None
    return await http.post(link, data={"csrf": csrf.group(1), "key": key})


async def authorize_as(http: httpx.AsyncClient, link: str, key: str, callback: str) -> None:
    r = await sign_in(http, link, key)
    assert r.status_code == 303 and "code_challenge" in r.headers["location"], r.text
    await authorize(http, r.headers["location"], callback)


async def test_each_user_authorizes_the_hub_once_for_themselves(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with per_user_hub(tmp_path) as w:
            hub, http, admin, alice, bob = w.hub, w.http, w.admin, w.alice, w.bob
            ids = {k: f"key:{k.split('_')[1]}" for k in (alice, bob)}
            listing = f"{hub.base}/oauth/upstream"

            refused = await echo(http, hub, alice, "hello")
            message = refused.get("error", {}).get("message", "")
            assert "each user authorizes onemcp with remote once" in message and ids[alice] in message, refused
            alices_link = link_in(message)
            assert alices_link == f"{hub.base}/oauth/upstream/start/{per_user_credential('remote', ids[alice])}"
            await authorize_as(http, alices_link, alice, per_user_credential("remote", ids[alice]))
            done = await echo(http, hub, alice, "as alice")
            assert done["result"]["content"][0]["text"] == "as alice", done

            refused = await echo(http, hub, bob, "hello")
            bobs_link = link_in(refused["error"]["message"])
            assert bobs_link != alices_link
            await authorize_as(http, bobs_link, bob, per_user_credential("remote", ids[bob]))
            assert (await echo(http, hub, bob, "as bob"))["result"]["content"][0]["text"] == "as bob"

            registry = hub.app.hub.upstream_auth.servers
            tokens = {
                name: registry[name].tokens.access_token  # type: ignore[union-attr]
                for name in (
                    "remote",
                    per_user_credential("remote", ids[alice]),
                    per_user_credential("remote", ids[bob]),
                )
            }
            assert len(set(tokens.values())) == 3  # the operator's, alice's and bob's: three credentials
            assert (await echo(http, hub, alice, "again"))["result"]["content"][0]["text"] == "again"
            health = (await http.get(f"{hub.base}/health", headers={"authorization": f"Bearer {admin}"})).json()
            assert json.dumps(health).count("~") == 0  # users' own credentials are not listed as upstreams

            # the operator revokes bob's own grant alone, then logs the server out: everyone's goes
            as_admin = {"authorization": f"Bearer {admin}"}
            bobs = per_user_credential("remote", ids[bob])
            r = await http.delete(f"{listing}/{bobs}", headers=as_admin)
            assert r.status_code == 200 and r.json()["forgotten"] is True
            assert "each user authorizes" in (await echo(http, hub, bob, "x"))["error"]["message"]
            assert (await echo(http, hub, alice, "still"))["result"]["content"][0]["text"] == "still"
            r = await http.delete(f"{listing}/remote", headers=as_admin)
            assert r.status_code == 200 and r.json()["forgotten"] is True
            alices = per_user_credential("remote", ids[alice])
            assert alices not in await hub.app.hub.upstream_auth.store.names()
            assert (await http.delete(f"{listing}/nosuch~0", headers=as_admin)).status_code == 404


async def test_a_legacy_client_that_can_be_asked_back_reaches_the_legacy_era_with_its_users_own_grant(
    tmp_path: Path,
) -> None:
    """The protected upstream is a dual-era server (a onemcp hub): a legacy client that can be asked back
    (it declares sampling) needs its legacy era, where a server->client request has a back-channel. Its
    principal's own legacy-era connection carries that principal's own grant, asked for and given as for
    any call, never the operator's (s35 leftover: this path was tested only with `${user:NAME}` values)."""
    with anyio.fail_after(120):
        async with per_user_hub(tmp_path) as w:
            core, principal = w.hub.app.hub, f"key:{w.alice.split('_')[1]}"
            shared = core.pool.get("remote")
            assert shared is not None and shared.era == "modern" and shared.speaks_legacy
            asks: dict[str, Any] = {"sampling": {}}
            refused = await echo(w.http, w.hub, w.alice, "hello", asks)
            message = refused.get("error", {}).get("message", "")  # not answered on the operator's grant
            assert "each user authorizes onemcp with remote once" in message, refused
            own_grant = per_user_credential("remote", principal)
            await authorize_as(w.http, link_in(message), w.alice, own_grant)
            done = await echo(w.http, w.hub, w.alice, "as alice", asks)
            assert done["result"]["content"][0]["text"] == "as alice", done
            owner = principal_owner(principal, legacy=True)
            (own,) = core.isolated.held_by(owner)
            assert own.era == "legacy" and own is not shared
            (key,) = [k for k in core.isolated._conns if k[0] == owner]
            assert core.isolated._credentials[key] == own_grant  # alice's own, not the operator's "remote"


async def test_a_users_link_works_only_for_them_and_only_in_the_browser_that_signed_in(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with per_user_hub(tmp_path) as w:
            hub, http, alice, bob = w.hub, w.http, w.alice, w.bob
            alices = per_user_credential("remote", f"key:{alice.split('_')[1]}")
            async with httpx.AsyncClient(timeout=30) as bobs_browser, httpx.AsyncClient(timeout=30) as other_browser:
                alices_link = link_in((await echo(http, hub, alice, "x"))["error"]["message"])

                # forwarded to bob: his own key does not open alice's authorization
                r = await sign_in(bobs_browser, alices_link, bob)
                assert r.status_code == 403 and "made for another onemcp user" in r.text, r.text
                # nor does no key, or a made-up one
                for key in ("", "omk_nosuch_key"):
                    r = await sign_in(bobs_browser, alices_link, key)
                    assert r.status_code == 403 and "Not signed in" in r.text, r.text
                # the form's cookie: Strict, HttpOnly, only for this page
                form = await other_browser.get(alices_link)
                start_path = f"/oauth/upstream/start/{alices}"
                assert f"HttpOnly; SameSite=Strict; Max-Age=600; Path={start_path}" in form.headers["set-cookie"]
                csrf = re.search(r'name=csrf value="([^"]+)"', form.text)
                assert csrf is not None
                token = csrf.group(1)
                # posted from another site's page (the browser says so), with a wrong or garbled token, or
                # without the page's cookie: refused, her key or not, and never an error page
                for headers, data in (
                    ({"origin": "https://evil.example"}, {"csrf": token, "key": alice}),
                    ({"sec-fetch-site": "cross-site"}, {"csrf": token, "key": alice}),
                    ({}, {"csrf": token + "x", "key": alice}),
                    ({}, {"csrf": "\u00ff", "key": alice}),
                ):
                    r = await other_browser.post(alices_link, data=data, headers=headers)
                    assert r.status_code == 403 and "expired" in r.text, (headers, r.text)
                other_browser.cookies.clear()
                r = await other_browser.post(alices_link, data={"csrf": token, "key": alice})
                assert r.status_code == 403 and "expired" in r.text

                # alice signs in, and the upstream's page she is sent to is opened in another browser,
                # with no cookie or with one of its own
                callback_path = f"/oauth/upstream/callback/{alices}"
                for planted in (None, "not-hers"):
                    r = await sign_in(http, alices_link, alice)
                    assert r.status_code == 303
                    name = f"onemcp_link_{alices.replace('~', '_')}"
                    assert r.headers["set-cookie"].startswith(f"{name}=")
                    assert f"HttpOnly; SameSite=Lax; Path={callback_path}; Max-Age=600" in r.headers["set-cookie"]
                    other_browser.cookies.clear()
                    if planted is not None:
                        other_browser.cookies.set(name, planted, path=callback_path)
                    lured = await other_browser.get(r.headers["location"])
                    assert lured.status_code == 302
                    page = await other_browser.get(lured.headers["location"])
                    assert page.status_code == 403 and "another browser" in page.text, page.text
                # a link of hers not made through the sign-in (no browser bound to it) cannot finish either
                unbound = hub.app.hub.upstream_auth.servers[alices].authorize_link()
                assert unbound is not None
                lured = await http.get(unbound)
                page = await http.get(lured.headers["location"])
                assert page.status_code == 403 and "another browser" in page.text, page.text
                assert "each user authorizes" in (await echo(http, hub, alice, "x"))["error"]["message"]
                assert hub.app.hub.upstream_auth.servers[alices].tokens is None

                # her own browser, signed in again, finishes it
                await authorize_as(http, alices_link, alice, alices)
                assert (await echo(http, hub, alice, "mine"))["result"]["content"][0]["text"] == "mine"
                # a link naming no perUser server is no page at all
                assert (await http.get(f"{hub.base}/oauth/upstream/start/remote")).status_code == 404
                assert (await http.get(f"{hub.base}/oauth/upstream/start/nosuch~0")).status_code == 404
                injected = await http.get(f"{hub.base}/oauth/upstream/start/{alices}x; Path=/; SameSite=None")
                assert injected.status_code == 404 and "set-cookie" not in injected.headers
                # authorized now: a sign-in finds nothing to do
                r = await sign_in(http, alices_link, alice)
                assert r.status_code == 409 and "call it from your client again" in r.text


class _Links:
    def __init__(self, base: str) -> None:
        self.base = base

    async def user_link(self, credential: str, browser: str, config: ServerConfig) -> str | None:
        return None

    def start_url(self, credential: str) -> str | None:
        return f"{self.base}/oauth/upstream/start/{credential}"

    def callback_url(self, server: str) -> str | None:
        return f"{self.base}/oauth/upstream/callback/{server}"


def test_the_link_cookie_follows_the_public_url() -> None:
    # https: a __Host- cookie, which no sibling domain can plant; one name per credential (a user's
    # links to two servers are two cookies)
    assert link_cookie(_Links("https://hub.example"), "remote~0123456789abcdef") == (
        "__Host-onemcp_link_remote_0123456789abcdef",
        "HttpOnly; SameSite=Lax; Path=/; Secure",
    )
    assert link_cookie(_Links("https://hub.example"), "other~0123456789abcdef")[0].endswith("_other_0123456789abcdef")
    # behind a proxy that strips /hub: the browser's path, not the hub's route
    assert link_cookie(_Links("http://hub.example/hub"), "remote~0123456789abcdef") == (
        "onemcp_link_remote_0123456789abcdef",
        "HttpOnly; SameSite=Lax; Path=/hub/oauth/upstream/callback/remote~0123456789abcdef",
    )


async def test_every_entry_point_calls_with_the_callers_own_authorization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The matrix: each entry point (both eras, /sse, stdio, proxy, agent CLI) x a user who authorized
    (her own tokens answer) and one who did not (his own link, nothing sent upstream)."""
    with anyio.fail_after(180):
        async with per_user_hub(tmp_path) as w:
            hub, path, http, alice, bob = w.hub, w.path, w.http, w.alice, w.bob
            bobs = per_user_credential("remote", f"key:{bob.split('_')[1]}")
            alices = per_user_credential("remote", f"key:{alice.split('_')[1]}")
            alices_link = link_in((await echo(http, hub, alice, "x"))["error"]["message"])
            await authorize_as(http, alices_link, alice, alices)

            outcomes: dict[tuple[str, str], str] = {}
            for name, spec in CLIENTS.items():
                for who, key in (("alice", alice), ("bob", bob)):
                    monkeypatch.setenv(TOKEN_ENV, key)  # where the CLI, proxy and stdio serve read it
                    try:
                        async with first_refusal(), spec.connect(Target(hub, path, http, key)) as client:
                            params = {"name": "echo", "arguments": {"message": f"{name} as {who}"}}
                            result = await client.request("tools/call", params)
                            outcomes[name, who] = result["content"][0]["text"]
                    except Refused as exc:
                        outcomes[name, who] = exc.how
            for name in CLIENTS:
                assert outcomes[name, "alice"] == f"{name} as alice", (name, outcomes[name, "alice"])
                refusal = outcomes[name, "bob"]
                assert f"/oauth/upstream/start/{bobs}" in refusal and "Internal" not in refusal, (name, refusal)
            # bob's calls never got a token of anyone's: he has none, and the upstream saw only alice
            assert hub.app.hub.upstream_auth.servers[bobs].tokens is None


@NEEDS_REDIS
async def test_a_users_sign_in_and_callback_may_reach_any_replica(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on one Redis behind a balancer without sticky routing: alice's call reached A, her
    sign-in B (which never saw a call of hers) and her callback A; bob's call and sign-in reached A,
    his callback B. Each then calls through either replica with their own tokens. Her grant revoked
    and asked for again through A, her sign-in on B (which holds her old credential) works too."""
    monkeypatch.setenv("ONEMCP_SECRET_KEY", "one passphrase for every replica")
    with anyio.fail_after(150):
        async with protected_upstream(tmp_path) as upstream:
            config = {
                "mcpServers": {"remote": {"url": upstream.url, "oauth": {"perUser": True}}},
                "onemcp": {"auth": {"apiKeys": True}, "sessionStore": redis_url},
            }
            paths = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                paths.append(tmp_path / name / "mcp.json")
                paths[-1].write_text(json.dumps(config))
            keys = open_keys(tmp_path / "a", redis_url)  # in Redis: every replica knows them
            admin, alice, bob = (keys.create(n, [s]) for n, s in (("op", "admin"), ("a", "mcp"), ("b", "mcp")))
            alices, bobs = (per_user_credential("remote", f"key:{k.split('_')[1]}") for k in (alice, bob))
            async with (
                httpx.AsyncClient(timeout=30) as http,
                running_hub(config, config_path=paths[0]) as a,
                running_hub(config, config_path=paths[1]) as b,
            ):
                await operator_authorizes(http, a, admin)
                with anyio.fail_after(30):
                    while b.app.hub.pool.get("remote").state != "ready":  # type: ignore[union-attr]
                        await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline

                link = link_in((await echo(http, a, alice, "x"))["error"]["message"])
                assert alices not in b.app.hub.upstream_auth.servers  # B has not seen her
                await authorize_as(http, b.base + link.removeprefix(a.base), alice, alices)  # callback: A's

                link = link_in((await echo(http, a, bob, "x"))["error"]["message"])
                r = await sign_in(http, link, bob)
                assert r.status_code == 303, r.text
                r = await http.get(r.headers["location"])  # the upstream's page sends the browser back
                assert r.status_code == 302 and r.headers["location"].startswith(a.base), r.text
                assert bobs not in b.app.hub.upstream_auth.servers
                page = await http.get(b.base + r.headers["location"].removeprefix(a.base))  # to B
                assert page.status_code == 200 and "remote is authorized for you" in page.text, page.text

                for hub in (a, b):
                    for who, key in (("alice", alice), ("bob", bob)):
                        done = await echo(http, hub, key, f"{who} via {hub.base}")
                        assert done["result"]["content"][0]["text"] == f"{who} via {hub.base}", done
                tokens = {
                    hub.app.hub.upstream_auth.servers[name].tokens.access_token  # type: ignore[union-attr]
                    for hub in (a, b)
                    for name in (alices, bobs)
                }
                assert len(tokens) == 2  # one each, the same on both replicas

                # her grant revoked through A: B, which holds her old credential, follows what A prepares next
                as_admin = {"authorization": f"Bearer {admin}"}
                assert (await http.delete(f"{a.base}/oauth/upstream/{alices}", headers=as_admin)).status_code == 200
                link = link_in((await echo(http, a, alice, "x"))["error"]["message"])
                await authorize_as(http, b.base + link.removeprefix(a.base), alice, alices)
                done = await echo(http, b, alice, "back via b")
                assert done["result"]["content"][0]["text"] == "back via b", done
