"""One upstream credential's life against scripted servers: what a hostile or failing party cannot do.

Each case is a finding of the security review, kept as a regression test: secrets and refresh
tokens go only to the issuer they belong to, two hubs sharing a config directory never spend
the same refresh token, a link finishes only the flow it was made for, a passing outage keeps
the refresh token, a logout wins over a refresh under way, and malformed answers are errors,
not exceptions.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest

from onemcp.config import files
from onemcp.config.model import ServerConfig
from onemcp.upstream.oauth import store as oauth_store
from onemcp.upstream.oauth.client import ServerAuth
from onemcp.upstream.oauth.registry import UpstreamAuth

pytestmark = pytest.mark.anyio
UP = "https://up.example/mcp"
AS = "https://as.example"
EVIL = "https://evil.example"
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]  # a scripted endpoint


def as_meta(issuer: str = AS) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "code_challenge_methods_supported": ["S256"],
    }


class Servers:
    """The upstream's resource metadata, a genuine authorization server and an evil one; every request recorded."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.token: Handler = lambda r: httpx.Response(
            200, json={"access_token": "AT1", "refresh_token": "RT1", "expires_in": 3600}
        )
        self.register: Handler = lambda r: httpx.Response(201, json={"client_id": "c1"})

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        host, path = request.url.host, request.url.path
        if host == "up.example" and path.startswith("/.well-known/oauth-protected-resource"):
            return httpx.Response(200, json={"resource": UP, "authorization_servers": [AS]})
        if host == "evil.example" and path == "/prm":  # claims to protect the upstream
            return httpx.Response(200, json={"resource": UP, "authorization_servers": [EVIL]})
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=as_meta(f"https://{host}"))
        handler = {"/register": self.register, "/token": self.token}.get(path) if host == "as.example" else None
        if handler is None:
            return httpx.Response(404)
        answer = handler(request)
        return answer if isinstance(answer, httpx.Response) else await answer

    def to(self, host: str, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.host == host and r.url.path == path]


class ScriptedAuth(UpstreamAuth):
    """The hub's upstream OAuth registry whose HTTP clients come from `client`: scripted servers, no network."""

    def __init__(self, config_dir: Path | None, client: Callable[[], httpx.AsyncClient]) -> None:
        super().__init__(config_dir, "http://127.0.0.1:3050")
        self.client = client

    def new_client(self) -> httpx.AsyncClient:
        return self.client()


def hub(servers: Servers, config_dir: Path | None = None) -> ScriptedAuth:
    return ScriptedAuth(
        config_dir, lambda: httpx.AsyncClient(transport=httpx.MockTransport(servers), follow_redirects=False)
    )


def credential(auth: UpstreamAuth, **oauth: Any) -> ServerAuth:
    config = ServerConfig.model_validate({"url": UP, **({"oauth": oauth} if oauth else {})})
    found = auth.for_server("up", config)
    assert found is not None
    return found


async def authorized(auth: UpstreamAuth, servers: Servers) -> ServerAuth:
    """The operator has authorized the hub with the genuine server."""
    cred = credential(auth)
    assert not await cred.recover(401, None, None)
    link = cred.authorize_link()
    assert link is not None
    state = dict(parse_qsl(urlsplit(link).query))["state"]
    status, _, _ = await auth.callback("up", {"state": state, "code": "C", "iss": AS})
    assert status == 200 and cred.header == "Bearer AT1"
    return cred


def expire(cred: ServerAuth) -> None:
    assert cred.tokens is not None
    cred.tokens = dataclasses.replace(cred.tokens, expires_at=1.0)


async def test_configured_secret_never_goes_to_another_issuer() -> None:
    servers = Servers()
    cred = credential(hub(servers), grant="client_credentials", clientId="corp", clientSecret="S3CRET", issuer=AS)
    assert not await cred.recover(401, f'Bearer resource_metadata="{EVIL}/prm"', None)
    assert servers.to("evil.example", "/token") == []
    assert cred.state == "error" and "belong to https://as.example" in (cred.detail or "")
    # the genuine server gets the secret (Basic), and the hub its token
    assert await cred.recover(401, None, None) is False  # failed a moment ago: not asked again at once
    cred._failed_at = -100.0
    assert await cred.recover(401, None, None)
    sent = servers.to("as.example", "/token")[-1].headers["authorization"]
    assert base64.b64decode(sent.split()[1]) == b"corp:S3CRET" and cred.header == "Bearer AT1"


async def test_a_step_up_elsewhere_never_receives_the_refresh_token() -> None:
    servers = Servers()
    auth = hub(servers)
    cred = await authorized(auth, servers)
    step_up = f'Bearer error="insufficient_scope", scope="write", resource_metadata="{EVIL}/prm"'
    assert not await cred.recover(403, step_up, cred.header)
    expire(cred)
    await cred.ensure_fresh()
    assert servers.to("evil.example", "/token") == []  # refreshed at its own issuer, if anywhere
    assert cred.header is not None


async def test_two_hubs_sharing_a_config_directory_spend_a_refresh_token_once(tmp_path: Path) -> None:
    servers = Servers()
    spent: list[str] = []

    def rotate(request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        if form["grant_type"] == "refresh_token":
            if form["refresh_token"] in spent:
                return httpx.Response(400, json={"error": "invalid_grant"})
            spent.append(form["refresh_token"])
            n = len(spent) + 1
            return httpx.Response(200, json={"access_token": f"AT{n}", "refresh_token": f"RT{n}", "expires_in": 3600})
        return httpx.Response(200, json={"access_token": "AT1", "refresh_token": "RT1", "expires_in": 3600})

    servers.token = rotate
    http_hub = hub(servers, tmp_path)
    first = await authorized(http_hub, servers)
    stdio_hub = hub(servers, tmp_path)  # another process on the same config directory
    second = credential(stdio_hub)
    assert second.header == "Bearer AT1"
    expire(first)
    await first.ensure_fresh()
    assert first.header == "Bearer AT2"
    expire(second)
    await second.ensure_fresh()  # takes what the other hub stored instead of spending RT1 again
    assert second.header == "Bearer AT2" and spent == ["RT1"]
    http_hub.close()
    stdio_hub.close()


async def test_a_link_finishes_only_the_flow_it_was_made_for() -> None:
    servers = Servers()
    auth = hub(servers)
    cred = credential(auth)
    await cred.recover(401, None, None)
    link = cred.authorize_link()
    assert link is not None and "/oauth/upstream/callback/up" in dict(parse_qsl(urlsplit(link).query))["redirect_uri"]
    state = dict(parse_qsl(urlsplit(link).query))["state"]
    assert (await auth.callback("other", {"state": state, "code": "C"}))[0] == 400  # another server's callback
    link = cred.authorize_link()
    assert link is not None
    state = dict(parse_qsl(urlsplit(link).query))["state"]
    moved = ServerConfig.model_validate({"url": "https://up2.example/mcp"})
    auth.for_server("up", moved)  # a reload changed the server
    status, _, _ = await auth.callback("up", {"state": state, "code": "C"})
    assert status == 400 and servers.to("as.example", "/token") == []


async def test_an_outage_keeps_the_refresh_token() -> None:
    servers = Servers()
    auth = hub(servers)
    cred = await authorized(auth, servers)
    servers.token = lambda r: httpx.Response(503, text="down for maintenance")
    assert not await cred.recover(401, None, cred.header)
    assert cred.tokens is not None and cred.tokens.refresh_token == "RT1"
    assert cred.state == "error" and "503" in (cred.detail or "")
    assert not cred.blocked  # the supervisor keeps retrying; no operator needed


async def test_a_logout_wins_over_a_refresh_under_way() -> None:
    servers = Servers()
    auth = hub(servers)
    cred = await authorized(auth, servers)
    release = anyio.Event()
    entered = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return httpx.Response(200, json={"access_token": "AT9", "refresh_token": "RT9", "expires_in": 3600})

    servers.token = slow
    expire(cred)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cred.ensure_fresh)
        await entered.wait()
        logout = tg.start_soon(auth.forget, "up")
        del logout
        release.set()
    assert cred.tokens is None and await auth.store.read("up") is None


@pytest.mark.parametrize(
    "register",
    [
        lambda r: httpx.Response(201, text="<html>not json</html>"),
        lambda r: httpx.Response(201, json=["a", "list"]),
        lambda r: httpx.Response(500, text="boom"),
    ],
)
async def test_malformed_answers_are_errors_not_exceptions(register: Handler, caplog: pytest.LogCaptureFixture) -> None:
    servers = Servers()
    servers.register = register
    cred = credential(hub(servers))
    with caplog.at_level(logging.WARNING):
        assert not await cred.recover(401, None, None)
    assert cred.state == "error" and "registration" in (cred.detail or "")


async def test_plain_http_endpoints_are_refused_off_loopback() -> None:
    def plain(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/oauth-protected-resource"):
            return httpx.Response(200, json={"resource": UP, "authorization_servers": ["http://as.example"]})
        return httpx.Response(404)

    auth = ScriptedAuth(None, lambda: httpx.AsyncClient(transport=httpx.MockTransport(plain)))
    cred = credential(auth)
    assert not await cred.recover(401, None, None)
    assert cred.state == "error" and "not an https URL" in (cred.detail or "")


async def test_a_logout_on_one_hub_holds_for_another_sharing_the_directory(tmp_path: Path) -> None:
    servers = Servers()
    http_hub = hub(servers, tmp_path)
    await authorized(http_hub, servers)
    stdio_hub = hub(servers, tmp_path)
    other = credential(stdio_hub)
    assert other.header == "Bearer AT1"
    assert await http_hub.forget("up")
    expire(other)
    before = len(servers.to("as.example", "/token"))
    await other.ensure_fresh()
    assert len(servers.to("as.example", "/token")) == before  # the logged-out refresh token is not spent
    assert other.tokens is None and await stdio_hub.store.read("up") is None
    http_hub.close()
    stdio_hub.close()


async def test_a_dead_refresh_token_is_tried_once() -> None:
    servers = Servers()
    cred = await authorized(hub(servers), servers)
    servers.token = lambda r: httpx.Response(400, json={"error": "invalid_grant"})
    expire(cred)
    for _ in range(5):
        await cred.ensure_fresh()
    refreshes = [r for r in servers.to("as.example", "/token") if b"grant_type=refresh_token" in r.content]
    assert len(refreshes) == 1 and cred.header == "Bearer AT1"  # the access token lives on until refused


async def test_a_step_up_request_survives_a_renewal() -> None:
    servers = Servers()
    cred = await authorized(hub(servers), servers)
    servers.token = lambda r: httpx.Response(
        200, json={"access_token": "AT2", "refresh_token": "RT2", "expires_in": 3600}
    )
    assert not await cred.recover(403, 'Bearer error="insufficient_scope", scope="write"', cred.header)
    assert cred.state == "required" and cred.authorize_link() is not None
    expire(cred)
    await cred.ensure_fresh()
    assert cred.header == "Bearer AT2"
    assert cred.state == "required" and "write" in (cred.detail or "")  # still asking for more scope


async def test_a_caller_giving_up_never_leaves_it_half_prepared() -> None:
    servers = Servers()
    release = anyio.Event()
    entered = anyio.Event()
    genuine = servers.register

    async def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        answer = genuine(request)
        assert isinstance(answer, httpx.Response)  # the scripted default answers at once
        return answer

    servers.register = slow
    cred = credential(hub(servers))
    deadline = anyio.CancelScope()

    async def caller() -> None:
        with deadline:
            await cred.recover(401, None, None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await entered.wait()
        deadline.cancel()  # the connection's start-up deadline passes mid-registration
        release.set()
    assert cred.state == "required" and cred.authorize_link() is not None


async def test_dpop_bound_tokens_with_nonces_at_both_ends() -> None:
    """RFC 9449: proofs at the token endpoint (retried with the server's nonce) and on each upstream request."""
    import hashlib

    import jwt

    servers = Servers()
    proofs: list[dict[str, Any]] = []

    def token(request: httpx.Request) -> httpx.Response:
        proof = request.headers["dpop"]
        header = jwt.get_unverified_header(proof)
        claims = jwt.decode(proof, jwt.PyJWK(header["jwk"]).key, algorithms=["ES256"])
        proofs.append(claims)
        assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]
        assert claims["htm"] == "POST" and claims["htu"] == f"{AS}/token"
        if claims.get("nonce") != "as-nonce":
            return httpx.Response(400, json={"error": "use_dpop_nonce"}, headers={"dpop-nonce": "as-nonce"})
        return httpx.Response(200, json={"access_token": "ATD", "token_type": "DPoP", "expires_in": 3600})

    servers.token = token
    auth = hub(servers)
    real = auth.client

    def with_dpop() -> httpx.AsyncClient:
        client = real()
        original = client._transport

        async def handle(request: httpx.Request) -> httpx.Response:
            response = await original.handle_async_request(request)
            if request.url.path == "/.well-known/oauth-authorization-server":
                doc = {**as_meta(), "dpop_signing_alg_values_supported": ["ES256"]}
                return httpx.Response(200, json=doc)
            return response

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))

    auth.client = with_dpop
    cred = credential(auth)
    await cred.recover(401, 'DPoP resource_metadata="https://up.example/.well-known/oauth-protected-resource"', None)
    link = cred.authorize_link()
    assert link is not None
    state = dict(parse_qsl(urlsplit(link).query))["state"]
    assert (await auth.callback("up", {"state": state, "code": "C", "iss": AS}))[0] == 200
    assert [p.get("nonce") for p in proofs] == [None, "as-nonce"]
    assert cred.header == "DPoP ATD"
    first = cred.authorization("POST", UP)
    second = cred.authorization("POST", UP)
    assert first["authorization"] == "DPoP ATD" and first["dpop"] != second["dpop"]  # a fresh proof each time
    assert cred.dpop is not None
    claims = jwt.decode(first["dpop"], jwt.PyJWK(cred.dpop.jwk).key, algorithms=["ES256"])
    expected_ath = base64.urlsafe_b64encode(hashlib.sha256(b"ATD").digest()).rstrip(b"=").decode()
    assert claims["htu"] == UP and claims["ath"] == expected_ath and "nonce" not in claims
    # the upstream asks for its own nonce: one retry carries it; the same refusal again is final
    challenge = 'DPoP error="use_dpop_nonce"'
    assert await cred.recover(401, challenge, cred.header, "rs-nonce")
    claims = jwt.decode(cred.authorization("POST", UP)["dpop"], jwt.PyJWK(cred.dpop.jwk).key, algorithms=["ES256"])
    assert claims["nonce"] == "rs-nonce"
    assert not await cred.recover(401, challenge, cred.header, "rs-nonce")


async def test_a_token_is_renewed_a_minute_before_it_expires() -> None:
    import time

    servers = Servers()
    cred = await authorized(hub(servers), servers)
    servers.token = lambda r: httpx.Response(
        200, json={"access_token": "AT2", "refresh_token": "RT2", "expires_in": 3600}
    )
    assert cred.tokens is not None
    cred.tokens = dataclasses.replace(cred.tokens, expires_at=time.time() + 90)
    await cred.ensure_fresh()
    assert cred.header == "Bearer AT1"  # a minute and a half left: kept
    cred.tokens = dataclasses.replace(cred.tokens, expires_at=time.time() + 50)
    await cred.ensure_fresh()
    assert cred.header == "Bearer AT2"  # under a minute: renewed before any request is refused


async def test_an_authorization_server_that_failed_is_asked_again_only_after_10_s() -> None:
    import time

    servers = Servers()
    cred = await authorized(hub(servers), servers)
    servers.token = lambda r: httpx.Response(503, text="down for maintenance")
    assert not await cred.recover(401, None, cred.header)
    asked = len(servers.to("as.example", "/token"))
    assert not await cred.recover(401, None, cred.header)  # at once again: not asked
    assert len(servers.to("as.example", "/token")) == asked
    servers.token = lambda r: httpx.Response(
        200, json={"access_token": "AT2", "refresh_token": "RT2", "expires_in": 3600}
    )
    cred._failed_at = time.monotonic() - 10.5  # as if 10 s had passed since the failure
    assert await cred.recover(401, None, cred.header) and cred.header == "Bearer AT2"


async def test_more_scope_is_asked_for_at_most_three_times() -> None:
    """Each 403 insufficient_scope for scope the hub lacks prepares a new link for the union of the scopes;
    past the third, a server that keeps asking for more is not followed (the detail says so)."""
    servers = Servers()
    cred = await authorized(hub(servers), servers)
    for n, wanted in enumerate(["s1", "s2", "s3"], 1):
        assert not await cred.recover(403, f'Bearer error="insufficient_scope", scope="{wanted}"', cred.header)
        link = cred.authorize_link()
        assert link is not None and wanted in dict(parse_qsl(urlsplit(link).query))["scope"].split(), n
    assert not await cred.recover(403, 'Bearer error="insufficient_scope", scope="s4"', cred.header)
    link = cred.authorize_link()
    assert link is not None and "s4" not in dict(parse_qsl(urlsplit(link).query))["scope"].split()
    assert "which the hub cannot ask for again" in (cred.detail or "")


async def test_the_hubs_stop_ends_an_exchange_its_caller_shields() -> None:
    """Discovery is shielded from its caller (never left half-prepared) for up to RENEW_DEADLINE (80 s):
    the hub's stop must end it all the same, or an authorization server that does not answer holds the
    hub's shutdown that long. Once stopped, a new exchange ends at once."""
    servers = Servers()
    entered = anyio.Event()

    async def silent(request: httpx.Request) -> httpx.Response:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    servers.register = silent
    auth = hub(servers)
    cred = credential(auth)
    with anyio.fail_after(10):  # far below RENEW_DEADLINE
        async with anyio.create_task_group() as tg:
            tg.start_soon(cred.recover, 401, None, None)
            await entered.wait()
            auth.stop()
        assert cred.state == "error" and cred.detail == "the hub is stopping"
        later = auth.for_server("other", ServerConfig.model_validate({"url": UP}))
        assert later is not None and not await later.recover(401, None, None)
        assert later.state == "error" and later.detail == "the hub is stopping"


async def test_a_caller_giving_up_does_not_wait_for_another_hubs_renewal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal waits for the credential's cross-process lock while another hub on the config directory
    renews (up to 30 s). That wait was shielded with the renewal: a caller giving up, or the hub stopping,
    waited on for the other hub, then refreshed anyway. Only the renewal itself is shielded now: the wait ends
    with its caller, and nothing is spent."""
    monkeypatch.setattr(oauth_store, "LOCK_WAIT", 1.0)  # without the fix: then it goes on unlocked, and refreshes
    refused = anyio.Event()  # the renewal found the lock held: it waits

    def try_lock(fd: int) -> bool:
        held = files.try_lock(fd)
        if not held:
            refused.set()
        return held

    monkeypatch.setattr(oauth_store, "try_lock", try_lock)
    servers = Servers()
    http_hub = hub(servers, tmp_path)
    cred = await authorized(http_hub, servers)
    other_hub = hub(servers, tmp_path)
    expire(cred)
    tokens_asked = len(servers.to("as.example", "/token"))
    ended = anyio.Event()
    caller = anyio.CancelScope()

    async def renew() -> None:
        with caller:
            await cred.ensure_fresh()
        ended.set()

    with anyio.fail_after(10):
        async with other_hub.store.exclusive("up"), anyio.create_task_group() as tg:  # the other hub renews
            tg.start_soon(renew)
            await refused.wait()
            caller.cancel()  # the hub stops (or the caller's deadline passes)
            await ended.wait()
            assert len(servers.to("as.example", "/token")) == tokens_asked  # gave up, spent nothing
    http_hub.close()
    other_hub.close()


async def test_a_stopping_hub_waits_for_no_other_hubs_lock_and_keeps_the_tokens_of_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another hub on the config directory held a credential's lock (renewing it), a renewal here, and
    the tokens of a login to be saved, waited for it up to LOCK_WAIT (30 s) with the hub stopping: a login's
    wait is shielded (its tokens are in hand). The hub's stop ends both waits: the renewal spends nothing, and
    the login's tokens are saved all the same (not waiting for the lock: else the user authorizes again)."""
    refused: list[anyio.Event] = []  # set when a wait finds the lock held

    def try_lock(fd: int) -> bool:
        held = files.try_lock(fd)
        if not held:
            refused[-1].set()
        return held

    monkeypatch.setattr(oauth_store, "try_lock", try_lock)
    servers = Servers()
    for directory in ("one", "two"):  # two config directories, each with two hubs
        (tmp_path / directory).mkdir()
    renewing, other_hub = hub(servers, tmp_path / "one"), hub(servers, tmp_path / "one")
    cred = await authorized(renewing, servers)
    expire(cred)
    tokens_asked = len(servers.to("as.example", "/token"))
    logging_in, another = hub(servers, tmp_path / "two"), hub(servers, tmp_path / "two")
    fresh = credential(logging_in)
    assert not await fresh.recover(401, None, None)
    link = fresh.authorize_link()
    assert link is not None
    answered: list[int] = []

    async def callback() -> None:
        state = dict(parse_qsl(urlsplit(str(link)).query))["state"]
        answered.append((await logging_in.callback("up", {"state": state, "code": "C", "iss": AS}))[0])

    with anyio.fail_after(10):  # far below LOCK_WAIT
        refused.append(anyio.Event())
        async with other_hub.store.exclusive("up"), anyio.create_task_group() as tg:  # the other hub renews
            tg.start_soon(cred.ensure_fresh)
            await refused[-1].wait()
            renewing.stop()
        assert len(servers.to("as.example", "/token")) == tokens_asked  # ended, spent nothing
        assert cred.detail == "the hub is stopping"

        refused.append(anyio.Event())
        async with another.store.exclusive("up"), anyio.create_task_group() as tg:
            tg.start_soon(callback)
            await refused[-1].wait()  # the code is exchanged: saving its tokens waits for the lock
            logging_in.stop()
        assert answered == [200] and fresh.header == "Bearer AT1"
        while (stored := await another.store.read("up")) is None or stored["tokens"] is None:
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (written on a thread of its own)
        assert stored["tokens"]["access_token"] == "AT1"
    for each in (renewing, other_hub, logging_in, another):
        each.close()
