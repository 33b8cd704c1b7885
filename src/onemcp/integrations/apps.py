"""Other MCP clients' configs: where each app keeps its servers, and those servers in mcp.json form.

Owns the knowledge of each app (Claude Desktop, Claude Code, Cursor, VS Code, Codex, Windsurf):
its files per platform, their format (JSON, JSONC, TOML), the key under which servers live,
the app's own spellings (Windsurf's ``serverUrl``, VS Code's ``${env:X}``, Codex's
``bearer_token_env_var``) translated into mcp.json entries, and the entry that points the app at
the hub. Reading only: `redirect` rewrites app files, `importing` decides what enters mcp.json.

Every path is resolved under the user's home, or under ``$ONEMCP_APP_HOME`` when set (a fake
home for tests and for inspecting another machine's files), except project files, which are
looked up in the current directory.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.formats import strip_jsonc

DEFAULT_HUB_URL = "http://127.0.0.1:3050/mcp"
HUB_SERVER_NAME = "onemcp"


class AppConfigError(Exception):
    """An app's config file cannot be read or understood; the message names the file."""


class Format(StrEnum):
    JSON = "json"
    JSONC = "jsonc"  # JSON with comments and trailing commas (VS Code)
    TOML = "toml"


@dataclass(frozen=True)
class Where:
    """The places app configs are looked up: home (or its override), the current dir, the OS."""

    home: Path
    cwd: Path
    platform: str

    @classmethod
    def current(cls) -> Where:
        override = os.environ.get("ONEMCP_APP_HOME")
        home = Path(override).expanduser() if override else Path.home()
        return cls(home=home, cwd=Path.cwd(), platform=sys.platform)

    @property
    def app_data(self) -> Path:
        """Per-user application settings: XDG on Linux, Application Support on macOS, Roaming on Windows."""
        if self.platform == "darwin":
            return self.home / "Library" / "Application Support"
        if self.platform.startswith("win"):
            return self.home / "AppData" / "Roaming"
        return self.home / ".config"


@dataclass(frozen=True)
class Source:
    """One place an app keeps servers: a file and the key path of the servers object in it."""

    path: Path
    keys: tuple[str, ...]
    format: Format
    scope: str = "user"
    # A project file (in the current directory) usually lives in a repository shared with others:
    # it is read for import but never rewritten to point at the hub.
    shared: bool = False

    @property
    def label(self) -> str:
        where = ".".join(self.keys)
        return f"{self.path} ({where})" if self.scope == "user" else f"{self.path} ({where}, {self.scope})"


@dataclass(frozen=True)
class FoundServer:
    """A server as an app defines it, and the same server as an mcp.json entry."""

    name: str
    source: Source
    raw: Any
    entry: dict[str, Any] | None  # None when it cannot be expressed in mcp.json
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceReport:
    source: Source
    exists: bool
    servers: tuple[FoundServer, ...] = ()
    error: str | None = None


Translate = Callable[[Any, Source, Where], tuple[dict[str, Any] | None, list[str]]]


@dataclass(frozen=True)
class App:
    name: str
    label: str
    sources: Callable[[Where], list[Source]]
    translate: Translate
    hub_entry: Callable[[str], dict[str, Any]]


# ---------------------------------------------------------------------- reading files
def load_document(path: Path, fmt: Format) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AppConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_document(raw, path, fmt)


def parse_document(raw: bytes, path: Path, fmt: Format) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AppConfigError(f"{path}: not UTF-8 text") from None
    if fmt is Format.TOML:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AppConfigError(f"{path}: not valid TOML: {exc}") from None
    if fmt is Format.JSONC:
        text = strip_jsonc(text)
    if not text.strip():
        return {}  # an empty file is how some apps ship "no settings yet"
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise AppConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AppConfigError(f"{path}: the top level must be an object")
    return doc


def servers_at(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def discover(app: App, where: Where) -> list[SourceReport]:
    """What `app` has configured: one report per place it keeps servers."""
    reports: list[SourceReport] = []
    for source in app.sources(where):
        try:
            doc = load_document(source.path, source.format)
        except AppConfigError as exc:
            reports.append(SourceReport(source, exists=True, error=str(exc)))
            continue
        if doc is None:
            reports.append(SourceReport(source, exists=False))
            continue
        found: list[FoundServer] = []
        for name, raw in (servers_at(doc, source.keys) or {}).items():
            entry, notes = app.translate(raw, source, where) if isinstance(raw, dict) else (None, ["not an object"])
            found.append(FoundServer(str(name), source, raw, entry, tuple(notes)))
        reports.append(SourceReport(source, exists=True, servers=tuple(found)))
    return reports


# ---------------------------------------------------------------------- translation
_COPIED = ("command", "args", "env", "cwd", "url", "headers")
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http", "sse": "sse"}


# A "$" that starts a name or another "$": literal in every app (none reads a bare $NAME), a variable (or the
# escape) in mcp.json. Doubled, the imported value is the one the app used ("pa$word" stayed "pa$word").
_BARE_DOLLAR = re.compile(r"\$(?=[A-Za-z_$])")


def _literal(value: Any) -> Any:
    """`value` with each such "$" written "$$" (`${...}`, an app's own variable form, is left to translate)."""
    if isinstance(value, str):
        return _BARE_DOLLAR.sub("$$", value)
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def translate_json(raw: dict[str, Any], source: Source, where: Where) -> tuple[dict[str, Any] | None, list[str]]:
    """The common `mcpServers` entry shape (Claude, Cursor, Windsurf, VS Code) as an mcp.json entry."""
    notes: list[str] = []
    entry: dict[str, Any] = {}
    kind = raw.get("type")
    if "serverUrl" in raw and "url" not in raw:  # Windsurf's spelling
        raw = {**raw, "url": raw["serverUrl"]}
    if kind is not None:
        if kind not in _TYPES:
            return None, [f"transport type {kind!r} is not supported by the hub"]
        if _TYPES[kind] != "stdio" or "url" in raw:
            entry["type"] = _TYPES[kind]
    elif isinstance(raw.get("url"), str) and raw["url"].rstrip("/").endswith("/sse"):
        entry["type"] = "sse"  # no type given and an /sse endpoint: the legacy HTTP+SSE transport
    for key in _COPIED:
        if key in raw:
            entry[key] = _literal(raw[key])
    if entry.get("url") is not None and "type" not in entry:
        entry["type"] = "http"
    if raw.get("disabled") is True:
        entry["disabled"] = True
    if "envFile" in raw:
        notes.append(f"envFile {raw['envFile']!r} is not read by the hub; copy its variables into env")
    return entry, notes


_EDITOR_VAR = re.compile(r"\$\{(env|input|workspaceFolder|userHome)(?::([^}]*))?\}")


def translate_editor(raw: dict[str, Any], source: Source, where: Where) -> tuple[dict[str, Any] | None, list[str]]:
    """VS Code-style entries (also Cursor and Windsurf): ``${env:X}`` becomes our ``${X}``;
    ``${userHome}`` and, in a project file, ``${workspaceFolder}`` are resolved."""
    entry, notes = translate_json(raw, source, where)
    if entry is None:
        return None, notes
    folder = source.path.parent.parent if source.shared else None
    inputs: set[str] = set()

    def repl(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "env" and arg:
            return f"${{{arg}}}"
        if kind == "userHome":
            return str(where.home)
        if kind == "workspaceFolder" and folder is not None:
            return str(folder)
        if kind == "input" and arg:  # the editor asks for it; the hub reads it from its environment
            name = re.sub(r"\W", "_", arg).upper()
            name = name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"
            inputs.add(f"{m.group(0)} (the editor asks for it) is read from the hub's environment as ${{{name}}}")
            return f"${{{name}}}"
        inputs.add(f"{m.group(0)} is filled in by the editor at run time; set a value after import")
        return m.group(0)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _EDITOR_VAR.sub(repl, value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    entry = walk(entry)
    notes.extend(sorted(inputs))
    return entry, notes


def translate_codex(raw: dict[str, Any], source: Source, where: Where) -> tuple[dict[str, Any] | None, list[str]]:
    """A Codex ``[mcp_servers.<name>]`` table as an mcp.json entry."""
    notes: list[str] = []
    entry: dict[str, Any] = {}
    if "url" in raw:
        entry["type"] = "http"
    for key in _COPIED:
        if key in raw and key != "headers":
            entry[key] = _literal(raw[key])
    passed = raw.get("env_vars")
    if isinstance(passed, list):  # names Codex passes through from its own environment
        env = dict(entry.get("env") or {})
        for name in passed:
            env.setdefault(str(name), f"${{{name}}}")
        entry["env"] = env
    headers: dict[str, Any] = _literal(dict(raw.get("http_headers") or {}))
    for header, var in (raw.get("env_http_headers") or {}).items():
        headers[header] = f"${{{var}}}"
    token_var = raw.get("bearer_token_env_var")
    if isinstance(token_var, str):
        headers["Authorization"] = f"Bearer ${{{token_var}}}"
    if headers:
        entry["headers"] = headers
    if raw.get("enabled") is False:
        entry["disabled"] = True
    if isinstance(raw.get("tool_timeout_sec"), int | float):
        entry["timeout"] = raw["tool_timeout_sec"]
    if isinstance(raw.get("startup_timeout_sec"), int | float):
        entry["startupTimeout"] = raw["startup_timeout_sec"]
    return entry, notes


# ---------------------------------------------------------------------- the apps
def _claude_code_sources(where: Where) -> list[Source]:
    user = where.home / ".claude.json"
    sources = [Source(user, ("mcpServers",), Format.JSON)]
    try:
        doc = load_document(user, Format.JSON)
    except AppConfigError:
        doc = None  # `discover` reports the broken file when it reads the user-level servers
    projects = doc.get("projects") if doc else None
    if isinstance(projects, dict):
        for project, settings in projects.items():
            if isinstance(settings, dict) and settings.get("mcpServers"):
                sources.append(Source(user, ("projects", project, "mcpServers"), Format.JSON, f"project {project}"))
    sources.append(Source(where.cwd / ".mcp.json", ("mcpServers",), Format.JSON, f"project {where.cwd}", True))
    return sources


def _proxy_entry(url: str) -> dict[str, Any]:
    """Claude Desktop only starts stdio servers: it reaches the hub through `onemcp proxy`."""
    args = ["proxy"] if url == DEFAULT_HUB_URL else ["proxy", "--url", url]
    return {"command": onemcp_command(), "args": args}


def onemcp_command() -> str:
    """This onemcp's absolute path: an app started from a desktop session has a short PATH."""
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if here is not None and here.name == "onemcp" and here.is_file():
        return str(here)
    found = shutil.which("onemcp") or shutil.which("onemcp", path=str(Path(sys.executable).parent))
    return str(Path(found).resolve()) if found else "onemcp"


APPS: dict[str, App] = {
    app.name: app
    for app in (
        App(
            "claude-desktop",
            "Claude Desktop",
            lambda w: [Source(w.app_data / "Claude" / "claude_desktop_config.json", ("mcpServers",), Format.JSON)],
            translate_json,
            _proxy_entry,
        ),
        App(
            "claude-code",
            "Claude Code",
            _claude_code_sources,
            translate_json,
            lambda url: {"type": "http", "url": url},
        ),
        App(
            "cursor",
            "Cursor",
            lambda w: [
                Source(w.home / ".cursor" / "mcp.json", ("mcpServers",), Format.JSON),
                Source(w.cwd / ".cursor" / "mcp.json", ("mcpServers",), Format.JSON, f"project {w.cwd}", True),
            ],
            translate_editor,
            lambda url: {"url": url},
        ),
        App(
            "vscode",
            "VS Code",
            lambda w: [
                Source(w.app_data / "Code" / "User" / "mcp.json", ("servers",), Format.JSONC),
                Source(w.app_data / "Code" / "User" / "settings.json", ("mcp", "servers"), Format.JSONC),
                Source(w.cwd / ".vscode" / "mcp.json", ("servers",), Format.JSONC, f"project {w.cwd}", True),
            ],
            translate_editor,
            lambda url: {"type": "http", "url": url},
        ),
        App(
            "codex",
            "Codex",
            lambda w: [Source(w.home / ".codex" / "config.toml", ("mcp_servers",), Format.TOML)],
            translate_codex,
            lambda url: {"url": url},
        ),
        App(
            "windsurf",
            "Windsurf",
            lambda w: [Source(w.home / ".codeium" / "windsurf" / "mcp_config.json", ("mcpServers",), Format.JSON)],
            translate_editor,
            lambda url: {"serverUrl": url},
        ),
    )
}
