"""The authorization endpoint's rules that need no HTTP: who may approve a consent page by default, and
the operator check's key (from the replicas' Redis, off the event loop)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.auth.server.authorize import OperatorCheck, operator_policy
from onemcp.auth.server.shared import open_state
from onemcp.config.model import HubConfig
from support.held_redis import held_redis


@pytest.mark.parametrize("bind_host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_a_loopback_bind_trusts_whoever_reaches_the_page(bind_host: str) -> None:
    assert operator_policy(None, bind_host, None) == "loopback"
    assert operator_policy(None, bind_host, "http://127.0.0.1:3050/mcp") == "loopback"


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", "[::]", "192.168.1.20", "hub.lan", ""])
def test_any_other_bind_asks_for_the_operator_key(bind_host: str) -> None:
    assert operator_policy(None, bind_host, None) == "key"


@pytest.mark.parametrize("public_url", ["https://hub.example.com/mcp", "http://10.0.0.5:3050/mcp", "not a url"])
def test_a_public_url_elsewhere_asks_for_the_key_even_on_loopback(public_url: str) -> None:
    # a reverse proxy on this machine makes a loopback-bound hub reachable from elsewhere
    assert operator_policy(None, "127.0.0.1", public_url) == "key"


def test_the_configured_policy_wins() -> None:
    assert operator_policy("key", "127.0.0.1", None) == "key"
    assert operator_policy("loopback", "0.0.0.0", None) == "loopback"


def test_the_setting_is_read_from_mcp_json() -> None:
    config = HubConfig.model_validate({"onemcp": {"auth": {"oauth": True, "oauthOperator": "key"}}})
    assert config.hub.auth.oauth_operator == "key"
    assert HubConfig.model_validate({"onemcp": {"auth": {"oauth": True}}}).hub.auth.oauth_operator is None
    with pytest.raises(ValueError, match="oauthOperator"):
        HubConfig.model_validate({"onemcp": {"auth": {"oauthOperator": "anyone"}}})


def test_allowed_hosts_elsewhere_ask_for_the_key() -> None:
    """A loopback bind behind a reverse proxy that keeps the public Host (allowedHosts names it)."""
    assert operator_policy(None, "127.0.0.1", None, ["hub.example.com"]) == "key"
    assert operator_policy(None, "127.0.0.1", None, ["localhost:3050", "127.0.0.1"]) == "loopback"


@pytest.mark.anyio
async def test_a_slow_redis_does_not_stall_the_loop_while_the_operator_cookie_key_is_read(tmp_path: Path) -> None:
    """Replicas sign the operator cookie with a key kept in Redis, read when a key is first typed: on a
    worker thread, so the loop goes on meanwhile (on the loop, it timed out and refused the operator)."""
    keys = KeyStore(tmp_path / "keys.db")
    typed = keys.create("ops", ["admin"])
    with held_redis({"GET": b"$32\r\n" + b"k" * 32 + b"\r\n"}) as stub:
        check = OperatorCheck(keys, time.time, open_state(stub.url, time.time).operator_secret)
        seen = []

        async def type_key() -> None:
            seen.append(await check.typed(typed))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(type_key)
                await anyio.to_thread.run_sync(stub.received.wait)
                assert not seen  # the loop runs while Redis holds the answer
                stub.release.set()
    assert stub.commands == ["SET", "GET"]
    cookie = seen[0].cookie
    assert cookie is not None and check.remembered(cookie).key_id == seen[0].key_id
