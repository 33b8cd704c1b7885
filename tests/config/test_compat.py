"""Other tools' configs: what maps cleanly is accepted, the rest is refused with how to write it here."""

from __future__ import annotations

from pathlib import Path

import pytest

from onemcp.config.load import ConfigError, environment, load_config, parse_config
from onemcp.config.model import HubConfig


def parse(text: str, **env: str) -> HubConfig:
    return parse_config(text.encode(), source="mcp.json", env=env)


def test_one_mcp_settings_that_map_cleanly() -> None:
    config = parse(
        """{"serverDefaults": {"requestTimeout": 45000, "connectionTimeout": 10000, "restartOnExit": true},
            "mcpServers": {"a": {"command": "x", "timeout": 20000, "env": ["A=1", "B=two=2"]},
                           "b": {"command": "y", "inheritParentEnv": false}}}"""
    )
    a, b = config.servers["a"], config.servers["b"]
    assert a.timeout == 20 and a.startup_timeout == 10  # 1MCP's milliseconds, converted
    assert b.timeout == 45  # from serverDefaults.requestTimeout
    assert a.env == {"A": "1", "B": "two=2"}


def test_one_mcp_server_defaults_apply_to_the_servers_of_their_transport() -> None:
    """1MCP's serverDefaults may hold env (for commands) and headers (for URLs): each applies where it can."""
    config = parse(
        """{"serverDefaults": {"env": {"LOG": "debug"}, "headers": {"X-Team": "core"}},
            "mcpServers": {"fs": {"command": "x"}, "remote": {"url": "https://r.example/mcp"}}}"""
    )
    assert config.servers["fs"].env == {"LOG": "debug"} and config.servers["fs"].headers == {}
    assert config.servers["remote"].headers == {"X-Team": "core"} and config.servers["remote"].env == {}


def test_one_mcp_settings_that_do_not_map_are_refused_all_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            """{"mcpServers": {"a": {"command": "x", "restartOnExit": false, "inheritParentEnv": true,
                                     "envFilter": ["A*"], "env": ["nope"]}}}"""
        )
    problems = info.value.problems
    assert any("restartOnExit: onemcp always restarts" in p for p in problems)
    assert any("inheritParentEnv" in p and '"env": {"NAME": "${NAME}"}' in p for p in problems)
    assert any("envFilter" in p for p in problems)
    assert any('env[0]: expected "NAME=value"' in p for p in problems)


def test_a_timeout_that_looks_like_milliseconds_is_refused_outside_a_one_mcp_file() -> None:
    with pytest.raises(ConfigError, match=r"timeout: 30000 seconds is over an hour.*30000 ms is 30"):
        parse('{"mcpServers": {"a": {"command": "x", "timeout": 30000}}}')


def test_a_timeout_over_an_hour_is_refused_however_it_is_written() -> None:
    """A number, a string and a ${VAR} alike (the string used to pass): one problem each, the hint once."""
    for written in ("7200", '"7200"', '"${T}"'):
        with pytest.raises(ConfigError) as info:
            parse(f'{{"mcpServers": {{"a": {{"command": "x", "timeout": {written}}}}}}}', T="7200")
        assert len(info.value.problems) == 1 and "timeout" in info.value.problems[0], (written, info.value.problems)
    assert parse('{"mcpServers": {"a": {"command": "x", "timeout": "${T}"}}}', T="3600").servers["a"].timeout == 3600


def test_a_variable_in_a_one_mcp_millisecond_setting_is_milliseconds_too() -> None:
    """In a 1MCP file `"timeout": "${T}"` used to be read as seconds (30000 s) while 30000 was 30 s, and
    `"requestTimeout": "${T}"` was refused: a variable converts as the number it holds would."""
    config = parse(
        """{"serverDefaults": {}, "mcpServers": {"a": {"command": "x", "timeout": 30000},
            "b": {"command": "x", "timeout": "${T}"}, "c": {"command": "x", "requestTimeout": "${T}"}}}""",
        T="30000",
    )
    assert [config.servers[n].timeout for n in "abc"] == [30, 30, 30]
    with pytest.raises(ConfigError) as info:
        parse('{"serverDefaults": {}, "mcpServers": {"b": {"command": "x", "timeout": "${UNSET_T}"}}}')
    assert info.value.problems.count("mcpServers.b.timeout: environment variable ${UNSET_T} is not set") == 1


def test_a_timeout_in_seconds_is_never_read_as_milliseconds_in_a_mixed_file() -> None:
    """An entry pasted from a 1MCP config makes the file 1MCP's (milliseconds): another entry's
    `timeout: 2` would silently become 2 ms. It is refused, naming what made the file 1MCP's."""
    with pytest.raises(ConfigError, match=r"time\.timeout: 2 would be 2 ms.*mcpServers\.other\.connectionTimeout"):
        parse(
            '{"mcpServers": {"time": {"command": "x", "timeout": 2},'
            ' "other": {"command": "y", "connectionTimeout": 20000}}}'
        )


def test_every_missing_variable_is_reported_and_dollar_names_work() -> None:
    with pytest.raises(ConfigError) as info:
        parse('{"mcpServers": {"a": {"command": "$CMD", "env": {"T": "${API_TOKEN}", "U": "${USER_KEY}"}}}}')
    text = str(info.value)
    assert "${CMD}" in text and "${API_TOKEN}" in text and "${USER_KEY}" in text
    config = parse('{"mcpServers": {"a": {"command": "$CMD", "args": ["^x$", "$1"]}}}', CMD="run")
    assert config.servers["a"].command == "run" and config.servers["a"].args == ["^x$", "$1"]


def test_a_dot_env_beside_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text('# keys\nexport API_TOKEN="from-dotenv"\nOTHER=x\n')
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {"a": {"command": "x", "env": {"T": "${API_TOKEN}", "O": "$OTHER"}}}}')
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setenv("OTHER", "from-the-process")  # the process wins over .env
    assert load_config(path).servers["a"].env == {"T": "from-dotenv", "O": "from-the-process"}
    assert environment(tmp_path / "elsewhere" / "mcp.json")["OTHER"] == "from-the-process"
