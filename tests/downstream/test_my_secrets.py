"""`/me/secrets` and `onemcp auth secret mine`: a user keeps their own `${user:NAME}` values.

A hub with API keys and a real stdio server whose env takes `${user:GH_TOKEN}`. Alice stores her
value herself (HTTP, then the CLI), and her next call runs with it; bob sees only his own state;
a key whose scopes do not reach the server sees no name and cannot set one; bad bodies get clear
errors and store nothing; no token is a 401.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.main import main
from support.hub import running_hub
from upstream.test_user_secrets import answer, call, gh_hub_config

pytestmark = pytest.mark.anyio


async def test_a_user_sets_their_own_value_and_only_theirs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="onemcp.audit")
    config, path = gh_hub_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.db")
    alice, bob = keys.create("alice", ["mcp"]), keys.create("bob", ["mcp"])
    narrow = keys.create("narrow", ["server:elsewhere"])

    def auth(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            mine = f"{hub.base}/me/secrets"
            listed: dict[str, Any] = (await http.get(mine, headers=auth(alice))).json()
            assert listed["names"] == {"GH_TOKEN": {"servers": ["gh"], "set": False, "updated": None}}
            assert "GH_TOKEN" in json.dumps(await call(http, hub, alice))  # refused: nothing stored yet

            r = await http.put(f"{mine}/GH_TOKEN", json={"value": "alice-token-0123456789"}, headers=auth(alice))
            assert r.status_code == 200 and r.json() == {"name": "GH_TOKEN", "stored": True, "servers": ["gh"]}
            value, _ = answer(await call(http, hub, alice))
            assert value == "alice-token-0123456789"
            assert (await http.get(mine, headers=auth(alice))).json()["names"]["GH_TOKEN"]["set"] is True
            assert (await http.get(mine, headers=auth(bob))).json()["names"]["GH_TOKEN"]["set"] is False
            assert "GH_TOKEN" in json.dumps(await call(http, hub, bob))  # hers is not his

            # a name no server takes, or one only a server outside the key's scopes takes
            r = await http.put(f"{mine}/NOPE", json={"value": "x"}, headers=auth(alice))
            assert r.status_code == 404 and "yours: GH_TOKEN" in r.json()["error"]
            assert (await http.get(mine, headers=auth(narrow))).json()["names"] == {}
            r = await http.put(f"{mine}/GH_TOKEN", json={"value": "x" * 20}, headers=auth(narrow))
            assert r.status_code == 404 and "yours: none" in r.json()["error"]
            # a value it kept from before (its scopes narrowed since): listed, and it may delete it
            narrow_id = f"key:{narrow.split('_')[1]}"
            hub.app.hub.user_secrets.set(narrow_id, "GH_TOKEN", "left-over-value-000000")
            left: dict[str, Any] = (await http.get(mine, headers=auth(narrow))).json()
            assert left["names"]["GH_TOKEN"]["servers"] == [] and left["names"]["GH_TOKEN"]["set"] is True
            r = await http.delete(f"{mine}/GH_TOKEN", headers=auth(narrow))
            assert r.status_code == 200 and r.json()["forgotten"] is True

            # bad bodies: a clear error, nothing stored
            for body, status, said in (
                (b"not json", 400, "must be JSON"),
                (b'{"value": "a", "other": 1}', 400, "nothing else"),
                (b'{"value": 7}', 400, "nothing else"),
                (b'{"value": ""}', 400, "one credential"),
                (b'{"value": "short-value"}', 400, "one credential"),
                (b'{"value": "key:3f2a9c1d7e4b0000"}', 400, "principal's id"),
                (b'{"value": "two lines of a value\\nsecond"}', 400, "one credential"),
                (b'{"value": "with a space in the value"}', 400, "one credential"),
                (b'{"value": "tab\\tin-a-value-0123456789"}', 400, "one credential"),
                (json.dumps({"value": "caf\u00e9-not-ascii-0123456"}).encode(), 400, "one credential"),
                (json.dumps({"value": "c1\u0085-control-0123456789"}).encode(), 400, "one credential"),
                (json.dumps({"value": "x" * 9000}).encode(), 413, "too large"),
                (json.dumps({"value": "x" * 20000}).encode(), 413, "too large"),
            ):
                r = await http.put(f"{mine}/GH_TOKEN", content=body, headers=auth(alice))
                assert r.status_code == status and said in r.json()["error"], (body[:30], r.text)
            assert answer(await call(http, hub, alice))[0] == "alice-token-0123456789"
            assert (await http.post(mine, headers=auth(alice))).status_code == 405
            assert (await http.get(f"{mine}/GH_TOKEN", headers=auth(alice))).status_code == 405
            assert (await http.get(mine)).status_code == 401
            assert "alice-token-0123456789" not in caplog.text  # the audit lines name, never show, the value
            assert "user secret set principal=key:" in caplog.text

            # the CLI, as alice ($ONEMCP_TOKEN), in a thread: the hub answers on this event loop
            monkeypatch.setenv(TOKEN_ENV, alice)
            monkeypatch.setattr("sys.stdin", io.StringIO("rotated-token-0123456789\n"))
            cli = ["auth", "secret", "mine"]
            assert await anyio.to_thread.run_sync(main, [*cli, "set", "GH_TOKEN", "--url", hub.url]) == 0
            assert answer(await call(http, hub, alice))[0] == "rotated-token-0123456789"
            assert await anyio.to_thread.run_sync(main, [*cli, "list", "--url", hub.url]) == 0
            assert "GH_TOKEN" in capsys.readouterr().out
            monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
            assert await anyio.to_thread.run_sync(main, [*cli, "set", "NOPE", "--url", hub.url]) == 1
            assert "no server you reach takes" in capsys.readouterr().err
            assert await anyio.to_thread.run_sync(main, [*cli, "delete", "GH_TOKEN", "--url", hub.url]) == 0
            assert "GH_TOKEN" in json.dumps(await call(http, hub, alice))  # forgotten: refused again
            assert await anyio.to_thread.run_sync(main, [*cli, "delete", "GH_TOKEN", "--url", hub.url]) == 1
            # a name that is no NAME never leaves the CLI (it would be a path on the hub)
            assert main([*cli, "delete", "../../api/v1/servers/gh/restart", "--url", hub.url]) == 2
            # ... and on the wire it is refused, its audit line naming no forged field
            r = await http.put(f"{mine}/x%20principal=key:bob", json={"value": "x" * 20}, headers=auth(alice))
            assert r.status_code == 404
            assert "principal=key:bob" not in caplog.text and "(not a NAME)" in caplog.text


async def test_a_principal_that_stands_for_everyone_may_not_choose_for_all(tmp_path: Path) -> None:
    config, path = gh_hub_config(tmp_path, auth=False)  # no auth: every caller is the one anonymous principal
    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            mine = f"{hub.base}/me/secrets"
            assert (await http.get(mine)).json()["names"]["GH_TOKEN"]["servers"] == ["gh"]
            r = await http.put(f"{mine}/GH_TOKEN", json={"value": "everyones-value-0123456"})
            assert r.status_code == 403 and "every caller of this hub" in r.json()["error"]
            assert hub.app.hub.user_secrets.listing() == []
