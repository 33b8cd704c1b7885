"""Where onemcp's files are: the config directory and the path of its config (mcp.json, or YAML/TOML).

Owns the lookup order only (flag, ``$ONEMCP_CONFIG``, ``$ONEMCP_CONFIG_DIR``, XDG, home). Stdlib
only, so the fast command-line paths (`onemcp run`) can find the running hub without loading the
config schema.
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    env = os.environ.get("ONEMCP_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "onemcp"


def named_by(flag: str | None) -> str | None:
    """Who named the config file, "--config" or "$ONEMCP_CONFIG" (None: it is the directory's default).
    A named file that is missing is an error, never a place to write the starter config."""
    if flag:
        return "--config"
    return "$ONEMCP_CONFIG" if os.environ.get("ONEMCP_CONFIG") else None


def resolve_path(flag: str | None) -> Path:
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get("ONEMCP_CONFIG")
    if env:
        return Path(env).expanduser()
    return default_config(config_dir())


NAMES = ("mcp.json", "mcp.yaml", "mcp.yml", "mcp.toml")  # the config in a directory, in this order


def default_config(directory: Path) -> Path:
    """The directory's config: mcp.json, else the one of mcp.yaml / mcp.yml / mcp.toml that is there
    (mcp.json, where a new one is written, when none is)."""
    for name in NAMES:
        if (directory / name).is_file():
            return directory / name
    return directory / NAMES[0]


def other_configs(path: Path) -> list[Path]:
    """Config files beside `path` that are not read while it is (a second format of the same config)."""
    return [path.parent / n for n in NAMES if n != path.name and (path.parent / n).is_file()]
