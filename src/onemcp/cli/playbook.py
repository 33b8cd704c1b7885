"""The coding-agent playbook, and `onemcp cli-setup`, which puts it in a project for an agent to read.

Owns the playbook's text, the file it is written to (`.onemcp/AGENTS-onemcp.md`) and the one
reference line added to the agent's own instructions file (`CLAUDE.md` for Claude Code,
`AGENTS.md` for Codex). Writing is idempotent and keeps what those files already say. Does not
talk to a hub; `onemcp instructions` adds the live server list to the same text.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NamedTuple

PLAYBOOK_FILE = Path(".onemcp") / "AGENTS-onemcp.md"
AGENT_FILES = {"claude": "CLAUDE.md", "codex": "AGENTS.md"}
TEXT_MODE = 0o644  # project files are shared, not secrets

PLAYBOOK = """\
# MCP tools through onemcp

This machine runs onemcp, a hub that serves many MCP servers as one. Use its command line from
the shell to find and call their tools; do not guess tool names or arguments.

1. `onemcp inspect` lists the servers and how many tools each has.
2. `onemcp inspect SERVER` lists that server's tools, one line each.
3. `onemcp inspect SERVER/TOOL` shows the tool's input schema (required arguments first).
4. `onemcp run SERVER/TOOL --args '{"name": "value"}'` calls it and prints the text it returns.
   - `--format json` prints the whole result (structured content included).
   - Long or awkwardly quoted arguments: pipe the JSON on stdin instead of `--args`:
     `onemcp run SERVER/TOOL <<'EOF'` ... `EOF`.
   - Exit code 0: done. 1: the tool or the hub reported an error (the message is on stderr).
     2: the arguments are not a JSON object (fix them and retry).

Tips: inspect a tool before its first call; a failed call's message usually says which argument
is wrong. `onemcp instructions` prints this guide with the servers available right now.
Add `--preset NAME` (or `--filter EXPR`, `--tags a,b`) to see only some servers; a project's
`.onemcprc` may already choose one.
"""


class SetupResult(NamedTuple):
    playbook: Path
    changed: list[str]  # what was written, for the user


def reference_line(agent: str) -> str:
    """The line that points an agent's instructions file at the playbook."""
    if agent == "claude":  # Claude Code reads @-imports in CLAUDE.md
        return f"- MCP tools are available through the `onemcp` CLI: see @{PLAYBOOK_FILE.as_posix()}"
    return f"- MCP tools are available through the `onemcp` CLI: read {PLAYBOOK_FILE.as_posix()} before using them."


def setup(project: Path, agents: list[str]) -> SetupResult:
    """Write the playbook into `project` and reference it from each agent's file (idempotent)."""
    from onemcp.config.files import atomic_write, file_mode

    changed: list[str] = []
    playbook = project / PLAYBOOK_FILE
    data = PLAYBOOK.encode()
    if not playbook.exists() or playbook.read_bytes() != data:
        atomic_write(playbook, data, mode=_mode(file_mode(playbook)))
        changed.append(f"wrote {playbook}")
    for agent in agents:
        target = project / AGENT_FILES[agent]
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        if PLAYBOOK_FILE.as_posix() in text:
            continue  # already points at it (ours, or the user's own wording)
        if text and not text.endswith("\n"):
            text += "\n"
        new = f"{text}\n{reference_line(agent)}\n" if text else f"{reference_line(agent)}\n"
        atomic_write(target, new.encode("utf-8"), mode=_mode(file_mode(target)))
        changed.append(f"{'added a line to' if text else 'wrote'} {target}")
    return SetupResult(playbook, changed)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    """`cli-setup` (it writes project files, so `config` — the mcp.json flag — does not apply)."""
    setup_cmd = sub.add_parser(
        "cli-setup", help="teach a coding agent (Claude Code, Codex) to use onemcp inspect/run in a project"
    )
    setup_cmd.add_argument("--claude", action="store_true", help="reference the playbook from CLAUDE.md")
    setup_cmd.add_argument("--codex", action="store_true", help="reference the playbook from AGENTS.md")
    setup_cmd.add_argument("--dir", default=".", help="the project directory (default: the current one)")


def run(args: argparse.Namespace) -> int:
    agents = [name for name in AGENT_FILES if getattr(args, name)]
    if not agents:
        print("onemcp: say which agent: --claude and/or --codex", file=sys.stderr)
        return 2
    project = Path(args.dir).expanduser()
    if not project.is_dir():
        print(f"onemcp: {project} is not a directory", file=sys.stderr)
        return 2
    try:
        result = setup(project, agents)
    except OSError as exc:
        print(f"onemcp: cannot write in {project}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for what in result.changed:
        print(f"onemcp: {what}")
    if not result.changed:
        print(f"onemcp: {project} is already set up; nothing changed")
    return 0


def _mode(existing: int | None) -> int:
    """Keep an existing file's mode; a new one gets TEXT_MODE less the user's umask."""
    if existing is not None:
        return existing
    current = os.umask(0)
    os.umask(current)
    return TEXT_MODE & ~current
