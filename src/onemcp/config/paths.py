"""Where onemcp's files are: the config directory and the path of mcp.json.

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


def resolve_path(flag: str | None) -> Path:
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get("ONEMCP_CONFIG")
    if env:
        return Path(env).expanduser()
    return config_dir() / "mcp.json"
