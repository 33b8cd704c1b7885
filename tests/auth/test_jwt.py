"""The JWT verifier against a JWKS served on loopback: keys withdrawn by the issuer stop verifying, one
fetch serves every waiting request and a failing issuer is not asked again at once, an issuer that
drips its answer is cut off, a token whose algorithm does not fit its key is refused (not a 500), and
roles come only from `rolesClaim`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from onemcp.auth import jwt as verifier_module
from onemcp.auth.jwt import JwtVerifier
from onemcp.auth.principal import InvalidToken
from onemcp.config.auth_settings import JwtSettings
from onemcp.http.fetch import FetchFailed
from support.credentials import dripping_party, loopback_asgi

pytestmark = pytest.mark.anyio
ISSUER, AUDIENCE = "https://issuer.test", "http://hub.test/mcp"


def rsa_key(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256"}


def token(key: Any, kid: str, *, algorithm: str = "RS256", **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time() + 300), "scope": "mcp", **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


@asynccontextmanager
async def issuer(keys: list[dict[str, Any]]) -> AsyncIterator[tuple[str, list[int]]]:
    """A JWKS serving `keys` (the list may be changed meanwhile); yields its URL and a count of fetches."""
    fetches = [0]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        fetches[0] += 1
        body = json.dumps({"keys": keys}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async with loopback_asgi(app) as base:
        yield f"{base}/jwks.json", fetches


def verifier(url: str, **settings: Any) -> JwtVerifier:
    return JwtVerifier(JwtSettings.model_validate({"jwksUrl": url, "issuer": ISSUER, **settings}), AUDIENCE)


async def test_a_key_the_issuer_withdrew_stops_verifying(monkeypatch: pytest.MonkeyPatch) -> None:
    old, old_jwk = rsa_key("rsa1")
    new, new_jwk = rsa_key("rsa2")
    keys = [old_jwk]
    with anyio.fail_after(30):
        async with issuer(keys) as (url, _):
            check = verifier(url)
            assert (await check.verify(token(old, "rsa1"))) is not None
            keys[:] = [new_jwk]  # rotated: the old key is withdrawn
            monkeypatch.setattr(verifier_module, "KEYS_TTL", 0.0)  # the set's lifetime has passed
            assert (await check.verify(token(new, "rsa2"))) is not None
            with pytest.raises(InvalidToken, match="no signing key 'rsa1'"):
                await check.verify(token(old, "rsa1", scope="admin"))


async def test_one_fetch_serves_every_waiting_request_and_a_failing_issuer_is_not_asked_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, jwk = rsa_key("k1")
    calls = [0]
    release = anyio.Event()

    async def unreachable(url: str) -> dict[str, Any]:
        calls[0] += 1
        await release.wait()  # the issuer hangs until the test lets the fetch fail
        raise FetchFailed("timed out")

    monkeypatch.setattr(verifier_module, "_fetch", unreachable)
    check = verifier("https://issuer.test/jwks.json")
    refused: list[str] = []

    async def attempt() -> None:
        with pytest.raises(InvalidToken) as caught:
            await check.verify(token(key, "k1"))
        refused.append(str(caught.value))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(attempt)
            while calls[0] == 0:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the first fetch starts)
            release.set()
        await attempt()  # right after the failure: refused without a fetch
    assert calls[0] == 1 and len(refused) == 5
    assert jwk["kid"] == "k1"


async def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused() -> None:
    rsa_private, rsa_jwk = rsa_key("rsa")
    ec_private = ec.generate_private_key(ec.SECP256R1())
    with anyio.fail_after(30):
        async with issuer([rsa_jwk]) as (url, _):
            check = verifier(url)
            with pytest.raises(InvalidToken):
                await check.verify(token(ec_private, "rsa", algorithm="ES256"))  # an EC signature, an RSA kid
            with pytest.raises(InvalidToken):
                await check.verify(jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "rsa"}))
            assert (await check.verify(token(rsa_private, "rsa"))) is not None


async def test_roles_come_from_the_roles_claim_only() -> None:
    key, jwk = rsa_key("k1")
    with anyio.fail_after(30):
        async with issuer([jwk]) as (url, fetches):
            check = verifier(url, rolesClaim="groups")
            principal = await check.verify(token(key, "k1", scope="mcp role:boss", groups=["dev"]))
            assert principal is not None and principal.scopes == frozenset({"mcp", "role:dev"})
            assert (await check.verify(token(key, "k1"))) is not None
    assert fetches[0] == 1  # the set is fetched once and kept


async def test_a_token_for_the_sse_entry_is_the_hubs_and_one_for_another_resource_is_not() -> None:
    """A client that starts at /sse is told (RFC 9728) that /sse is the resource and asks its issuer for a
    token for it: that token opens the hub too. A configured `audience` is the only one taken."""
    key, jwk = rsa_key("k1")
    with anyio.fail_after(30):
        async with issuer([jwk]) as (url, _):
            check = verifier(url)
            assert (await check.verify(token(key, "k1", aud="http://hub.test/sse"))) is not None
            with pytest.raises(InvalidToken, match="match"):
                await check.verify(token(key, "k1", aud="http://hub.test/other"))
            pinned = verifier(url, audience="api://hub")
            assert (await pinned.verify(token(key, "k1", aud="api://hub"))) is not None
            with pytest.raises(InvalidToken, match="match"):
                await pinned.verify(token(key, "k1", aud="http://hub.test/sse"))


async def test_a_jwk_without_alg_verifies_every_allowed_algorithm_of_its_type() -> None:
    """Azure AD-style key sets name no alg: a PS256 or RS512 token must verify with an RSA key."""
    key, jwk = rsa_key("k1")
    del jwk["alg"]
    with anyio.fail_after(30):
        async with issuer([jwk]) as (url, _):
            check = verifier(url, algorithms=["RS256", "RS512", "PS256"])
            for algorithm in ("RS256", "RS512", "PS256"):
                assert (await check.verify(token(key, "k1", algorithm=algorithm))) is not None, algorithm
            with pytest.raises(InvalidToken):
                await check.verify(token(key, "k1", algorithm="RS384"))  # not in the configured list
            # alg "none" against a key that names no alg: refused (it was a NotImplementedError, a 500)
            unsigned = jwt.encode({"sub": "x", "iss": "i", "aud": "a", "exp": 9999999999}, "", algorithm="none",
                                  headers={"kid": "k1"})  # fmt: skip
            with pytest.raises(InvalidToken, match="alg 'none' is not one this hub accepts"):
                await check.verify(unsigned)


async def test_a_fetch_whose_caller_left_still_answers_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    key, jwk = rsa_key("k1")
    release = anyio.Event()
    calls = [0]

    async def slow(url: str) -> dict[str, Any]:
        calls[0] += 1
        await release.wait()
        return {"k1": jwk}

    monkeypatch.setattr(verifier_module, "_fetch", slow)
    check = verifier("https://issuer.test/jwks.json")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            leaver = anyio.CancelScope()

            async def first() -> None:
                with leaver:
                    await check.verify(token(key, "k1"))

            tg.start_soon(first)
            while calls[0] == 0:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the fetch starts)
            result: list[Any] = []

            async def second() -> None:
                result.append(await check.verify(token(key, "k1")))

            tg.start_soon(second)
            leaver.cancel()  # the request that started the fetch goes away
            release.set()
        assert result and result[0] is not None and calls[0] == 1


async def test_a_malformed_key_set_is_refused_and_not_fetched_again_at_once() -> None:
    key, _ = rsa_key("k1")
    with anyio.fail_after(30):
        for doc in ({"keys": None}, [1, 2], {"keys": [{"kid": "k1", "kty": "nope"}]}):

            async def app(scope: Any, receive: Any, send: Any, body: bytes = json.dumps(doc).encode()) -> None:
                if scope["type"] == "http":
                    await send({"type": "http.response.start", "status": 200, "headers": []})
                    await send({"type": "http.response.body", "body": body})

            async with loopback_asgi(app) as base:
                check = verifier(f"{base}/jwks.json")
                for _ in range(2):
                    with pytest.raises(InvalidToken):
                        await check.verify(token(key, "k1"))


async def test_an_issuer_that_drips_its_key_set_is_cut_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte at a time, each well within a read timeout: the fetch (shielded, holding every request that
    waits for the keys) still ends at FETCH_TIMEOUT, for the whole answer, not per read."""
    key, _ = rsa_key("k1")
    monkeypatch.setattr(verifier_module, "FETCH_TIMEOUT", 0.5)
    with anyio.fail_after(20):
        async with dripping_party(0.1) as (base, started):
            with pytest.raises(InvalidToken, match="no signing key"):
                await verifier(f"{base}/jwks.json").verify(token(key, "k1"))
            assert started.is_set()
            assert "could not be fetched (the last good keys stay in use): no whole answer within 0.5s" in caplog.text
