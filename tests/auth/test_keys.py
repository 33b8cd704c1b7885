"""API keys kept in the Redis that hub replicas share, against a real redis-server; and the CLI writing there."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.auth import keys as keys_module
from onemcp.auth.gate import RateLimiter
from onemcp.auth.keys import KeyStore, RedisKeyStore, open_keys
from onemcp.auth.principal import InvalidToken
from onemcp.cli.main import main
from onemcp.observability.limits import HITS
from support.held_redis import held_redis
from support.hub import HEADERS, INIT, running_hub
from support.services import NEEDS_REDIS, free_port, redis_server

pytestmark = NEEDS_REDIS


def test_a_key_made_through_one_replica_holds_on_another_until_revoked(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = RedisKeyStore(redis_url, None), RedisKeyStore(redis_url, None)
    key = one.create("ci", ["mcp", "server:git"], expires=None)
    principal = anyio.run(two.verify, key)
    assert principal is not None and principal.id == f"key:{key.split('_')[1]}"
    assert principal.scopes == frozenset({"mcp", "server:git"}) and principal.labels == {"name": "ci"}
    assert [(k.name, k.revoked) for k in two.list()] == [("ci", None)]
    with pytest.raises(InvalidToken, match="unknown API key"):
        anyio.run(two.verify, key[:-2] + "xx")  # the right id, a wrong secret
    assert one.revoke(key.split("_")[1])
    assert not one.revoke(key.split("_")[1])  # only once
    assert anyio.run(two.verify, key) is not None  # two read it less than CACHE_SECONDS ago
    monkeypatch.setattr(keys_module, "CACHE_SECONDS", 0.0)
    with pytest.raises(InvalidToken, match="revoked"):
        anyio.run(two.verify, key)


def test_keys_of_the_local_file_still_count(redis_url: str, tmp_path: Path) -> None:
    local = KeyStore(tmp_path / "keys.db")
    old = local.create("before-redis", ["mcp"])
    store = open_keys(tmp_path, redis_url)
    assert isinstance(store, RedisKeyStore)
    assert anyio.run(store.verify, old) is not None
    new = store.create("after", ["mcp"])
    assert {k.name for k in store.list()} == {"before-redis", "after"}
    assert anyio.run(local.verify, old) is not None and anyio.run(store.verify, new) is not None
    with pytest.raises(InvalidToken, match="unknown API key"):
        anyio.run(local.verify, new)  # a new key is in Redis, not the file
    assert store.revoke(old.split("_")[1])  # a file key is revoked in the file
    with pytest.raises(InvalidToken, match="revoked"):
        anyio.run(store.verify, old)


def test_without_redis_a_key_checked_before_is_judged_by_what_was_read(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisKeyStore(redis_url, None)
    key = store.create("ci", ["mcp"])
    assert anyio.run(store.verify, key) is not None
    cut = RedisKeyStore(f"redis://127.0.0.1:{free_port()}/0", None)  # nothing listens there
    cut._cache = store._cache
    monkeypatch.setattr(keys_module, "CACHE_SECONDS", 0.0)
    assert anyio.run(cut.verify, key) is not None
    other = store.create("other", ["mcp"])
    with pytest.raises(InvalidToken, match=r"the API key store \(Redis\) cannot be reached"):
        anyio.run(cut.verify, other)
    with pytest.raises(OSError, match=r"the API key store \(Redis\): Error 111 connecting"):
        cut.create("x", ["mcp"])


@pytest.mark.anyio
async def test_a_key_made_with_the_cli_for_one_replica_opens_the_other(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fx = fixture_command()
    doc = {
        "mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}},
        "onemcp": {"sessionStore": redis_url, "auth": {"apiKeys": True}},
    }
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "mcp.json")
        paths[-1].write_text(json.dumps(doc))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    assert main(["auth", "key", "create", "--config", str(paths[0]), "--name", "ops"]) == 0
    key = capsys.readouterr().out.strip()
    assert not (tmp_path / "a" / "keys.db").exists()  # in Redis, not beside replica a's config
    with anyio.fail_after(60):
        async with running_hub(doc, config_path=paths[1]) as b, httpx.AsyncClient(timeout=30) as http:
            r = await http.post(b.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            r = await http.post(b.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {key}x"})
            assert r.status_code == 401
    assert main(["auth", "key", "list", "--config", str(paths[1])]) == 0
    assert "ops" in capsys.readouterr().out


@pytest.mark.anyio
async def test_a_redis_that_does_not_answer_is_asked_once_then_skipped_for_a_while() -> None:
    """Redis holds every answer: a key is checked on a worker thread while the loop goes on, and refused
    with the reason when Redis's deadline passes; for a few seconds other keys are refused so at once,
    Redis not asked (the Redis link's breaker)."""
    with held_redis() as stub:
        store = RedisKeyStore(stub.url, None)
        refused: list[str] = []

        async def check() -> None:
            with pytest.raises(InvalidToken) as caught:
                await store.verify("omk_aaaaaaaaaaaa_secret")
            refused.append(str(caught.value))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(check)
                await anyio.to_thread.run_sync(stub.received.wait)
                assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request, meanwhile
                assert not refused
            assert refused == ["the API key store (Redis) cannot be reached"]
            with pytest.raises(InvalidToken, match=r"the API key store \(Redis\) cannot be reached"):
                await store.verify("omk_bbbbbbbbbbbb_secret")
        assert stub.commands == ["HGETALL"]  # the second key: not asked


class _Later:
    """The `time` module as the key store sees it, `ahead` seconds later on the monotonic clock."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def time(self) -> float:
        return time.time()


@pytest.mark.anyio
async def test_while_redis_is_down_a_key_read_lately_opens_the_hub_and_past_the_grace_it_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key revoked just before Redis went away opened every replica for the whole outage (hunt s31 #8):
    now a key read in Redis within auth.redisOutageGrace still counts, and past it (or never read) the
    hub answers 503 temporarily_unavailable with Retry-After, not 401 (the client keeps its key)."""
    fx = fixture_command()
    with contextlib.ExitStack() as redis_running:
        url = redis_running.enter_context(redis_server())
        store = RedisKeyStore(url, None)
        used, unused = store.create("used", ["mcp"]), store.create("unused", ["mcp"])
        doc = {
            "mcpServers": {"fx": {"command": fx[0], "args": fx[1:]}},
            "onemcp": {"sessionStore": url, "auth": {"apiKeys": True, "redisOutageGrace": 30}},
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "mcp.json").write_text(json.dumps(doc))
        with anyio.fail_after(60):
            async with (
                running_hub(doc, config_path=tmp_path / "a" / "mcp.json") as hub,
                httpx.AsyncClient(timeout=30) as http,
            ):
                r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {used}"})
                assert r.status_code == 200, r.text
                redis_running.close()  # redis-server stopped
                monkeypatch.setattr(keys_module, "CACHE_SECONDS", 0.0)  # every request asks Redis
                r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {used}"})
                assert r.status_code == 200, r.text  # read within the grace
                for key in (unused, used):
                    if key == used:
                        monkeypatch.setattr(keys_module, "time", _Later(31))  # past the grace
                    r = await http.post(hub.url, json=INIT, headers={**HEADERS, "authorization": f"Bearer {key}"})
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"] == "5" and "www-authenticate" not in r.headers
                    assert r.json() == {
                        "error": "temporarily_unavailable",
                        "error_description": "the API key store (Redis) cannot be reached",
                    }
    assert HITS.counts["unconfirmed_credentials"] >= 2
