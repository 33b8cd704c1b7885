"""The environment a stdio upstream is started with: an allow-list plus the config's env."""

from __future__ import annotations

import sys

import anyio
import pytest

from onemcp.config.model import ServerConfig
from onemcp.upstream.transports.base import TransportError
from onemcp.upstream.transports.stdio import INHERITED_ENV, WRITE_HIGH_WATER, StdioTransport, child_env


def test_secrets_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_TEST_SECRET", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    env = child_env({})
    assert "ONEMCP_TEST_SECRET" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "GITHUB_TOKEN" not in env
    assert "hunter2" not in env.values()


def test_only_allow_listed_variables_are_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("HOME", "/home/test")
    monkeypatch.setenv("ONEMCP_TEST_OTHER", "x")
    env = child_env({})
    assert env["PATH"] == "/opt/bin:/usr/bin"
    assert env["HOME"] == "/home/test"
    assert set(env) <= set(INHERITED_ENV)


def test_unset_allow_listed_variables_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NVM_DIR", raising=False)
    assert "NVM_DIR" not in child_env({})


def test_config_env_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEMCP_TEST_GIVEN", raising=False)
    env = child_env({"ONEMCP_TEST_GIVEN": "from-config", "GITHUB_TOKEN": "explicit"})
    assert env["ONEMCP_TEST_GIVEN"] == "from-config"
    assert env["GITHUB_TOKEN"] == "explicit"


def test_config_env_overrides_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/hub")
    assert child_env({"HOME": "/srv/child"})["HOME"] == "/srv/child"


def test_config_env_of_secret_name_does_not_pull_the_hub_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "hub-value")
    assert child_env({"API_KEY": "child-value"})["API_KEY"] == "child-value"


def test_child_env_does_not_mutate_its_argument() -> None:
    extra = {"A": "1"}
    child_env(extra)
    assert extra == {"A": "1"}


@pytest.mark.anyio
async def test_a_child_that_stops_reading_makes_writers_wait_not_the_hub_buffer() -> None:
    # a server that never reads its stdin: bodies wait in their callers, one is written only when there is
    # room, and one that gave up at the server's timeout is never written (nor delivered later)
    config = ServerConfig.model_validate(
        {"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"], "timeout": 0.5}
    )
    transport = StdioTransport("deaf", config)
    body = b"x" * (512 * 1024)
    refused: list[str] = []

    async def send() -> None:
        try:
            await transport.send({"jsonrpc": "2.0", "method": "ping"}, body)
        except TransportError as exc:
            refused.append(str(exc))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await transport.open(tg, lambda m, i: None, lambda m, e: None)
            try:
                async with anyio.create_task_group() as senders:
                    for _ in range(12):
                        senders.start_soon(send)
                stdin = transport._stdin
                assert stdin is not None
                assert stdin.get_write_buffer_size() <= WRITE_HIGH_WATER + len(body) + 1  # was 12 bodies
                assert refused and set(refused) == {"the server is not reading its input"}
            finally:
                await transport.aclose()
