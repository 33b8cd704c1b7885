"""One config, three formats: JSON (with comments), YAML and TOML give the same model and the same errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from onemcp.config.formats import FormatError, format_of, parse, strip_jsonc
from onemcp.config.load import ConfigError, load_config

SAME = {
    "mcp.json": """{
  // a comment
  "mcpServers": {
    "time": {"command": "uvx", "args": ["mcp-server-time"], "timeout": 30, "tags": ["util"],},
  },
  "onemcp": {"prefixMode": "always"}
}""",
    "mcp.yaml": """# a comment
mcpServers:
  time:
    command: uvx
    args: [mcp-server-time]
    timeout: 30
    tags: [util]
onemcp:
  prefixMode: always
""",
    "mcp.toml": """# a comment
[mcpServers.time]
command = "uvx"
args = ["mcp-server-time"]
timeout = 30
tags = ["util"]

[onemcp]
prefixMode = "always"
""",
}

DUPLICATE = {
    "mcp.json": '{"mcpServers": {"time": {"command": "a"}, "time": {"command": "b"}}}',
    "mcp.yaml": "mcpServers:\n  time: {command: a}\n  time: {command: b}\n",
    "mcp.toml": '[mcpServers.time]\ncommand = "a"\n[mcpServers.time]\ncommand = "b"\n',
}

TYPO = {
    "mcp.json": '{"mcpServers": {"time": {"comand": "uvx"}}}',
    "mcp.yaml": "mcpServers:\n  time:\n    comand: uvx\n",
    "mcp.toml": '[mcpServers.time]\ncomand = "uvx"\n',
}


@pytest.mark.parametrize("name", list(SAME))
def test_the_same_config_in_each_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(SAME[name])
    config = load_config(path)
    assert config.servers["time"].args == ["mcp-server-time"] and config.servers["time"].timeout == 30
    assert config.servers["time"].tags == ["util"] and config.hub.prefix_mode.value == "always"


@pytest.mark.parametrize("name", list(DUPLICATE))
def test_a_key_written_twice_is_refused_in_each_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(DUPLICATE[name])
    with pytest.raises(ConfigError, match="time"):
        load_config(path)


def test_a_json_key_written_twice_is_said_with_its_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"mcpServers": {\n  "time": {"command": "uvx", "args": ["x"]},\n'
        '  // "git": {"args": []},\n  "git": {"command": "uvx", "args": ["{\\"args\\""],\n  "args": []}}}'
    )
    with pytest.raises(ConfigError, match=r"'args' is written twice in one object at mcpServers\.git\.args \(line 5\)"):
        load_config(path)


@pytest.mark.parametrize("name", list(TYPO))
def test_a_typo_says_what_was_meant_in_each_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(TYPO[name])
    with pytest.raises(ConfigError, match="unknown key 'comand'; did you mean 'command'"):
        load_config(path)


def test_jsonc_keeps_strings_and_lines() -> None:
    text = '{"a": "http://x//y", /* two\nlines */ "b": [1,],}'
    assert parse(text.encode()) == {"a": "http://x//y", "b": [1]}
    assert strip_jsonc(text).count("\n") == 1  # line numbers in errors stay right
    with pytest.raises(FormatError, match=r"line 2"):
        parse(b'{"a": 1,\n "b": }')


def test_format_by_extension() -> None:
    assert [format_of(p) for p in ("a.json", "a.JSONC", "a.yml", "a.yaml", "a.toml", "a")] == [
        "json", "json", "yaml", "yaml", "toml", "json",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        '{"mcpServers": {}, // x\n}',
        '{"mcpServers": {}, /* y */ }',
        '{"mcpServers": {}, /* y */ // z\n /* w\n */ }',
        '{"mcpServers": {"a": {"command": "x", "args": ["a", // one\n]}}}',
    ],
)
def test_a_trailing_comma_before_a_comment_is_valid_jsonc(text: str) -> None:
    assert parse(text.encode())["mcpServers"] is not None


def test_strings_with_comment_marks_and_commas_stay_as_written() -> None:
    text = '{"a": "x,}", "b": "//,]", "c": "/* ,} */", "d": [",]", // c\n],}'
    assert parse(text.encode()) == {"a": "x,}", "b": "//,]", "c": "/* ,} */", "d": [",]"]}
    with pytest.raises(FormatError, match="not valid JSON"):
        parse(b'{"a": 1, // x\n "b"}')


def test_a_comma_before_a_comment_holding_a_bracket_is_kept() -> None:
    """A commented-out entry after a real one: its brackets are not the object's end."""
    text = '{"a": 1, // "b": {"c": []},\n "d": 2, /* } */ "e": [3, /* ] */ 4,],}'
    assert orjson.loads(strip_jsonc(text)) == {"a": 1, "d": 2, "e": [3, 4]}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            'a:\n  X-Key: "sk-supersecret-9876543210\n  b: [\n',
            "while scanning a quoted scalar (line 2, column 10): found unexpected end of stream (line 4, column 1)",
        ),
        ("a: [1, 2\nb: sk-supersecret-9876543210\n", "while parsing a flow sequence (line 1, column 4)"),
    ],
)
def test_a_yaml_error_says_where_not_the_lines_around_it(text: str, said: str) -> None:
    """PyYAML's message quotes the lines around the error, a value being typed (a key) with them: a reload's
    refusal showed it in /health (config.lastError, to the operator scope too) and in the log."""
    with pytest.raises(FormatError) as refused:
        parse(text.encode(), "yaml")
    assert said in str(refused.value) and "supersecret" not in str(refused.value) and "\n" not in str(refused.value)
