"""Per-user upstream credentials: each principal's own `${user:NAME}` values, its own connection.

Unit: placeholders found, rendered per principal, defaults for the shared connection, missing
values named; the store encrypts at rest and makes no file until a value is set. End to end: a
hub with API keys and a real stdio server whose env takes `${user:GH_TOKEN}`; values set with
`onemcp auth secret set` (stdin), two users each reach it with their own token in their own
process, a user's sessions (and 2026-07-28 requests) share that user's process, and a user
without a value gets an error that says what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from onemcp.config import sqlite as sqlite_module
from onemcp.config.model import ServerConfig
from onemcp.upstream import user_secrets
from onemcp.upstream.user_secrets import MissingSecrets, UnsendableSecrets, UserSecrets
from support.held_sqlite import BUSY, held_sqlite
from support.hub import HEADERS, INIT, RunningHub, running_hub
from support.inprocess import modern_request

DEADLINE = 60.0


def test_placeholders_render_per_principal_and_default_for_the_shared_connection() -> None:
    config = ServerConfig.model_validate(
        {
            "url": "http://x/mcp",
            "headers": {"Authorization": "Bearer ${user:GH_TOKEN}", "X-Org": "${user:ORG:-acme}"},
        }
    )
    assert user_secrets.per_user(config) and user_secrets.needs(config) == ["GH_TOKEN", "ORG"]
    mine = user_secrets.render(config, {"GH_TOKEN": "t1", "ORG": "o1"})
    assert mine.headers == {"Authorization": "Bearer t1", "X-Org": "o1"}
    shared = user_secrets.render(config, None)
    assert shared.headers == {"X-Org": "acme"}  # an empty bearer is dropped, not sent
    with pytest.raises(MissingSecrets) as missing:
        user_secrets.render(config, {"ORG": "o1"})
    assert missing.value.names == ["GH_TOKEN"]
    assert not user_secrets.per_user(ServerConfig.model_validate({"command": "x", "env": {"A": "$HOME"}}))


@pytest.mark.parametrize(
    "value", ["line\r\nX-Injected: 1", "nul\x00", "t\u00f6k\u00e9n", "\u0442\u043e\u043a\u0435\u043d"]
)
def test_a_value_its_header_cannot_carry_is_named_never_shown(value: str) -> None:
    """A value stored before `auth secret set` refused control characters, or a non-ASCII one: the header
    it fills cannot carry it (a line break would add a header of the caller's choosing)."""
    config = ServerConfig.model_validate(
        {"url": "http://x/mcp", "headers": {"Authorization": "Bearer ${user:GH_TOKEN}", "X-Org": "${user:ORG}"}}
    )
    with pytest.raises(UnsendableSecrets) as refused:
        user_secrets.render(config, {"GH_TOKEN": value, "ORG": "o1"}, "key:a")
    assert refused.value.names == ["GH_TOKEN"] and "Authorization header" in refused.value.where
    assert value not in str(refused.value)
    assert (
        user_secrets.render(config, {"GH_TOKEN": "tab\tok", "ORG": "o1"}).headers["Authorization"] == "Bearer tab\tok"
    )
    stdio = ServerConfig.model_validate({"command": "x", "env": {"TOKEN": "${user:GH_TOKEN}"}})
    assert user_secrets.render(stdio, {"GH_TOKEN": "t\u00f6k\u00e9n\r\n"}).env == {"TOKEN": "t\u00f6k\u00e9n\r\n"}
    with pytest.raises(UnsendableSecrets) as refused:
        user_secrets.render(stdio, {"GH_TOKEN": "nul\x00"})
    assert refused.value.names == ["GH_TOKEN"] and refused.value.where == "TOKEN: no NUL"


def test_the_store_encrypts_and_makes_no_file_until_a_value_is_set(tmp_path: Path) -> None:
    store = UserSecrets(tmp_path)
    assert store.values("key:a") == {} and store.listing() == [] and not (tmp_path / "user-secrets.db").exists()
    store.set("key:a", "GH_TOKEN", "ghp_secret_value")
    store.set("key:b", "GH_TOKEN", "other")
    assert store.values("key:a") == {"GH_TOKEN": "ghp_secret_value"}
    assert [(p, n) for p, n, _ in store.listing()] == [("key:a", "GH_TOKEN"), ("key:b", "GH_TOKEN")]
    store.close()
    assert b"ghp_secret_value" not in (tmp_path / "user-secrets.db").read_bytes()
    assert (tmp_path / "user-secrets.db").stat().st_mode & 0o777 == 0o600
    again = UserSecrets(tmp_path)
    assert again.delete("key:a", "GH_TOKEN") and again.values("key:a") == {}


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config.parent)}
    command = [sys.executable, "-m", "onemcp", "auth", "secret", *args, "--config", str(config)]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)


async def call(http: httpx.AsyncClient, hub: RunningHub, key: str, *, modern: bool = False) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {key}"}
    params: dict[str, Any] = {"name": "getenv", "arguments": {"name": "FIXTURE_TOKEN"}}
    if modern:  # a stateless 2026-07-28 request: no session, only the principal
        headers, body = modern_request("tools/call", **params)
        doc: dict[str, Any] = (await http.post(hub.url, json=body, headers={**headers, **auth})).json()
        return doc
    r = await http.post(hub.url, json=INIT, headers={**HEADERS, **auth})
    h = {**HEADERS, **auth, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
    doc = (await http.post(hub.url, json=body, headers=h)).json()
    return doc


def gh_hub_config(tmp_path: Path, *, auth: bool = True) -> tuple[dict[str, Any], Path]:
    """A hub whose one server `gh` (a stdio fixture with a getenv tool) takes `${user:GH_TOKEN}` as its
    FIXTURE_TOKEN; with API keys and audit lines in the log, or without auth. Written to mcp.json."""
    fx = fixture_command("--env-tool")
    server = {"command": fx[0], "args": fx[1:], "env": {"FIXTURE_TOKEN": "${user:GH_TOKEN}"}}
    config: dict[str, Any] = {"mcpServers": {"gh": server}}
    if auth:
        config["onemcp"] = {"auth": {"apiKeys": True}, "audit": "-"}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    return config, path


def answer(doc: dict[str, Any]) -> tuple[str, str]:
    value, pid = doc["result"]["content"][0]["text"].rsplit(" pid=", 1)
    return value, pid


@pytest.mark.anyio
async def test_two_users_reach_one_server_each_with_their_own_token(tmp_path: Path) -> None:
    fx = fixture_command("--env-tool")
    server = {"command": fx[0], "args": fx[1:], "env": {"FIXTURE_TOKEN": "${user:GH_TOKEN}"}}
    config = {"mcpServers": {"gh": server}, "onemcp": {"auth": {"apiKeys": True}}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    store = KeyStore(tmp_path / "keys.db")
    alice, bob, carol = (store.create(n, ["mcp"]) for n in ("alice", "bob", "carol"))
    ids = {name: f"key:{key.split('_')[1]}" for name, key in (("alice", alice), ("bob", bob), ("carol", carol))}
    assert cli(path, "set", ids["alice"], "GH_TOKEN", stdin="alice-token\n").returncode == 0
    assert cli(path, "set", ids["bob"], "GH_TOKEN", stdin="bob-token\n").returncode == 0
    assert cli(path, "set", ids["bob"], "GH_TOKEN").returncode == 2  # no value on stdin: refused
    listed = cli(path, "list").stdout
    assert ids["alice"] in listed and "alice-token" not in listed
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            shared_pid = str(hub.app.hub.pool.get("gh").transport.pid)  # type: ignore[union-attr]
            a_value, a_pid = answer(await call(http, hub, alice))
            b_value, b_pid = answer(await call(http, hub, bob))
            assert (a_value, b_value) == ("alice-token", "bob-token")
            assert len({a_pid, b_pid, shared_pid}) == 3  # a process each, neither the shared one
            assert answer(await call(http, hub, alice)) == ("alice-token", a_pid)  # her next session: hers again
            assert answer(await call(http, hub, alice, modern=True)) == ("alice-token", a_pid)  # and 2026-07-28
            refused = await call(http, hub, carol)
            message = json.dumps(refused)
            assert "error" in refused and "GH_TOKEN" in message and "onemcp auth secret set" in message, refused
            assert os.environ.get("FIXTURE_TOKEN") is None
            # the operator rotates alice's value (another process writes the store): her next call
            # runs on a new process with it; deleted, her calls are refused, not served with the old one
            assert cli(path, "set", ids["alice"], "GH_TOKEN", stdin="alice-rotated\n").returncode == 0
            rotated, rotated_pid = answer(await call(http, hub, alice))
            assert rotated == "alice-rotated" and rotated_pid != a_pid
            assert answer(await call(http, hub, bob)) == ("bob-token", b_pid)  # bob's values did not change
            assert cli(path, "delete", ids["alice"], "GH_TOKEN").returncode == 0
            assert "GH_TOKEN" in json.dumps(await call(http, hub, alice))


@pytest.mark.anyio
async def test_a_value_set_while_another_process_holds_the_file_leaves_the_calls_reading_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value is set on a worker thread (`PUT /me/secrets`, the admin API), where it may wait for
    user-secrets.db's lock (`onemcp auth secret set` in another process) up to the busy timeout. It held
    the store's one lock meanwhile, and every call to a server with `${user:...}` values reads the store on
    the event loop (`version`, `values`): the whole hub stood still behind it. Reads go through a connection
    and a lock of their own now (WAL: they never wait for a writer)."""
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", BUSY)
    store = UserSecrets(tmp_path)
    store.set("alice", "TOKEN", "a1")
    version = store.version()
    done, began = anyio.Event(), threading.Event()
    assert store._db is not None  # its statements are traced: the write began (and waits for the lock)

    def traced(sql: str) -> None:
        if sql.startswith("insert"):
            began.set()

    store._db.set_trace_callback(traced)

    async def put() -> None:
        await anyio.to_thread.run_sync(store.set, "bob", "TOKEN", "b1")
        done.set()

    with anyio.fail_after(10), held_sqlite(tmp_path / user_secrets.FILE) as release:
        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.to_thread.run_sync(began.wait, 5)
            assert store.values("alice") == {"TOKEN": "a1"} and store.version() == version  # a call, meanwhile
            assert not done.is_set()
            release()
    assert store.values("bob") == {"TOKEN": "b1"} and store.version() != version
    store.close()
