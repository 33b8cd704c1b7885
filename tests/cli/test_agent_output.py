"""What the agent commands print: results, a tool in full (onemcp.cli.agent_output)."""

from __future__ import annotations

import json

import pytest

from onemcp.cli.agent_output import (
    content_text,
    first_line,
    print_result,
    ranked,
    required_first,
    savings,
    search_hit,
    show_tool,
)


def test_required_arguments_come_first() -> None:
    schema = {"type": "object", "properties": {"x": {}, "y": {}, "z": {}}, "required": ["z", "y"]}
    assert list(required_first(schema)["properties"]) == ["y", "z", "x"]
    assert required_first(None) == {"type": "object"}


def test_content_text_names_what_is_not_text() -> None:
    result = {
        "content": [
            {"type": "text", "text": "a"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "x://y", "text": "inline"}},
            {"type": "resource_link", "uri": "x://z", "name": "z"},
        ]
    }
    assert content_text(result).splitlines() == [
        "a",
        "[image: image/png, about 3 bytes; --format json has the data]",
        "inline",
        "[resource link: x://z z]",
    ]
    assert content_text({"content": [], "structuredContent": {"n": 1}}) == '{\n  "n": 1\n}'


def test_first_line_skips_blank_lines() -> None:
    assert first_line("\n  \n  Reads a file.  \nMore.") == "Reads a file."
    assert first_line(None) == ""


def test_a_tool_error_goes_to_stderr_and_reports_failure(capsys: pytest.CaptureFixture[str]) -> None:
    failed = {"isError": True, "content": [{"type": "text", "text": "no such file\x1b[31m"}]}
    assert print_result(failed, "text") is False
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("onemcp: the tool reported an error: no such file")
    assert "\x1b" not in err  # an upstream's escape sequence never reaches the terminal
    assert print_result({"content": [{"type": "text", "text": "ok"}]}, "json") is True
    assert json.loads(capsys.readouterr().out) == {"content": [{"type": "text", "text": "ok"}]}


def test_a_tool_in_full_ends_with_a_run_line_for_its_required_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    tool = {
        "name": "fs__read_file",
        "description": "Read a file.",
        "inputSchema": {
            "type": "object",
            "properties": {"encoding": {"type": "string", "default": "utf-8"}, "path": {"type": "string"}},
            "required": ["path"],
        },
    }
    show_tool("fs", "read_file", tool, as_json=False)
    out = capsys.readouterr().out
    assert "fs/read_file  (hub name: fs__read_file)" in out
    assert out.index("* path") < out.index("encoding")  # required first
    assert '(default "utf-8")' in out
    assert out.rstrip().splitlines()[-1] == 'onemcp run fs/read_file --args \'{"path": "<string>"}\''
    show_tool("fs", "read_file", tool, as_json=True)
    shown = json.loads(capsys.readouterr().out)
    assert list(shown["inputSchema"]["properties"]) == ["path", "encoding"]


def test_what_search_mode_saves_is_never_a_negative_saving() -> None:
    assert savings(1000, 50) == " (95% less)"
    assert savings(100, 300) == " (200 more than the full list: this view is small enough to list in full)"
    assert savings(0, 0) == "" and savings(300, 300) == ""


def test_a_search_answer_becomes_the_names_it_ranks_and_each_a_hit() -> None:
    text = (
        "a__echo_twice(message: string) - Echo it twice.\n"
        "a__echo(message: string, loud?: boolean) - Echo a message back as text.\n"
        "gone__tool() - Listed when searched, not any more.\n"
        "(3 of 42 tools. Call one by name; get_tool_schema shows its full schema;"
        " not here? search again in other words.)"
    )
    names = {"a__echo", "a__echo_twice"}  # each line's own name, not another's that begins it
    assert ranked(text, names) == (["a__echo_twice", "a__echo", "gone__tool"], 42)
    assert ranked("No tool matches 'zz' among 42 tools. Try other words.", names) == ([], 42)
    tool = {
        "name": "a__echo",
        "description": "Echo a message back as text.\nMore.",
        "inputSchema": {"type": "object", "properties": {"loud": {"type": "boolean"}, "message": {"type": "string"}},
                        "required": ["message"]},
    }  # fmt: skip
    assert search_hit(2, "a__echo", "a", "echo", tool) == {
        "rank": 2,
        "name": "a__echo",
        "server": "a",
        "tool": "echo",
        "description": "Echo a message back as text.",
        "parameters": [
            {"name": "message", "type": "string", "required": True},
            {"name": "loud", "type": "boolean", "required": False},
        ],
    }
    assert search_hit(3, "gone__tool", None, "gone__tool", None)["parameters"] is None
