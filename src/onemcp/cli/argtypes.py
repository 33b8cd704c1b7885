"""Checked `type=` functions for the command line's numeric flags, paths, hub URLs and view selectors.

A bad value is argparse's usual one-line usage error (exit 2) naming the flag and the range it
takes, before the command does anything: never a traceback, a silent no-op or a false "no hub
answers". Stdlib only: `onemcp run` imports this on every call.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from onemcp.config.values import url_problem

MAX_PORT = 65_535
MAX_SECONDS = 86_400.0  # a day, as the config's own `Seconds` (onemcp.config.model; not imported: kept light)
MAX_TIMEOUT = 3_600.0  # a server's `timeout`, as the config's own (onemcp.config.base.TIMEOUT_MAX)


def port(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to {MAX_PORT} (0 picks a free one), not {text!r}")
    return value


def seconds(text: str, most: float = MAX_SECONDS) -> float:
    """A duration: a finite number of seconds greater than 0 and at most a day (or `most`)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= most):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds greater than 0 and at most {most:g}, not {text!r}"
        )
    return value


def request_timeout(text: str) -> float:
    """A server's `timeout`: seconds, at most an hour, as the config takes it (onemcp.config.base.TIMEOUT_MAX)."""
    return seconds(text, MAX_TIMEOUT)


def count(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from `low` (to `high`, when given)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {span}, not {text!r}")
        return value

    check.__name__ = "count"
    return check


def path(text: str) -> str:
    """A file or directory path: never empty (`--config "$UNSET"` would otherwise read the default
    config, unsaid: an empty value reads as "not given")."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, not {text!r} (leave the flag out for the default)")
    return text


def selector(text: str) -> str:
    """A view selector's value (a preset, a tag expression, tags a,b): never blank, which would
    select every server (a view fails closed, as `/mcp?tags=` does)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected a preset, a tag expression or tags a,b (a view is never blank), not {text!r}"
        )
    return text


def query(text: str) -> str:
    """A search: what the user wants to do, in words (never blank)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected what you want to do, in words, not {text!r}")
    return text


def hub_url_problem(text: str) -> str | None:
    """Why `text` is no hub URL (None: it is one): http(s), a host, a port from 0 to 65535, no blanks.
    The config's own check of a server's `url` (onemcp.config.values, stdlib only)."""
    if not text.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    return url_problem(text)


def hub_url(text: str) -> str:
    """A hub's URL (`--url`, `--base`), checked before anything runs: a malformed one is exit 2, not a
    traceback from deep in a client."""
    problem = hub_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"expected the hub's http(s) URL, but {text!r} {problem}")
    return text
