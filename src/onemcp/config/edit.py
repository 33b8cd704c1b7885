"""Changing mcp.json safely: edit the raw document, validate the result, then swap it in with a backup.

Owns the edit cycle for the hub's own config file: read the JSON document as written (unknown
keys, key order and ``${VAR}`` references kept verbatim), apply a change, validate the result
exactly as the hub would load it (`load.parse_config`), keep a timestamped backup of the
previous file, and replace it atomically. A file with comments (JSONC) is changed in place, only
where the change is (`jsonc.patch`): its comments and the formatting of the rest stay; a plain JSON
file is written again whole, indented as it was. It does not watch the file or talk to a running hub;
a hub notices the new file by itself.

Errors::

    ConfigError (load)   the edited document would not load; the message names the field
    EditError            the change does not apply to this document
    ├── BadName          the server name breaks the naming rules
    ├── NoSuchServer     no server by that name
    ├── ServerExists     a server by that name already exists
    └── ChangedOnDisk    someone else wrote the file while we were editing it
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from onemcp.config import formats, jsonc, schema
from onemcp.config.base import kinds_of
from onemcp.config.files import atomic_write, backup, locked
from onemcp.config.load import ConfigError, parse_config
from onemcp.config.model import HubConfig
from onemcp.protocol.names import DEFAULT_SEPARATOR, server_name_problem

log = logging.getLogger("onemcp.config")
Document = dict[str, Any]
BACKUPS_KEPT = 10
BACKUP_DIR = "backups"
# Stands in for a ${VAR} this shell does not have: the hub may run with a different environment,
# so an unset variable is no reason to refuse an edit. URL-shaped so a `url` built from it validates.
PLACEHOLDER = "http://unset.invalid"
# ${NAME} or $NAME (no ':-default', so unset means unusable), as `load.substitute` reads them; $$ is a
# literal "$" (no group), so "pa$$word" names no variable
_BARE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class EditError(Exception):
    """The change does not apply to this document; the message says why."""


class BadName(EditError):
    pass


class NoSuchServer(EditError):
    pass


class ServerExists(EditError):
    pass


class ChangedOnDisk(EditError):
    pass


@dataclass(frozen=True)
class EditResult:
    path: Path
    changed: bool
    config: HubConfig
    backup: Path | None = None
    unset: tuple[str, ...] = ()  # ${VAR}s this edit brought in that are not set here (validated with a placeholder)


def read_document(path: Path, *, to_edit: bool = True) -> Document:
    """The raw object in `path` (empty when the file does not exist), ${VAR}s not substituted: JSON to
    edit; to read only (`to_edit=False`), YAML and TOML as well."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return _decode(raw, path, to_edit)


def _decode(raw: bytes, path: Path, to_edit: bool = True) -> Document:
    fmt = formats.format_of(path)
    if to_edit and fmt != "json":
        raise ConfigError(f"{path}: onemcp edits JSON configs; edit this one by hand (`onemcp validate` checks it)")
    try:
        doc = formats.parse(raw, fmt)  # JSON's comments are read (and kept by an edit: `_text_of`)
    except (formats.FormatError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return doc


def servers_key(doc: Document) -> str:
    """Where this document keeps its servers: `mcpServers`, or VS Code's `servers` if that is what it uses."""
    if "mcpServers" not in doc and isinstance(doc.get("servers"), dict):
        return "servers"
    return "mcpServers"


def servers_of(doc: Document, *, create: bool = False) -> dict[str, Any]:
    key = servers_key(doc)
    servers = doc.get(key)
    if servers is None and create:
        servers = doc[key] = {}
    if servers is None:
        return {}
    if not isinstance(servers, dict):
        raise EditError(f"'{key}' must be a JSON object, not {type(servers).__name__}")
    return servers


def separator_of(doc: Document) -> str:
    hub = doc.get("onemcp")
    sep = hub.get("separator") if isinstance(hub, dict) else None
    return sep if isinstance(sep, str) and sep else DEFAULT_SEPARATOR


def check_name(doc: Document, name: str) -> None:
    problem = server_name_problem(name, separator_of(doc))
    if problem:
        raise BadName(f"invalid server name {name!r}: it {problem}")


# ---------------------------------------------------------------------- changes
def add_server(doc: Document, name: str, entry: dict[str, Any], *, replace: bool = False) -> None:
    check_name(doc, name)
    servers = servers_of(doc, create=True)
    if name in servers and not replace:
        raise ServerExists(f"a server named {name!r} already exists")
    servers[name] = entry


def remove_server(doc: Document, name: str) -> None:
    servers = servers_of(doc)
    if name not in servers:
        raise NoSuchServer(_unknown(name, servers))
    del servers[name]


def _entry(doc: Document, name: str) -> dict[str, Any]:
    """Server `name`'s entry, to change in place; NoSuchServer, or EditError when it is no JSON object."""
    servers = servers_of(doc)
    entry = servers.get(name)
    if entry is None:
        raise NoSuchServer(_unknown(name, servers))
    if not isinstance(entry, dict):
        raise EditError(f"server {name!r} is not a JSON object")
    return entry


def set_disabled(doc: Document, name: str, disabled: bool) -> None:
    entry = _entry(doc, name)
    if disabled:
        entry["disabled"] = True
    else:
        entry.pop("disabled", None)  # absent means enabled; keeps the entry as other clients write it


Transport = Literal["stdio", "http", "sse"]
# What a server that becomes an HTTP one loses, and what one that becomes a stdio one loses (the replicas
# and their weights either way: processes or URLs, members of the old kind)
STDIO_FIELDS = ("command", "args", "env", "cwd", "sandbox", "replicas", "weights")
HTTP_FIELDS = ("type", "url", "headers", "probe", "oauth", "replicas", "weights")


@dataclass(frozen=True)
class ServerChange:
    """What `onemcp mcp edit` changes in one server's entry; what it leaves None or empty stays as written."""

    tags: list[str] | None = None  # all its tags ([]: none)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # set, added or replaced
    unset_env: tuple[str, ...] = ()
    command: str | None = None
    args: list[str] | None = None  # all its arguments ([]: none)
    cwd: str | None = None
    unset_cwd: bool = False
    url: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # set, added or replaced (any case)
    unset_headers: tuple[str, ...] = ()
    timeout: float | None = None
    unset_timeout: bool = False  # the default deadline again
    transport: Transport | None = None  # moves it: to stdio needs `command`, from stdio `url`


def transport_of(entry: dict[str, Any]) -> Transport:
    """The transport an entry is written with, as the hub reads it."""
    if entry.get("command") is not None:
        return "stdio"
    return "sse" if entry.get("type") == "sse" else "http"


def change_server(doc: Document, name: str, change: ServerChange) -> None:
    """Apply `change` to server `name`'s entry; a tag or variable to remove that it does not have is an
    `EditError` (a typo would otherwise pass as done), as is a stdio-only change to an HTTP server (one
    not moved by `transport`), and a move that lacks what the new transport needs (its command or URL)."""
    entry = _entry(doc, name)
    was = transport_of(entry)
    now = change.transport or was
    if (now == "stdio") != (was == "stdio"):
        _move(entry, name, was, now, change)
    flags = {"--env": bool(change.env), "--unset-env": bool(change.unset_env), "--cwd": change.cwd is not None}
    flags |= {"--unset-cwd": change.unset_cwd, "--command": change.command is not None}
    flags |= {"--arg": change.args is not None}
    move = " (`--type stdio --command CMD` makes it one)"
    if now != "stdio" and (given := [flag for flag, on in flags.items() if on]):
        raise EditError(f"{given[0]} applies to a stdio server; {name!r} is an HTTP one ({entry.get('url')}){move}")
    flags = {"--url": change.url is not None, "--header": bool(change.headers)}
    flags |= {"--unset-header": bool(change.unset_headers)}
    move = " (`--type http --url URL` makes it one)"
    if now == "stdio" and (given := [flag for flag, on in flags.items() if on]):
        raise EditError(f"{given[0]} applies to an HTTP server; {name!r} is a stdio one ({entry.get('command')}){move}")
    if now != "stdio" and now != was:  # http <-> sse: the same URL, spoken another way
        entry["type"] = now
    if change.tags is not None or change.add_tags or change.remove_tags:
        written = entry.get("tags")
        tags: list[Any] = list(written) if isinstance(written, list) else []
        tags = list(dict.fromkeys(change.tags)) if change.tags is not None else tags
        if missing := [t for t in change.remove_tags if t not in tags]:
            raise EditError(f"{name!r} has no tag {missing[0]!r} (its tags: {', '.join(map(str, tags)) or 'none'})")
        tags = [t for t in tags if t not in change.remove_tags]
        _set_or_drop(entry, "tags", tags + [t for t in dict.fromkeys(change.add_tags) if t not in tags])
    if change.env or change.unset_env:
        env = dict(entry["env"]) if isinstance(entry.get("env"), dict) else {}
        if missing := [k for k in change.unset_env if k not in env]:
            raise EditError(f"{name!r} sets no variable {missing[0]!r} (it sets: {', '.join(env) or 'none'})")
        _set_or_drop(entry, "env", {k: v for k, v in env.items() if k not in change.unset_env} | change.env)
    if change.headers or change.unset_headers:  # a header's name in any case is the same header
        headers = dict(entry["headers"]) if isinstance(entry.get("headers"), dict) else {}
        named = {k.lower() for k in change.unset_headers}
        if missing := [k for k in change.unset_headers if k.lower() not in {h.lower() for h in headers}]:
            raise EditError(f"{name!r} sends no header {missing[0]!r} (it sends: {', '.join(headers) or 'none'})")
        named |= {k.lower() for k in change.headers}
        _set_or_drop(entry, "headers", {k: v for k, v in headers.items() if k.lower() not in named} | change.headers)
    if change.command is not None:
        entry["command"] = change.command
    if change.args is not None:
        _set_or_drop(entry, "args", change.args)
    if change.cwd is not None:
        entry["cwd"] = change.cwd
    if change.unset_cwd:
        entry.pop("cwd", None)
    if change.url is not None:
        entry["url"] = change.url
    if change.timeout is not None:
        entry["timeout"] = change.timeout
    if change.unset_timeout:
        entry.pop("timeout", None)


def _move(entry: dict[str, Any], name: str, was: Transport, now: Transport, change: ServerChange) -> None:
    """Make a stdio entry an HTTP one or the reverse: what the new one needs must be given (its command,
    its URL); what only the old one has (its URL and headers, its command, arguments, env and cwd) goes."""
    if now == "stdio":
        if change.command is None:
            raise EditError(f"--type stdio needs --command CMD: {name!r} is an HTTP one ({entry.get('url')})")
        for key in HTTP_FIELDS:
            entry.pop(key, None)
        return
    if change.url is None:
        raise EditError(f"--type {now} needs --url URL: {name!r} is a stdio one ({entry.get('command')})")
    for key in STDIO_FIELDS:
        entry.pop(key, None)
    entry["type"] = now


def _set_or_drop(entry: dict[str, Any], key: str, value: list[Any] | dict[str, Any]) -> None:
    """`entry[key] = value`, unchanged when equal (its place in the file kept); absent when empty."""
    if value:
        if entry.get(key) != value:
            entry[key] = value
    else:
        entry.pop(key, None)


def _unknown(name: str, servers: dict[str, Any]) -> str:
    known = ", ".join(sorted(servers)) or "none"
    return f"no server named {name!r} (configured: {known})"


# ---------------------------------------------------------------------- the edit cycle
def validate(doc: Document, *, source: str, env: dict[str, str]) -> tuple[HubConfig, tuple[str, ...]]:
    """Load `doc` as the hub would; each unset ``${VAR}`` without a default gets a stand-in that fits
    where it stands: a whole value 1 in a field that takes a number, else `PLACEHOLDER` (a URL);
    `PLACEHOLDER` where a value starts with it; "1" inside a value (a port, a token after "Bearer ")."""
    unset = set(_bare_vars(doc)) - set(env)
    config = parse_config(orjson.dumps(_stand_in(doc, unset, "") if unset else doc), source=source, env=env)
    return config, tuple(sorted(unset))


@functools.cache
def _numeric_fields() -> frozenset[str]:
    """The config keys (names and aliases, at any depth) whose value is a number."""
    found: set[str] = set()
    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        seen.add(model)
        for name, field in model.model_fields.items():
            kinds = kinds_of(field.annotation)
            if kinds & {int, float}:
                found.update({name, field.alias or name})
            for kind in kinds:
                if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                    walk(kind)

    walk(HubConfig)
    return frozenset(found)


def _stand_in(value: Any, unset: set[str], key: str) -> Any:
    """`value` (at config key `key`) with each unset ``${VAR}`` replaced by a stand-in that fits."""
    if isinstance(value, dict):
        return {k: _stand_in(v, unset, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v, unset, key) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    whole = _BARE_VAR.fullmatch(value)
    if whole and whole.group(0) != "$$" and (whole.group(1) or whole.group(2)) in unset and key in _numeric_fields():
        return 1  # a number, as a variable's text is taken there (one written in quotes is refused)

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$" or (match.group(1) or match.group(2)) not in unset:
            return match.group(0)
        if match.start() == 0 and match.end() == len(value) and key in _numeric_fields():
            return "1"
        return PLACEHOLDER if match.start() == 0 else "1"

    return _BARE_VAR.sub(one, value)


def _bare_vars(value: Any) -> set[str]:
    if isinstance(value, str):
        return {m.group(1) or m.group(2) for m in _BARE_VAR.finditer(value) if m.group(0) != "$$"}
    if isinstance(value, dict):
        return set().union(*(_bare_vars(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_bare_vars(v) for v in value))
    return set()


def render(doc: Document, original: bytes = b"") -> bytes:
    """JSON text for `doc`, indented the way `original` was (two spaces when there is nothing to copy)."""
    indent: str | int = 2
    match = re.search(rb"^\{\s*?\n([ \t]+)\S", original)
    if match:
        found = match.group(1).decode()
        indent = found if "\t" in found else len(found)
    return (json.dumps(doc, indent=indent, ensure_ascii=False) + "\n").encode()


def _text_of(doc: Document, before: Document, original: bytes) -> bytes:
    """The new file: a JSONC one (comments, trailing commas) edited where `doc` differs from `before`, so
    what the user wrote stays; a plain JSON one rendered whole, as always."""
    text = original.decode("utf-8-sig") if original else ""
    if formats.strip_jsonc(text) == text:
        return render(doc, original)
    try:
        new = jsonc.patch(text, before, doc)
        if formats.parse(new.encode(), "json") == doc:  # read back as the hub will: else rendered whole
            return (new if not original.startswith(codecs.BOM_UTF8) else "\ufeff" + new).encode()
    except (jsonc.JsoncError, formats.FormatError):
        pass
    log.warning("could not keep the comments of the config in this edit; the previous file is in %s", BACKUP_DIR)
    return render(doc, original)


def backup_dir(path: Path) -> Path:
    return path.parent / BACKUP_DIR


def edit_config(
    path: Path,
    change: Callable[[Document], None],
    *,
    env: dict[str, str],
    keep: int = BACKUPS_KEPT,
    running: bool = False,
) -> EditResult:
    """Apply `change` to the document in `path` and write it back if it still loads.

    Nothing is written when `change` raises, when the result does not validate (`ConfigError`,
    file untouched; `running`: the edit of a running hub, which must load it now, so a new
    ``${VAR}`` that `env` does not set is refused too), or when the document did not change.
    Otherwise the previous file is copied into `backups/` beside it (newest `keep` kept) and the new
    one replaces it atomically. Concurrent edits (two `onemcp mcp add`, the admin API) take turns
    (`files.locked`); a writer that takes no lock (an editor) is caught as `ChangedOnDisk`.
    """
    with locked(path):
        return _edit_config(path, change, env=env, keep=keep, running=running)


def _edit_config(
    path: Path, change: Callable[[Document], None], *, env: dict[str, str], keep: int, running: bool
) -> EditResult:
    try:
        original = path.read_bytes()
    except FileNotFoundError:
        original = b""
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    before = _decode(original, path) if original else {}
    doc = copy.deepcopy(before) if original else {"$schema": schema.uri()}  # a new file names it, as the starter's
    change(doc)
    config, unset = validate(doc, source=str(path), env=env)
    unset = tuple(name for name in unset if name not in _bare_vars(before))
    if running and unset:
        raise ConfigError(f"{', '.join(unset)} is not set in the hub's environment, so the hub could not load it")
    if doc == before and original:
        return EditResult(path, changed=False, config=config, unset=unset)
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = b""
    if current != original:
        raise ChangedOnDisk(f"{path} changed while it was being edited; nothing written, try again")
    saved = backup(path, backup_dir(path), keep=keep) if original else None
    atomic_write(path, _text_of(doc, before, original))
    return EditResult(path, changed=True, config=config, backup=saved, unset=unset)
