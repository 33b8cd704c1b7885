"""Which hub, and which view of it, a client command talks to.

Owns the lookup order shared by `run`, `inspect`, `instructions` and `proxy`: a flag wins, then
the nearest project `.onemcprc` (found by walking up from the working directory), then
`runtime.json` beside the config (the hub `onemcp serve` started). The view is one selector
(`preset`, `filter` or `tags`), appended to the URL's query (one the URL chooses already must be the
same). Stdlib only: `onemcp run` does this on every call. Does not talk to the hub. A long-lived
client (`proxy`) keeps an `Endpoint`, which follows runtime.json to a hub restarted at another
address when the URL came from there.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from onemcp.cli import argtypes
from onemcp.config.context import find_rc
from onemcp.config.paths import resolve_path
from onemcp.config.runtime import NoHub, lock_holder, locked, read_runtime

LOOPBACK = ("127.0.0.1", "localhost", "::1")

SELECTORS = ("preset", "filter", "tags")
EXPOSURES = ("full", "search", "auto")  # what /mcp?exposure= takes (config.model.Exposure: not imported here)
RC_KEYS = ("url", *SELECTORS, "environment", "context")  # what docs/command-line.md and the README document


class TargetError(Exception):
    """No usable hub or view: the message says why."""


class BadTarget(TargetError):
    """What the user gave is wrong (a malformed hub URL, a bad `.onemcprc`): a bad request, exit 2."""


class Target(NamedTuple):  # not a dataclass: `dataclasses` costs `onemcp run` 5 ms of imports
    url: str  # the MCP endpoint, view query included
    config: Path | None  # the hub's mcp.json, when known (it predicts tool naming)
    source: str = "flag"  # where the URL came from: "flag", "rc", "runtime" or "default" (none running)


def read_rc(path: Path) -> dict[str, str]:
    """The rc file's settings (`url`, `preset`, `filter`, `tags`), `tags` as `a,b`; BadTarget for a
    file that does not read, a key it does not know (a typo would widen the view silently) or a
    value of the wrong type (`environment` and `context` are the template context's, read by
    `config.context`, and checked here too)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BadTarget(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise BadTarget(f'{path}: expected a JSON object like {{"preset": "dev"}}')
    for key in doc:
        if key not in RC_KEYS:
            close = difflib.get_close_matches(key, RC_KEYS, n=1)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise BadTarget(f"{path}: unknown key {key!r}{guess} (it takes {', '.join(RC_KEYS)})")
    if not isinstance(doc.get("environment", ""), str):
        raise BadTarget(f"{path}: 'environment' must be a string")
    custom = doc.get("context", {})
    if not isinstance(custom, dict):
        raise BadTarget(f'{path}: \'context\' must be an object like {{"team": "web"}}')
    for name, item in custom.items():
        if not isinstance(item, (str, int, float, bool)):
            raise BadTarget(f"{path}: 'context.{name}' must be a string, a number or true/false")
    out: dict[str, str] = {}
    for key in ("url", *SELECTORS):
        value: Any = doc.get(key)
        if value is None:
            continue
        if key == "tags" and isinstance(value, list) and all(isinstance(t, str) for t in value):
            value = ",".join(value)
        if not isinstance(value, str) or not value.strip():
            raise BadTarget(f"{path}: {key!r} must be a non-empty string")
        out[key] = value.strip()
    if sum(key in out for key in SELECTORS) > 1:
        raise BadTarget(f"{path}: give at most one of preset, filter, tags")
    return out


def with_view(url: str, view: dict[str, str]) -> str:
    """`url` with the view selector in its query (replacing any selector already there)."""
    if not view:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in SELECTORS]
    query.extend(view.items())
    # `+` (and) must be escaped: a query string reads a bare `+` as a space
    return urlunsplit(parts._replace(query=urlencode(query, safe=",!()")))


def add_view_flags(parser: argparse.ArgumentParser, note: str = "") -> None:
    """--preset / --filter / --tags (one of them) and --exposure: what /mcp's query string chooses."""
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--preset", type=argtypes.selector, help=f"{note}see only the servers of this preset")
    view.add_argument(
        "--filter", type=argtypes.selector, help=f"{note}see only the servers whose tags match this expression"
    )
    view.add_argument("--tags", type=argtypes.selector, help=f"{note}see only the servers with any of these tags (a,b)")
    parser.add_argument(
        "--exposure",
        choices=EXPOSURES,
        help=f"{note}tools as full definitions, as search meta-tools, or search above the hub's token budget",
    )


def with_exposure(url: str, exposure: str | None, *, flag: bool = False) -> str:
    """`url` asking the hub for this tool exposure (full, search, auto; None: the URL as it is). The
    URL's own `exposure=`, which this replaces, must be one of those (a typo there was dropped unseen),
    and, when `exposure` is the user's `--exposure` (`flag`), the same value: two choices are refused."""
    if exposure is None:
        return url
    parts = urlsplit(url)
    given = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "exposure"]
    for value in given:
        if value not in EXPOSURES:
            raise BadTarget(f"the hub URL asks for exposure {value!r}; expected one of {', '.join(EXPOSURES)}")
        if flag and value != exposure:
            raise BadTarget(f"--exposure {exposure} and the hub URL's exposure={value} disagree: give one")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "exposure"]
    query.append(("exposure", exposure))
    return urlunsplit(parts._replace(query=urlencode(query, safe=",!()")))


def view_of(url: str) -> dict[str, str]:
    """The view selector in a hub URL's query (empty for the whole hub)."""
    return {k: v for k, v in parse_qsl(urlsplit(url).query) if k in SELECTORS}


def resolve(
    *,
    config_flag: str | None = None,
    url: str | None = None,
    view: dict[str, str | None] | None = None,
    cwd: Path | None = None,
    default_url: str | None = None,
) -> Target:
    """The hub URL (with the view) a command should use; TargetError when there is none.

    With `default_url`, no running hub is no error: that URL is used (a proxy waits for the hub).
    """
    chosen = {k: v for k, v in (view or {}).items() if v is not None}
    blank = [k for k, v in chosen.items() if not v.strip()]
    if blank:  # it would select every server: a view fails closed
        raise BadTarget(f"--{blank[0]} needs a value (a blank view would show every server)")
    rc_path = find_rc(cwd or Path.cwd())
    rc = read_rc(rc_path) if rc_path is not None else {}
    chosen_by = "--" if chosen else f"{rc_path}: "
    if not chosen:
        chosen = {k: rc[k] for k in SELECTORS if k in rc}
    config: Path | None = None
    source = "flag" if url is not None else "rc"
    if url is None and "url" in rc:
        url = rc["url"]
        problem = argtypes.hub_url_problem(url)
        if problem is not None:
            raise BadTarget(f"{rc_path}: its url {url!r} {problem}")
        if urlsplit(url).hostname not in LOOPBACK:  # a cloned repository's file must not send your token elsewhere
            raise BadTarget(
                f"{rc_path} names a hub at {url!r}, not on this machine; a project file may only name a local"
                " hub (your $ONEMCP_TOKEN is sent to it): pass --url to use that hub"
            )
    if url is None:
        config_path = resolve_path(config_flag)
        try:
            runtime = read_runtime(config_path)
            source = "runtime"
        except NoHub as exc:
            if default_url is None:
                raise TargetError(str(exc)) from None
            runtime = {"url": default_url, "config": str(config_path)}
            source = "default"
        url = str(runtime["url"])
        config = Path(runtime["config"]) if isinstance(runtime.get("config"), str) else config_path
    elif config_flag:
        config = resolve_path(config_flag)
    problem = argtypes.hub_url_problem(url)
    if problem is not None and source == "runtime":  # not the user's request: a hand-edited file
        raise TargetError(f"the hub URL {url!r} in runtime.json (beside {config}) {problem}")
    if problem is not None:
        raise BadTarget(f"the hub URL {url!r} {problem}")
    if chosen and (given := view_of(url)) and given != chosen:  # which view was meant? (two: a guess)
        ours, theirs = (" ".join(f"{k}={v}" for k, v in view.items()) for view in (chosen, given))
        raise BadTarget(f"{chosen_by}{ours} and the hub URL's {theirs} choose two views: give one")
    return Target(with_view(url, chosen), config, source)


class Endpoint:
    """The hub URL a long-lived client uses, view and exposure query included.

    Fixed when it was named (`--url`, `.onemcprc`); when it came from runtime.json, `moved()` reads that
    file again, so a hub restarted at another address (`onemcp restart --port 0`) is followed. While no
    hub holds the file (between a stop and a start) the last address is kept. With no hub of the config
    directory running at all, there is no address yet (`waiting` says why): the default URL would be a
    guess, and may be another directory's hub (which would get the client's calls, and `$ONEMCP_TOKEN`),
    so it is never used; the first runtime.json a hub of the directory writes gives the address.
    """

    def __init__(self, url: str, runtime: Path | None = None, *, waiting: str | None = None) -> None:
        self.url = url  # with `waiting`, a placeholder carrying the query: never reached
        self._config = runtime  # the mcp.json whose runtime.json to follow; None: the URL is fixed
        self.waiting = waiting

    def moved(self) -> bool:
        """Has the hub moved to another URL (runtime.json says so now)? If so, `url` is the new one."""
        if self._config is None:
            return False
        try:
            found = read_runtime(self._config)
        except NoHub:
            return False
        if not locked(self._config):  # a killed hub's file, whose pid lives on in another process
            return False
        if argtypes.hub_url_problem(str(found["url"])) is not None:  # a hand-edited file: keep the last address
            return False
        new = urlsplit(str(found["url"]))
        url = urlunsplit(new._replace(query=urlsplit(self.url).query))
        if url == self.url and self.waiting is None:
            return False
        self.url, self.waiting = url, None
        return True


def no_hub_for(config: Path, default_url: str) -> str:
    """Why a client of `config`'s hub has no address yet (no runtime.json), naming the guess it does not make."""
    holder = lock_holder(config)
    if holder is not None:  # it runs, but its runtime.json was removed or damaged
        said = f"the hub of {config.parent} (pid {holder}) does not say where it listens (its runtime.json is missing)"
    else:
        said = f"no hub is running for {config} (start one with `onemcp serve` or `onemcp start`)"
    return (
        f"{said}; the proxy waits for it, and does not try {default_url}, which may be another config"
        " directory's hub: --url names a hub to use"
    )
