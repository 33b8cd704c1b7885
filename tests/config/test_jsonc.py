"""Editing JSONC in place: the change is written where it is, every comment and the rest's form stay."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onemcp.config import formats
from onemcp.config.jsonc import JsoncError, parse, patch

STARTER = """{
  "$schema": "https://example.com/mcp.schema.json",
  // onemcp on a laptop. Add servers with `onemcp mcp add`
  "mcpServers": {
    // a clock
    "time": {"command": "python", "args": ["-m", "mcp_server_time"], "tags": ["util"]}
    // "git": {"command": "uvx", "args": ["mcp-server-git"]},
  },
  "mcpTemplates": {
    // "memory": {"command": "npx"}
  },
  "onemcp": {
    "exposure": "auto"  // many tools? search_tools
  }
}
"""


def edited(text: str, change: Callable[[Any], None]) -> str:
    """`text` with `change` made to its document, checked to read back as the changed document."""
    before = formats.parse(text.encode())
    after = copy.deepcopy(before)
    change(after)
    out = patch(text, before, after)
    assert formats.parse(out.encode()) == after, out
    return out


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("//")]


def test_adding_a_server_goes_after_the_last_one_as_its_siblings_are_written() -> None:
    out = edited(STARTER, lambda d: d["mcpServers"].update(t2={"command": "x", "args": ["a"]}))
    assert comments(out) == comments(STARTER)
    assert out == STARTER.replace(
        '"tags": ["util"]}\n', '"tags": ["util"]},\n    "t2": {"command": "x", "args": ["a"]}\n'
    )


def test_disabling_and_enabling_touch_the_one_member() -> None:
    off = edited(STARTER, lambda d: d["mcpServers"]["time"].update(disabled=True))
    assert off == STARTER.replace('"tags": ["util"]}', '"tags": ["util"], "disabled": true}')
    assert edited(off, lambda d: d["mcpServers"]["time"].pop("disabled")) == STARTER


def test_removing_a_server_takes_its_line_and_the_comma_before_it() -> None:
    text = STARTER.replace('"tags": ["util"]}\n', '"tags": ["util"]},\n    "t2": {"command": "x"}  // mine\n')
    out = edited(text, lambda d: d["mcpServers"].pop("t2"))
    assert out == STARTER  # its line's own comment went with it; the others stay
    gone = edited(STARTER, lambda d: d["mcpServers"].pop("time"))
    assert comments(gone) == comments(STARTER)
    assert formats.parse(gone.encode())["mcpServers"] == {}


@pytest.mark.parametrize("after", [" /* added by hand */\n  }", " }"])
def test_comment_lines_before_a_last_member_that_does_not_end_its_line_stay(after: str) -> None:
    """Review hunt s29/z F1: the cut ran from the comma before, taking the comment lines between."""
    text = (
        '{\n  "servers": {\n    "time": {"command": "t"},\n    // "fetch": {"command": "uvx"},   (off)\n'
        '    // "memory": {"command": "npx"},\n    "git": {"command": "g"}' + after + "\n}\n"
    )
    out = edited(text, lambda d: d["servers"].pop("git"))
    assert comments(out) == comments(text)
    assert ("added by hand" in out) == ("added by hand" in after)
    off = '{\n  "git": {\n    "command": "g",\n    // "args": ["--repository", "/src"],\n    "disabled": true }\n}\n'
    assert comments(edited(off, lambda d: d["git"].pop("disabled"))) == comments(off)  # `mcp enable git`


def test_an_object_of_comments_only_gets_its_first_member_before_them() -> None:
    out = edited(STARTER, lambda d: d["mcpTemplates"].update(m={"command": "y"}))
    assert '"mcpTemplates": {\n    "m": {\n      "command": "y"\n    }\n    // "memory"' in out
    empty = edited('{"mcpServers": {}}  // mine\n', lambda d: d["mcpServers"].update(a={"command": "x"}))
    assert empty.endswith("  // mine\n")


def test_a_new_member_goes_after_a_comment_that_ends_the_last_ones_line() -> None:
    out = edited(STARTER, lambda d: d["onemcp"].update(separator="__"))
    assert '"exposure": "auto",  // many tools? search_tools\n    "separator": "__"\n  }' in out


def test_trailing_commas_crlf_and_one_line_objects_keep_their_style() -> None:
    text = '{\r\n  // c\r\n  "mcpServers": {\r\n    "a": {"command": "x"},\r\n  },\r\n}\r\n'
    out = edited(text, lambda d: d["mcpServers"].update(b={"command": "y"}))
    assert out == text.replace('"x"},\r\n', '"x"},\r\n    "b": {"command": "y"},\r\n')
    assert edited(out, lambda d: d["mcpServers"].pop("b")) == text
    inline = '{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}}} // c'
    assert edited(inline, lambda d: d["mcpServers"].pop("b")) == '{"mcpServers": {"a": {"command": "x"}}} // c'
    assert edited(inline, lambda d: d["mcpServers"].pop("a")) == '{"mcpServers": {"b": {"command": "y"}}} // c'
    assert edited(inline, lambda d: d["mcpServers"]["a"].update(disabled=True)).startswith(
        '{"mcpServers": {"a": {"command": "x", "disabled": true}, "b"'
    )


def test_a_changed_value_is_written_in_its_place() -> None:
    text = '{\n  "mcpServers": {\n    "a": {\n      "args": ["1"], /* why */\n      "command": "x"\n    }\n  }\n}\n'
    out = edited(text, lambda d: d["mcpServers"]["a"].update(args=["1", "2"], command="z"))
    assert out == text.replace('["1"]', '["1", "2"]').replace('"x"', '"z"')
    replaced = edited(text, lambda d: d["mcpServers"].update(a={"url": "https://h/mcp"}))
    assert '"a": {\n      "url": "https://h/mcp"\n    }' in replaced


def test_strings_holding_comment_marks_and_escapes_are_read_as_strings() -> None:
    text = '{"mcpServers": {"a\\"b": {"url": "http://x/*y*/"}, "c": {"command": "//"}}} /* end */'
    node = parse(text)
    assert node.members is not None and [m.key for m in node.members] == ["mcpServers"]
    out = edited(text, lambda d: d["mcpServers"].pop('a"b'))
    assert out == '{"mcpServers": {"c": {"command": "//"}}} /* end */'


@pytest.mark.parametrize("bad", ['{"a": 1', '{"a" 1}', "{a: 1}", '{"a": "x}', '{"a": 1} x'])
def test_text_that_is_not_jsonc_is_refused(bad: str) -> None:
    with pytest.raises(JsoncError):
        parse(bad)


keys = st.text(alphabet='ab/*"\\ :,{}', min_size=1, max_size=4)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(alphabet='a/*"\\,}', max_size=4))
documents = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=12).filter(
    lambda d: isinstance(d, dict)
)


@given(before=documents, after=documents, one_line=st.booleans(), trailing=st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_change_of_any_document_reads_back_and_keeps_its_own_comment_lines(
    before: dict[str, Any], after: dict[str, Any], one_line: bool, trailing: bool
) -> None:
    if one_line:
        text = json.dumps(before) + " // end"
    else:
        lines = json.dumps(before, indent=2).splitlines()
        text = "\n".join(
            f"{line}\n  // note {i}" if line.endswith(("{", ",")) else line for i, line in enumerate(lines)
        )
        if trailing:
            text = re.sub(r'("|\d|true|false|null|}|])(\n  // note \d+\n\s*)}', r"\1,\2}", text)
    assert formats.parse(text.encode()) == before
    out = patch(text, before, after)
    assert formats.parse(out.encode()) == after, out
    notes = [line.strip() for line in text.splitlines() if line.strip().startswith("// note")]
    kept = [line.strip() for line in out.splitlines() if line.strip().startswith("// note")]
    assert kept == [note for note in notes if note in kept]  # none made up, none moved
    if all(after.get(key, ...) == value for key, value in before.items()):  # only added to: all of them stay
        assert kept == notes


def test_an_entry_that_loses_some_members_and_gains_others_keeps_the_rest_as_written() -> None:
    """Before, any object that both lost and gained a member was written anew, comments inside it gone."""
    text = (
        '{\n  "mcpServers": {\n    "git": {\n      "command": "uvx",  // pinned below\n'
        '      "args": ["mcp-server-git"],\n      // "cwd": "/src",\n      "env": {"A": "1"}\n    }\n  }\n}\n'
    )
    out = edited(text, lambda d: d["mcpServers"]["git"].pop("env") and d["mcpServers"]["git"].update(timeout=30))
    assert comments(out) == comments(text)
    assert '"command": "uvx",  // pinned below\n      "args": ["mcp-server-git"],' in out
    assert '"env"' not in out and '"timeout": 30' in out
