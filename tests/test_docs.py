"""The documentation's examples are what the code takes: README.md and docs/*.md, block by block.

A user copies these. Every ```json / ```jsonc block is an `mcp.json` (or a fragment of one: its
`"mcpServers": ...` or `"auth": ...` members) that loads with the real loader, or a `.onemcprc`
that the agent commands read; a server whose command is `onemcp` (a desktop client's entry for
the proxy) has arguments the CLI takes; and every `onemcp ...` line of a ```bash / ```console block
parses with the CLI's own parser. Nothing runs: the examples only have to be accepted.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from onemcp.cli.main import build_parser
from onemcp.cli.mcp import split_command
from onemcp.cli.target import RC_KEYS, read_rc
from onemcp.config.formats import parse
from onemcp.config.load import parse_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
# the variables the examples name, as a user would have them set
ENV = {"HOME": "/home/me", "SEARCH_TOKEN": "a-search-token"}


def blocks(*languages: str) -> list[tuple[str, str]]:
    """(where, text) of each block in one of `languages`: `README.md:84` names its opening line."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            if match.group(1) in languages:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def as_document(text: str) -> object:
    """The block as a whole document: a fragment (`"mcpServers": {...}`) gets its braces, an
    `"auth"` section its `"onemcp"` around it."""
    body = text.strip()
    if not body.startswith("{"):
        body = "{" + body + "}"
    doc = parse(body.encode(), "json")
    if isinstance(doc, dict) and "auth" in doc:
        doc = {"onemcp": doc}
    return doc


def usage_error(argv: list[str]) -> str | None:
    """What the CLI's parser says of `argv` (None: it takes it), read as `onemcp` reads it."""
    if argv[:1] == ["mcp"]:
        argv, _ = split_command(argv)  # `mcp add NAME -- CMD ARGS...`
    parser, _ = build_parser(argv[0] if argv else None)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            parser.parse_args(argv)
    except SystemExit as exc:
        return None if exc.code == 0 else said.getvalue().strip() or f"exit {exc.code}"
    return None


JSON_BLOCKS = blocks("json", "jsonc")
SHELL_BLOCKS = blocks("bash", "console", "ini")  # ini: a systemd unit's ExecStart=


def test_the_pages_have_examples_to_check() -> None:
    assert len(JSON_BLOCKS) >= 10 and len(SHELL_BLOCKS) >= 5


@pytest.mark.parametrize(("where", "text"), JSON_BLOCKS, ids=[w for w, _ in JSON_BLOCKS])
def test_every_json_block_is_a_config_or_rc_file_the_code_takes(where: str, text: str, tmp_path: Path) -> None:
    doc = as_document(text)
    assert isinstance(doc, dict), where
    if doc.keys() <= set(RC_KEYS):  # a project's .onemcprc
        rc = tmp_path / ".onemcprc"
        rc.write_text(json.dumps(doc))
        assert read_rc(rc), where
        return
    config = parse_config(json.dumps(doc).encode(), source=where, env=ENV)  # ConfigError names the field
    for name, server in config.servers.items():
        if server.command == "onemcp":
            assert usage_error(list(server.args)) is None, f"{where}: mcpServers.{name}.args"


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `onemcp`) of each `onemcp` command in the shell blocks (after a `$ ` prompt,
    an environment assignment, a pipe or `ExecStart=`; a comment after ` #` is not part of it)."""
    found = []
    for where, text in SHELL_BLOCKS:
        for line in text.splitlines():
            line = re.sub(r"\s#.*$", "", line.removeprefix("$ ").removeprefix("ExecStart="))
            line = line.replace("%i", "3051")  # a systemd template unit's instance: the port, in deployment.md
            for part in line.split(" | "):
                words = shlex.split(part)
                program = next((w for w in words if w.rsplit("/", 1)[-1] == "onemcp"), None)  # bin/onemcp too
                if program is not None:
                    found.append((where, words[words.index(program) + 1 :]))
    return found


COMMANDS = shell_commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[f"{w} {' '.join(a)}" for w, a in COMMANDS])
def test_every_onemcp_command_in_a_shell_block_parses(where: str, argv: list[str]) -> None:
    assert usage_error(argv) is None, f"{where}: onemcp {' '.join(argv)}"
