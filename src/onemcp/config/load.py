"""Reading mcp.json: where it is, ${VAR} substitution, and errors that name the bad field.

Owns: locating the config (flag, ONEMCP_CONFIG, default dir), writing the starter config
when there is none, environment substitution, and turning validation failures into one
`ConfigError` whose message gives the JSON path (``mcpServers.git.url: ...``).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from onemcp.config.model import HubConfig
from onemcp.config.paths import config_dir as config_dir  # re-exported: callers import them from here
from onemcp.config.paths import resolve_path as resolve_path

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config cannot be used; the message says where and why.

    `transient`: the file could not be read for a reason that passes (the process is out of file
    descriptors or memory): reading it again later may well succeed.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


TRANSIENT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ENOBUFS})


def starter_config() -> dict[str, Any]:
    """A config that works offline on a fresh machine: the bundled demo and mcp-server-time."""
    return {
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


def substitute(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed JSON document."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{where or '<root>'}: environment variable ${{{name}}} is not set")

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_config(raw: bytes, *, source: str, env: dict[str, str] | None = None) -> HubConfig:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    if "mcpServers" not in doc and isinstance(doc.get("servers"), dict):
        doc["mcpServers"] = doc.pop("servers")  # VS Code's spelling
    try:
        doc = substitute(doc, dict(os.environ) if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return HubConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_config(path: Path) -> HubConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", transient=exc.errno in TRANSIENT_ERRNOS) from None
    config = parse_config(raw, source=str(path))
    template = config.hub.instructions_file
    if template and not Path(template).expanduser().is_absolute():
        absolute = str(path.parent / template)
        config = config.model_copy(update={"hub": config.hub.model_copy(update={"instructions_file": absolute})})
    return config


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
