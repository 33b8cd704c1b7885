"""Reading mcp.json: where it is, ${VAR} substitution, and errors that name the bad field.

Owns: locating the config (flag, ONEMCP_CONFIG, default dir), writing the starter config
when there is none, environment substitution, and turning validation failures into one
`ConfigError` whose message gives the JSON path (``mcpServers.git.url: ...``).
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from onemcp.config import compat, formats, schema
from onemcp.config.model import HubConfig
from onemcp.config.paths import config_dir as config_dir  # re-exported: callers import them from here
from onemcp.config.paths import resolve_path as resolve_path

# ${NAME}, ${NAME:-default}, and $NAME (a name must start with a letter or '_': "$1" and "^a$" stay as they are)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ConfigError(Exception):
    """The config cannot be used; the message says where and why.

    `transient`: the file could not be read for a reason that passes (the process is out of file
    descriptors or memory): reading it again later may well succeed.
    """

    def __init__(self, message: str, *, transient: bool = False, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.problems = problems if problems is not None else [message]  # each one, for `onemcp validate`


TRANSIENT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS})


def starter_config() -> dict[str, Any]:
    """A config that works offline on a fresh machine: the bundled demo and mcp-server-time."""
    return {
        "$schema": schema.uri(),
        "mcpServers": {
            "demo": {
                "command": sys.executable,
                "args": ["-m", "onemcp.demo"],
                "tags": ["demo"],
            },
            "time": {
                "command": sys.executable,
                "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                "tags": ["demo", "time"],
            },
        },
    }


def write_starter(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(starter_config(), option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)


def substitute(value: Any, env: dict[str, str], where: str = "", missing: list[str] | None = None) -> Any:
    """Replace ${VAR}, ${VAR:-default} and $VAR in every string of a parsed document.

    Every variable that is not set (and has no default) is added to `missing` as
    "<path>: environment variable ${NAME} is not set"; without `missing`, the first raises.
    """
    found: list[str] = [] if missing is None else missing
    out = _substitute(value, env, where, found)
    if missing is None and found:
        raise ConfigError(found[0])
    return out


def _substitute(value: Any, env: dict[str, str], where: str, missing: list[str]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(3)
            default = m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            missing.append(f"{where or '<root>'}: environment variable ${{{name}}} is not set")
            return m.group(0)

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, f"{where}.{k}" if where else str(k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{where}[{i}]", missing) for i, v in enumerate(value)]
    return value


def parse_config(raw: bytes, *, source: str, env: dict[str, str] | None = None, fmt: str = "json") -> HubConfig:
    """The config in `raw` (JSON/JSONC, YAML or TOML), validated; ConfigError lists every problem."""
    try:
        doc = formats.parse(raw, fmt)
    except (formats.FormatError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}", problems=[str(exc)]) from None
    if doc is None and fmt != "json":
        doc = {}  # an empty YAML file
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: the top level must be an object (a mapping)", problems=["the top level must be an object"]
        )
    for key in compat.FOREIGN_TOP_KEYS:
        doc.pop(key, None)
    problems = compat.normalise(doc)
    doc = substitute(doc, dict(os.environ) if env is None else env, missing=problems)
    config: HubConfig | None = None
    try:
        config = HubConfig.model_validate(doc)
    except ValidationError as exc:
        problems += describe(exc)
    if problems or config is None:
        raise ConfigError(f"{source}: {'; '.join(problems)}", problems=problems)
    return config


def environment(path: Path) -> dict[str, str]:
    """The variables a config sees: the process's, over those of a `.env` file beside the config."""
    env: dict[str, str] = {}
    try:
        text = (path.parent / ".env").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env | dict(os.environ)


def load_config(path: Path) -> HubConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", transient=exc.errno in TRANSIENT_ERRNOS) from None
    config = parse_config(raw, source=str(path), env=environment(path), fmt=formats.format_of(path))
    relative = {}  # paths in the file are relative to the file, not to where the hub was started
    for field in ("instructions_file", "search_cache"):
        value = getattr(config.hub, field)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            relative[field] = str(path.parent / value)
    if relative:
        config = config.model_copy(update={"hub": config.hub.model_copy(update=relative)})
    return config


def describe(exc: ValidationError) -> list[str]:
    """Each validation error as "<path>: <message>"; an unknown key with the likely intended one."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key(err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return parts


def unknown_key(loc: tuple[str | int, ...]) -> str:
    """The message for a key the model does not have: what it might have meant, else what there is."""
    known = keys_at(loc[:-1])
    key = str(loc[-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) or [k for k in known if k.lower() == key.lower()]
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (known here: {', '.join(sorted(known))})"


def keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the config model accepts at `loc` (a path into the document)."""
    model: Any = HubConfig
    rest = list(loc)
    while rest:
        part = rest.pop(0)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        model = _inner(field.annotation)
        origin = typing.get_origin(model)
        if origin is dict and rest:
            rest.pop(0)  # the entry's name
            model = _inner(typing.get_args(model)[1])
        elif origin is list and rest:
            rest.pop(0)
            model = _inner(typing.get_args(model)[0])
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _inner(annotation: Any) -> Any:
    """The model in `X | None` (or the annotation itself)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else args[0]
    return annotation
