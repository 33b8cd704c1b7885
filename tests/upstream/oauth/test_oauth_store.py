"""The upstream credential store: encrypted at rest, private files, a wrong key reads as nothing; on the
replicas' Redis, never asked on the event loop, and a Redis that does not answer is said."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.to_thread
import orjson
import pytest
import redis
from cryptography.fernet import Fernet

from onemcp.auth.gate import RateLimiter
from onemcp.config import files
from onemcp.config import sqlite as sqlite_module
from onemcp.config.model import ServerConfig
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.oauth.store import KEY_ENV, CredentialStore, CredentialsUnavailable, RedisCredentialStore, load_key
from support.held_redis import HeldRedis, held_redis
from support.held_sqlite import BUSY, held_sqlite
from support.services import NEEDS_REDIS

UP = "https://up.example/mcp"


def test_round_trip_encrypted_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = CredentialStore(tmp_path)
    store.save("remote", {"tokens": {"access_token": "secret-access-token"}})
    assert store.load("remote") == {"tokens": {"access_token": "secret-access-token"}}
    assert store.servers() == ["remote"]
    store.close()
    for name in ("secret.key", "upstream-auth.db"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert b"secret-access-token" not in (tmp_path / "upstream-auth.db").read_bytes()
    again = CredentialStore(tmp_path)  # the same key file: still readable
    assert again.load("remote") is not None
    assert again.delete("remote") and again.load("remote") is None and not again.delete("remote")
    again.close()


def test_another_key_reads_as_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "one passphrase")
    store = CredentialStore(tmp_path)
    store.save("remote", {"x": 1})
    store.close()
    assert not (tmp_path / "secret.key").exists()  # the environment's key is used, no file made
    monkeypatch.setenv(KEY_ENV, "another passphrase")
    other = CredentialStore(tmp_path)
    assert other.load("remote") is None
    other.close()


def test_a_corrupt_key_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "secret.key").write_text("not a key")
    with pytest.raises(OSError, match="not a Fernet key"):
        CredentialStore(tmp_path)


@pytest.mark.anyio
async def test_the_hub_keeps_going_in_memory_when_the_store_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onemcp.upstream.oauth.registry import UpstreamAuth

    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "secret.key").write_text("not a key")
    auth = UpstreamAuth(tmp_path, "http://127.0.0.1:1")
    await auth.store.write("remote", {"x": 1})
    assert await auth.store.read("remote") == {"x": 1}
    assert not (tmp_path / "upstream-auth.db").exists()
    auth.close()


@pytest.mark.anyio
async def test_a_hub_without_oauth_writes_no_key_and_no_database(tmp_path: Path) -> None:
    """An HTTP upstream reads what is stored; nothing stored means no files are made to say so."""
    import json
    import os

    import anyio

    from fixtures.launch import fixture_command
    from support.hub import running_hub

    fx = fixture_command()
    doc = {"mcpServers": {"a": {"command": fx[0], "args": fx[1:]}, "h": {"url": "http://127.0.0.1:9/mcp"}}}
    (tmp_path / "mcp.json").write_text(json.dumps(doc))
    with anyio.fail_after(30):
        async with running_hub(doc, config_path=tmp_path / "mcp.json") as hub:
            assert hub.app.hub.pool.get("h") is not None
    assert sorted(os.listdir(tmp_path)) == ["mcp.json", "pins.db"]  # pins.db: the tools as first seen


@NEEDS_REDIS
@pytest.mark.anyio
async def test_replicas_share_credentials_links_and_the_refresh_lock_in_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, "the replicas' passphrase")
    one, two = RedisCredentialStore(redis_url, tmp_path / "one"), RedisCredentialStore(redis_url, tmp_path / "two")
    await one.write("remote", {"tokens": {"access_token": "secret-access-token"}})
    assert await two.read("remote") == {"tokens": {"access_token": "secret-access-token"}}
    assert await two.names() == ["remote"]
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hget("onemcp:upstream-auth", "remote")
    assert raw is not None and b"secret-access-token" not in raw  # encrypted in Redis too
    one.put_link("state-1", {"verifier": "v"}, 60)
    one.close()  # after the link is written (by a thread of its own)
    one = RedisCredentialStore(redis_url, tmp_path / "one")
    assert (
        await two.take_link("state-1") == {"verifier": "v"} and await one.take_link("state-1") is None
    )  # spent for all

    order: list[str] = []

    async def refresh(store: RedisCredentialStore, name: str) -> None:
        async with store.exclusive("remote"):
            order.append(f"{name} in")
            await anyio.sleep(0.1)  # allowed-sleep: holding the lock while the other waits for it
            order.append(f"{name} out")

    async with anyio.create_task_group() as tg:
        tg.start_soon(refresh, one, "one")
        await anyio.sleep(0.02)  # allowed-sleep: let one take the lock first
        tg.start_soon(refresh, two, "two")
    assert order == ["one in", "one out", "two in", "two out"]  # never both at once

    assert await two.remove("remote") and await one.read("remote") is None
    monkeypatch.delenv(KEY_ENV)
    (tmp_path / "three").mkdir()
    with caplog.at_level(logging.WARNING, "onemcp.upstream.oauth"):
        lonely = RedisCredentialStore(redis_url, tmp_path / "three")
    assert "set ONEMCP_SECRET_KEY" in caplog.text  # a replica with its own key file is told why others fail
    await one.write("remote", {"x": 1})
    assert await lonely.read("remote") is None  # another key: read as nothing, authorize again
    for store in (one, two, lonely):
        store.close()


def stored(doc: dict[str, Any]) -> bytes:
    """`doc` as the replicas' Redis answers it (a RESP bulk string), encrypted with ONEMCP_SECRET_KEY."""
    blob = Fernet(load_key(None)).encrypt(orjson.dumps(doc))
    return b"$%d\r\n%s\r\n" % (len(blob), blob)


async def unrelated_work(stub: HeldRedis) -> None:
    """Once Redis holds a command: the event loop still answers something else (an in-process rate check)."""
    await anyio.to_thread.run_sync(stub.received.wait)
    assert await RateLimiter(60, 1).take("someone else") == 0


@pytest.mark.anyio
async def test_a_credential_is_read_from_redis_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making a connection's credential asks nothing of Redis; its first request reads the stored tokens
    on a worker thread while the loop goes on; a renewal's lock, read and write are off the loop too."""
    monkeypatch.setenv(KEY_ENV, "the replicas' passphrase")
    doc = {"url": UP, "metadata": {"issuer": "https://as.example"}, "tokens": {"access_token": "AT1"}}
    with held_redis({"HGET": stored(doc)}) as stub:
        auth = UpstreamAuth(tmp_path, "http://127.0.0.1:3050", stub.url)
        cred = auth.for_server("up", ServerConfig.model_validate({"url": UP}))
        assert cred is not None and not stub.commands  # (it was read here, on the event loop)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cred.ensure_fresh)
                await unrelated_work(stub)
                assert cred.header is None  # still waiting on Redis
                stub.release.set()
        assert cred.header == "Bearer AT1" and cred.state == "authorized"
        assert stub.commands == ["HGET"]
        auth.close()


@pytest.mark.anyio
async def test_a_redis_that_does_not_answer_fails_the_credential_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis holds every answer: the first read gives up after its deadline while the loop goes on; then
    Redis is skipped: a refused request is told the store cannot be reached (not sent to authorize again),
    a logout says so, an authorization link is handed out at once."""
    monkeypatch.setenv(KEY_ENV, "the replicas' passphrase")
    with held_redis() as stub:
        auth = UpstreamAuth(tmp_path, "http://127.0.0.1:3050", stub.url)
        cred = auth.for_server("up", ServerConfig.model_validate({"url": UP}))
        assert cred is not None
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cred.ensure_fresh)
                await unrelated_work(stub)
            assert cred.header is None and not cred.blocked
            assert not await cred.recover(401, None, None)  # Redis skipped: at once
            assert "credential store (Redis) cannot be reached" in cred.explain()
            with pytest.raises(CredentialsUnavailable):
                await auth.forget("up")
        assert stub.commands == ["HGET"]  # asked once; skipped since
        auth.close()


@pytest.mark.anyio
async def test_a_credential_is_held_by_one_store_of_a_config_directory_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hubs on one config directory: the second refresh of a server's credential waits for the first."""
    monkeypatch.setenv(KEY_ENV, "one passphrase")
    one, two = CredentialStore(tmp_path), CredentialStore(tmp_path)
    order: list[str] = []
    held, release = anyio.Event(), anyio.Event()

    async def first() -> None:
        async with one.exclusive("remote"):
            order.append("one in")
            held.set()
            await release.wait()
            order.append("one out")

    async def second() -> None:
        async with two.exclusive("remote"):
            order.append("two in")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await held.wait()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()  # the second is waiting for the lock
            assert order == ["one in"]
            async with two.exclusive("other"):  # another server's credential is not held up
                order.append("other")
            release.set()
    assert order == ["one in", "other", "one out", "two in"]
    one.close()
    two.close()


@pytest.mark.anyio
async def test_a_credential_written_while_another_process_holds_the_file_does_not_stall_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewed token was written on the event loop: while another process held upstream-auth.db's lock (a
    stdio hub on the same config directory, `onemcp auth upstream login`) the whole hub stood still up to the
    busy timeout (30 s), and the rotated refresh token was then lost. The write runs on a worker thread now:
    the loop goes on (an unrelated request; another server's credential is read), and the write lands once
    the lock is free."""
    monkeypatch.setenv(KEY_ENV, "one passphrase")
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", BUSY)
    store = CredentialStore(tmp_path)
    store.save("other", {"url": UP})
    written, began = anyio.Event(), threading.Event()
    save = store.save

    def saving(server: str, doc: dict[str, Any]) -> None:
        began.set()
        save(server, doc)

    monkeypatch.setattr(store, "save", saving)

    async def renewed() -> None:
        await store.write("remote", {"url": UP, "tokens": {"access_token": "new"}})
        written.set()

    with anyio.fail_after(10), caplog.at_level(logging.ERROR, logger="onemcp.upstream.oauth"):
        with held_sqlite(tmp_path / "upstream-auth.db") as release:
            async with anyio.create_task_group() as tg:
                tg.start_soon(renewed)
                await anyio.to_thread.run_sync(began.wait, 5)  # the write began (wherever it runs)
                assert await RateLimiter(60, 1).take("someone else") == 0  # the unrelated request, meanwhile
                assert store.load("other") == {"url": UP}  # a read does not wait for the write
                assert not written.is_set()  # the write waits for the lock; the loop does not
                release()
        assert store.load("remote") == {"url": UP, "tokens": {"access_token": "new"}}
    assert "cannot store" not in caplog.text
    store.close()


class LinkWritesHeld:
    """The replicas' Redis client, except that writing an authorization link waits for `release`
    (`started` is set when one begins): a slow Redis, or a busy writer thread."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.started, self.release = threading.Event(), threading.Event()

    def set(self, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("onemcp:upstream-auth:link:"):
            self.started.set()
            self.release.wait(30)
        return self.client.set(key, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@NEEDS_REDIS
@pytest.mark.anyio
async def test_a_link_is_handed_out_only_once_every_replica_can_finish_it(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's sign-in on B hands out a link whose callback may reach A (or B: the link is spent there
    through Redis too). It was written to Redis by a thread while the page went out: a callback that
    came back faster than that write (CI, once) found no link: "Unknown or expired authorization"."""
    from onemcp.config.upstream_settings import UpstreamOAuth
    from onemcp.upstream.oauth.client import ServerAuth
    from onemcp.upstream.oauth.flow import Registration

    monkeypatch.setenv(KEY_ENV, "the replicas' passphrase")
    config = ServerConfig(url=UP, oauth=UpstreamOAuth.model_validate({"perUser": True}))
    b = UpstreamAuth(tmp_path, "http://127.0.0.1:1", shared=redis_url)
    a = RedisCredentialStore(redis_url, tmp_path)
    store = b.store
    assert isinstance(store, RedisCredentialStore)
    held = store._redis = LinkWritesHeld(store._redis)
    credential = "remote~alice"
    mine = b.servers[credential] = ServerAuth(b, credential, config)
    mine.state, mine.metadata = (
        "required",
        {"issuer": "https://as.example", "authorization_endpoint": "https://as.example/a"},
    )
    mine.registration = Registration("c1", None, "none", "http://127.0.0.1:1/cb", "https://as.example")
    links: list[str | None] = []

    async def sign_in() -> None:
        links.append(await b.user_link(credential, "browser cookie", config))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sign_in)
            await anyio.to_thread.run_sync(held.started.wait, 30)
            assert links == []  # not handed out while the other replicas cannot read it
            held.release.set()
        link = links[0]
        assert link is not None
        state = dict(parse_qsl(urlsplit(link).query))["state"]
        assert (await a.take_link(state) or {}).get("server") == credential  # A can finish it
    finally:
        held.release.set()
        for each in (a, store):
            each.close()


@pytest.mark.anyio
async def test_a_stopping_hub_waits_for_no_write_held_by_another_process_and_loses_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewed token's write waited for upstream-auth.db's lock (another process holding it: a stdio hub,
    `onemcp auth upstream login`) shielded, up to the busy timeout (30 s), with the hub stopping. The stop
    ends that wait; the write goes on, on its own thread, and the credential's lock is let go only once it
    is done, so another hub never reads (and spends) the refresh token the renewal rotated away."""
    monkeypatch.setenv(KEY_ENV, "one passphrase")
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", BUSY)
    auth = UpstreamAuth(tmp_path, None)
    store, other_hub = auth.store, CredentialStore(tmp_path)
    assert isinstance(store, CredentialStore)
    began, returned = threading.Event(), anyio.Event()
    save = store.save

    def saving(server: str, doc: dict[str, Any]) -> None:
        began.set()
        save(server, doc)

    monkeypatch.setattr(store, "save", saving)

    async def renewal() -> None:
        async with store.exclusive("remote"):
            await store.write("remote", {"url": UP, "tokens": {"refresh_token": "RT2"}})
        returned.set()

    with anyio.fail_after(10), caplog.at_level(logging.INFO, logger="onemcp.upstream.oauth"):
        with held_sqlite(tmp_path / "upstream-auth.db") as release:
            async with anyio.create_task_group() as tg:
                tg.start_soon(renewal)
                await anyio.to_thread.run_sync(began.wait, 5)  # the write began, and waits for the file
                auth.stop()
                await returned.wait()  # the stopping hub waits no more
            assert "storing the credentials of remote goes on" in caplog.text
            lock = os.open(next((tmp_path / "upstream-auth.locks").iterdir()), os.O_RDWR)
            assert not files.try_lock(lock)  # the credential's lock is still held: its write is not done
            os.close(lock)
            release()
        async with other_hub.exclusive("remote"):  # once written, the lock is let go
            assert other_hub.load("remote") == {"url": UP, "tokens": {"refresh_token": "RT2"}}
    assert "cannot store" not in caplog.text
    auth.close()
    other_hub.close()
