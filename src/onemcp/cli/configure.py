"""`onemcp validate` and `onemcp config init|schema`: check a config before a hub runs it, and start one well.

Owns the commands: `validate [FILE] [--json]` (every problem at once with its field path, then
commands that are not installed and URLs that do not parse; exit 0 clean, 1 problems, 2 no file),
`config init --template solo|team|server` (a commented JSONC starting point with `$schema`),
and `config schema` (the JSON Schema editors use). Does not run anything (`serve`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from onemcp.cli import argtypes
from onemcp.config import formats, presets, schema
from onemcp.config.edit import BACKUP_DIR, BACKUPS_KEPT
from onemcp.config.files import atomic_write, backup, locked
from onemcp.config.load import ConfigError, environment, parse_config, resolve_path
from onemcp.config.model import HubConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    validate = sub.add_parser("validate", parents=[config], help="check a config: every problem at once")
    validate.add_argument(
        "file", nargs="?", type=argtypes.path, help="the config (default: --config, $ONEMCP_CONFIG, or the default)"
    )
    validate.add_argument("--json", action="store_true", help="the report as JSON")
    cfg = sub.add_parser("config", parents=[config], help="start a config, or print its JSON Schema")
    actions = cfg.add_subparsers(dest="config_action", required=True)
    init = actions.add_parser("init", help="write a commented starting config")
    # `config init --config F` as well as `config --config F init` (unset here, the first one's value stays)
    init.add_argument(
        "--config", type=argtypes.path, default=argparse.SUPPRESS, help="the file to write (as `config --config`)"
    )
    init.add_argument("--template", choices=sorted(TEMPLATES), default="solo", help="solo (default), team or server")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    actions.add_parser("schema", help="print the config's JSON Schema")


def run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        if args.file and args.config and Path(args.file) != Path(args.config):  # which one was meant?
            print(f"onemcp: validate {args.file} and --config {args.config} name two files: give one", file=sys.stderr)
            return 2
        return validate(Path(args.file) if args.file else resolve_path(args.config), as_json=args.json)
    if args.config_action == "schema":
        sys.stdout.write(schema.text())
        return 0
    return init(resolve_path(args.config), args.template, force=args.force)


# ----------------------------------------------------------------------------- validate
def checks(doc: Any) -> list[str]:
    """What the model cannot know: commands that are not installed, URLs that do not parse (on the raw
    document, so they are reported along with the model's problems)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return problems
    for section in ("mcpServers", "servers", "mcpTemplates"):
        entries = doc.get(section)
        if not isinstance(entries, dict):
            continue
        for name, server in entries.items():
            if not isinstance(server, dict):
                continue
            command = server.get("command")
            if isinstance(command, str) and command and not any(t in command for t in ("{{", "{%", "$")):
                found = shutil.which(command, path=os.environ.get("PATH"))
                if found is None and not (os.sep in command and Path(command).exists()):
                    problems.append(f"{section}.{name}.command: {command!r} is not installed (not on PATH)")
            replicas = server.get("replicas")
            urls = [("url", server.get("url"))] + [
                (f"replicas[{i}]", u) for i, u in enumerate(replicas if isinstance(replicas, list) else [])
            ]
            for field, url in urls:
                if not isinstance(url, str) or "{{" in url or "$" in url:
                    continue
                try:
                    parts = urlsplit(url)
                    parts.port  # noqa: B018 (raises on a bad port)
                except ValueError as exc:
                    problems.append(f"{section}.{name}.{field}: {url!r}: {exc}")
                    continue
                if not parts.hostname:
                    problems.append(f"{section}.{name}.{field}: {url!r} has no host")
    return problems


def validate(path: Path, *, as_json: bool) -> int:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"onemcp: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    config: HubConfig | None = None
    try:
        config = parse_config(raw, source=str(path), env=environment(path), fmt=formats.format_of(path))
        problems: list[str] = []
    except ConfigError as exc:
        problems = list(exc.problems)
    with contextlib.suppress(formats.FormatError, UnicodeDecodeError):  # that is already a problem
        problems += checks(formats.parse(raw, formats.format_of(path)))
    beside = presets.presets_path(path)
    if beside.exists():  # the hub reads it too: a bad one leaves clients with "unknown preset"
        try:
            presets.validate(presets.read_document(beside), source=str(beside))
        except presets.PresetError as exc:
            problems.append(str(exc))
    if as_json:
        doc: dict[str, Any] = {"file": str(path), "valid": not problems, "problems": problems}
        if config is not None:
            doc["servers"] = sorted(config.servers)
            doc["templates"] = sorted(config.templates)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif problems:
        print(f"{path}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
    else:
        assert config is not None
        print(f"{path}: valid ({len(config.servers)} server(s), {len(config.templates)} template(s))")
    return 1 if problems else 0


# ----------------------------------------------------------------------------- init
_SOLO = """{
  "$schema": "%(schema)s",
  // onemcp on a laptop: bound to 127.0.0.1, no keys needed. Add servers with `onemcp mcp add`
  // or `onemcp app import`; a running hub picks up every change to this file.
  "mcpServers": {
    // a clock, from PyPI (installed with onemcp)
    "time": {"command": "%(python)s", "args": ["-P", "-m", "mcp_server_time", "--local-timezone", "UTC"],
             "tags": ["util"]}
    // "git": {"command": "uvx", "args": ["mcp-server-git", "--repository", "${HOME}/src/app"]},
    // "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"}}
  },
  // a server per project: rendered from the project of `onemcp proxy` / the agent CLI
  "mcpTemplates": {
    // "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"],
    //            "env": {"MEMORY_FILE_PATH": "{{ project.path }}/.memory.jsonl"}}
  },
  "onemcp": {
    "exposure": "auto"  // many tools? clients get search_tools instead of 200k tokens of definitions
  }
}
"""

_TEAM = """{
  "$schema": "%(schema)s",
  // a hub a team shares: every client needs an API key (`onemcp auth key create --scope mcp`),
  // views per team through presets (`onemcp preset create`), the console at /ui for an admin key.
  "mcpServers": {
    "time": {"command": "%(python)s", "args": ["-P", "-m", "mcp_server_time"], "tags": ["util"]}
    // "github": {"url": "https://api.githubcopilot.com/mcp/", "tags": ["dev"]}
  },
  "onemcp": {
    "auth": {
      "apiKeys": true,
      "rateLimit": {"requestsPerMinute": 600, "burst": 50}
    },
    "allowedHosts": [],  // the names clients use to reach this machine, e.g. "hub.internal:3050"
    "audit": "audit.log",  // who called what
    "exposure": "auto"
  }
}
"""

_SERVER = """{
  "$schema": "%(schema)s",
  // onemcp as a network service: OAuth 2.1 for clients (the built-in authorization server; an
  // operator approves each client with an admin key), metrics for Prometheus, explicit limits.
  // Run it behind TLS and set publicUrl to the address clients use.
  "mcpServers": {
    "time": {"command": "%(python)s", "args": ["-P", "-m", "mcp_server_time"], "tags": ["util"]}
  },
  "onemcp": {
    "auth": {
      "oauth": true,
      "apiKeys": true,  // for operators and scripts (/metrics, /api/v1)
      "publicUrl": "https://mcp.example.com/mcp"
    },
    "allowedHosts": ["mcp.example.com"],
    "audit": "audit.log",
    "limits": {"maxSessions": 2000, "maxSessionsPerPrincipal": 50, "maxConnections": 4000},
    "exposure": "auto"
  }
}
"""

TEMPLATES = {"solo": _SOLO, "team": _TEAM, "server": _SERVER}


def init(path: Path, template: str, *, force: bool) -> int:
    if path.exists() and not force:
        print(f"onemcp: {path} exists; --force replaces it (or validate it: `onemcp validate {path}`)", file=sys.stderr)
        return 2
    text = TEMPLATES[template] % {"schema": schema.uri(), "python": sys.executable}
    parse_config(text.encode(), source=f"the {template} template", env={**os.environ, "HOME": str(Path.home())})
    with locked(path):  # as `onemcp mcp add` and the admin API edit it
        # --force over a config someone wrote: kept in backups/ as every edit keeps the file it replaces
        kept = backup(path, path.parent / BACKUP_DIR, keep=BACKUPS_KEPT)
        atomic_write(path, text.encode())  # a new config may hold tokens: owner-only, as every config written
    print(f"onemcp: wrote the {template} starting config to {path}; check it with `onemcp validate`")
    if kept is not None:
        print(f"onemcp: the config it replaced is saved as {kept}")
    return 0
