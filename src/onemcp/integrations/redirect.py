"""Pointing an app at the hub: rewrite its config to a single `onemcp` server, and undo that.

Owns the rewrite of other apps' files (a JSON key path, or Codex's ``[mcp_servers.*]`` TOML
tables), the backup taken first (a manifest in ``<config_dir>/app-backups/<app>/<timestamp>.json``
holding every touched file byte for byte, with its mode), and restore from such a manifest.
Every other key of a rewritten file is kept as it was. Project files in the current directory
are never rewritten: they usually belong to a repository other people use.

Errors: `RedirectError` (a file cannot be rewritten without losing something; nothing written).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.edit import render
from onemcp.config.files import atomic_write, file_mode, stamped, unique_path
from onemcp.config.formats import is_plain_json
from onemcp.integrations.apps import (
    HUB_SERVER_NAME,
    App,
    AppConfigError,
    Format,
    Source,
    Where,
    parse_document,
    servers_at,
)

POINT_TO_HUB = "point-to-hub"
BEFORE_RESTORE = "before-restore"


class RedirectError(Exception):
    """An app's config cannot be rewritten (or restored) safely; nothing was written."""


@dataclass(frozen=True)
class Rewrite:
    path: Path
    before: bytes | None  # None: the file does not exist yet
    after: bytes
    summary: str


@dataclass(frozen=True)
class Manifest:
    path: Path
    app: str
    created: str
    reason: str
    hub_url: str | None
    files: tuple[Path, ...]


# ---------------------------------------------------------------------- planning
def plan_redirect(app: App, where: Where, hub_url: str) -> list[Rewrite]:
    """The file changes that leave `app` with one server, the hub; empty when already so."""
    sources = [s for s in app.sources(where) if not s.shared]
    docs: dict[Path, bytes | None] = {}
    for source in sources:
        if source.path not in docs:
            docs[source.path] = _read(source.path)
    primary = _primary(sources, docs)
    entry = app.hub_entry(hub_url)
    rewrites: list[Rewrite] = []
    for path, before in docs.items():
        here = [s for s in sources if s.path == path]
        changes = {s.keys: ({HUB_SERVER_NAME: entry} if s is primary else {}) for s in here}
        changes = {k: v for k, v in changes.items() if (_servers(here[0], before, k) or {}) != v}
        if not changes or (before is None and not any(changes.values())):
            continue
        if here[0].format is Format.TOML:
            after = _rewrite_toml(path, before, changes)
        else:
            after = _rewrite_json(path, before, here[0].format, changes)
        if after != before:
            rewrites.append(Rewrite(path, before, after, _summary(here[0], before, changes)))
    return rewrites


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RedirectError(f"{path}: cannot read: {exc.strerror}") from None


def _servers(source: Source, raw: bytes | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return servers_at(parse_document(raw, source.path, source.format), keys)
    except AppConfigError as exc:
        raise RedirectError(str(exc)) from None


def _has_servers(source: Source, raw: bytes | None, keys: tuple[str, ...]) -> bool:
    return bool(_servers(source, raw, keys))


def _primary(sources: list[Source], docs: dict[Path, bytes | None]) -> Source:
    """Where the hub entry goes: the user-level place that has servers, else one that exists."""
    user = [s for s in sources if s.scope == "user"]
    for source in user:
        if _has_servers(source, docs[source.path], source.keys):
            return source
    return next((s for s in user if docs[s.path] is not None), user[0])


def _summary(source: Source, before: bytes | None, changes: dict[tuple[str, ...], dict[str, Any]]) -> str:
    parts = []
    for keys, servers in changes.items():
        old = _servers(source, before, keys) or {}
        new = ", ".join(servers) or "no servers"
        parts.append(f"{'.'.join(keys)}: {len(old)} server(s) -> {new}")
    return "; ".join(parts)


def _rewrite_json(path: Path, raw: bytes | None, fmt: Format, changes: dict[tuple[str, ...], Any]) -> bytes:
    text = "" if raw is None else raw.decode("utf-8-sig", errors="replace")
    if fmt is Format.JSONC and not is_plain_json(text):
        raise RedirectError(f"{path} has comments or trailing commas that a rewrite would lose; edit it by hand")
    try:
        doc = {} if raw is None else parse_document(raw, path, fmt)
    except AppConfigError as exc:
        raise RedirectError(str(exc)) from None
    for keys, servers in changes.items():
        node = doc
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise RedirectError(f"{path}: '{key}' is not an object")
        node[keys[-1]] = servers
    return render(doc, raw or b"")


_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _rewrite_toml(path: Path, raw: bytes | None, changes: dict[tuple[str, ...], dict[str, Any]]) -> bytes:
    """Drop the ``[mcp_servers.*]`` tables, append the new ones, and prove nothing else moved."""
    (keys, servers), *rest = changes.items()
    if rest or len(keys) != 1:
        raise RedirectError(f"{path}: only a top-level servers table can be rewritten")
    table = keys[0]
    text = "" if raw is None else raw.decode("utf-8")
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        header = _TOML_HEADER.match(line)
        if header:
            inside = header.group(1).split(".")[0].strip().strip("\"'") == table
            while inside and kept and kept[-1].lstrip().startswith("#"):
                kept.pop()  # the comment just above a dropped table describes that table
        if not inside:
            kept.append(line)
    head = "".join(kept).rstrip()
    blocks = [head] if head else []
    for name, entry in servers.items():
        lines = [f"[{table}.{_toml_key(name)}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
        blocks.append("\n".join(lines))
    after = ("\n\n".join(blocks) + "\n").encode() if blocks else b""
    try:
        old = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RedirectError(f"{path}: not valid TOML: {exc}") from None
    try:
        new = tomllib.loads(after.decode())
    except tomllib.TOMLDecodeError:
        new = None
    old.pop(table, None)
    if new is None or new.pop(table, {}) != servers or new != old:
        raise RedirectError(f"{path}: the {table} tables are laid out in a way this rewrite cannot handle safely")
    return after


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise RedirectError(f"cannot write {type(value).__name__} as TOML")


# ---------------------------------------------------------------------- backups and restore
def app_backup_dir(root: Path, app: str) -> Path:
    return root / app


def save_manifest(root: Path, app: str, files: list[Path], *, reason: str, hub_url: str | None = None) -> Path:
    """Record the current bytes and mode of `files` (or that they are absent) for `restore`."""
    directory = app_backup_dir(root, app)
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for path in files:
        data = _read(path)
        record: dict[str, Any] = {"path": str(path), "existed": data is not None, "mode": file_mode(path)}
        if data is not None:
            try:
                record["text"] = data.decode("utf-8")
            except UnicodeDecodeError:
                record["base64"] = base64.b64encode(data).decode()
        records.append(record)
    doc = {
        "app": app,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
        "hubUrl": hub_url,
        "files": records,
    }
    target = unique_path(directory, "", ".json")
    atomic_write(target, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return target


def apply_redirect(app: App, rewrites: list[Rewrite], root: Path, hub_url: str) -> Path:
    """Back up every file `rewrites` touch, then write them. Returns the backup manifest."""
    manifest = save_manifest(root, app.name, [r.path for r in rewrites], reason=POINT_TO_HUB, hub_url=hub_url)
    for rewrite in rewrites:
        atomic_write(rewrite.path, rewrite.after)
    return manifest


def read_manifest(path: Path) -> Manifest:
    try:
        doc = orjson.loads(path.read_bytes())
        files = tuple(Path(f["path"]) for f in doc["files"])
        return Manifest(path, doc["app"], doc["created"], doc["reason"], doc.get("hubUrl"), files)
    except FileNotFoundError:
        raise RedirectError(f"backup {path} does not exist") from None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RedirectError(f"{path} is not an onemcp app backup ({exc})") from None


def manifests(root: Path, app: str) -> list[Manifest]:
    """This app's backups, oldest first; unreadable files are left out."""
    found = []
    for path in stamped(app_backup_dir(root, app), "", ".json"):
        with contextlib.suppress(RedirectError):
            found.append(read_manifest(path))
    return found


def restore(path: Path, root: Path) -> tuple[Manifest, Path]:
    """Put back the files recorded in the manifest at `path`, byte for byte and with their modes.

    The files' current state is saved first (reason ``before-restore``), so a restore can be
    undone too. Returns the restored manifest and that new one.
    """
    manifest = read_manifest(path)
    doc = orjson.loads(path.read_bytes())
    safety = save_manifest(root, manifest.app, list(manifest.files), reason=BEFORE_RESTORE)
    for record in doc["files"]:
        target = Path(record["path"])
        if not record["existed"]:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            continue
        data = base64.b64decode(record["base64"]) if "base64" in record else record["text"].encode("utf-8")
        atomic_write(target, data, mode=record.get("mode"))
    return manifest, safety
