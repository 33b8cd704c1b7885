"""Pinned tool definitions: the defence against a server that changes its tools after it was trusted.

Owns the record of every server's tool definitions as first seen or last approved (a sha256 of
name, title, description, input and output schemas and annotations, and the definition itself
for a diff), kept in `pins.db` beside mcp.json (in memory for a hub without a config file), and
the screening of each tools list an upstream sends, before the catalog sees it: a tool seen for
the first time is pinned (trust on first use); a tool whose definition differs from its pin is
recorded as a change and, per `pinToolDefinitions`, withheld from every client until an operator
approves it (`withhold`, the default), passed on and reported (`report`), or not checked (`off`).
Approving makes the changed definition the pin. Template instances share their template's pins.
Does not decide what a requester may see (views, scopes), and never talks to an upstream.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.model import PinMode
from onemcp.config.sqlite import Writer, open_store
from onemcp.observability.limits import hit
from onemcp.protocol.names import shown_as

log = logging.getLogger("onemcp.pins")
audit = logging.getLogger("onemcp.audit")
FILE = "pins.db"
# Pins kept per server: twice the 10,000 tools one list keeps (a whole list may be replaced and the old one
# still kept). Past it the oldest pins of tools the server no longer lists are forgotten: a server that
# renames its tools on every list_changed grew pins.db and the hub's memory without end (890,000 pins,
# 228 MB in 150 s).
MAX_PINS = 20_000

PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
SCHEMA = """
create table if not exists pins (
    server text not null, tool text not null, digest text not null, definition text not null,
    pinned_at real not null, primary key (server, tool));
create table if not exists changes (
    server text not null, tool text not null, digest text not null, definition text not null,
    seen_at real not null, primary key (server, tool));
"""

Item = dict[str, Any]


def pinned_part(tool: Mapping[str, Any]) -> dict[str, Any]:
    """What of a definition is pinned (what a model reads and what shapes the call)."""
    return {key: tool[key] for key in PINNED_FIELDS if key in tool}


def digest(tool: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(pinned_part(tool), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Change:
    """A tool whose definition differs from its pin: what was approved, what the server sends now."""

    server: str
    tool: str
    pinned: dict[str, Any]
    current: dict[str, Any]
    seen_at: float

    def diff(self) -> str:
        """A unified diff of the two definitions, as indented JSON with sorted keys."""
        old, new = (
            orjson.dumps(d, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()
            for d in (self.pinned, self.current)
        )
        name = f"{self.server}/{self.tool}"
        return "\n".join(difflib.unified_diff(old, new, f"{name} (approved)", f"{name} (now)", lineterm=""))

    def as_json(self) -> dict[str, Any]:
        return {"server": self.server, "tool": self.tool, "seenAt": self.seen_at, "diff": self.diff()}


class Pins:
    def __init__(self, directory: Path | None) -> None:
        self._path = directory / FILE if directory is not None else None
        self._writer: Writer | None = None  # pins.db's writes (read once, at first use)
        self._pins: dict[tuple[str, str], tuple[str, str]] | None = None  # (server, tool) -> (digest, definition)
        self._pinned: dict[str, dict[str, None]] = {}  # server -> its pinned tools, oldest pinned first
        self._changes: dict[tuple[str, str], Change] = {}
        self.raw: dict[str, list[Item]] = {}  # each server's last tools list as sent, for screening again

    # ------------------------------------------------------------------ storage
    def _open(self) -> dict[tuple[str, str], tuple[str, str]]:
        if self._pins is None:
            self._pins = {}
            if self._path is None:
                return self._pins  # a hub without a config file: pins live as long as the process
            try:
                db = open_store(self._path, SCHEMA)
                try:
                    for server, tool, sha, definition in db.execute(
                        "select server, tool, digest, definition from pins order by pinned_at"
                    ):
                        self._pins[(server, tool)] = (sha, definition)
                        self._pinned.setdefault(server, {})[tool] = None
                    for server, tool, _sha, definition, seen in db.execute("select * from changes"):
                        pinned = self._pins.get((server, tool))
                        if pinned is not None:
                            current = orjson.loads(definition)
                            self._changes[(server, tool)] = Change(server, tool, orjson.loads(pinned[1]), current, seen)
                finally:
                    db.close()
                self._writer = Writer(self._path, SCHEMA, "tool pins", log)
            except (OSError, sqlite3.Error) as exc:  # pins then live as long as the process
                log.warning("tool pins not kept on disk (%s): %s", self._path, exc)
        return self._pins

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Written by the file's writer thread (another process holding pins.db's lock must not stall the hub)."""
        if self._writer is None or not rows:
            return
        rows = list(rows)

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.execute("begin")
                db.executemany(sql, rows)

        self._writer.put(write)

    # ------------------------------------------------------------------ screening
    def screen(self, server: str, tools: list[Item], mode: PinMode) -> list[Item]:
        """The tools of `server`'s list that clients may see now; new ones pinned, changed ones recorded."""
        self.raw[server] = tools
        if mode == "off":
            return tools
        pins = self._open()
        owner = shown_as(server)
        now = time.time()
        new_pins: list[tuple[Any, ...]] = []
        new_changes: list[tuple[Any, ...]] = []
        passed: list[Item] = []
        first: dict[str, bool] = {}  # name -> whether its first entry in this list passed
        for tool in tools:
            name = str(tool.get("name", ""))
            if name in first:  # listed twice in one list: not a change; it shares its first entry's fate
                if first[name]:
                    passed.append(tool)  # the catalog keeps the first and reports this one
                continue
            first[name] = True
            key = (owner, name)
            sha = digest(tool)
            pinned = pins.get(key)
            if pinned is None:
                definition = orjson.dumps(pinned_part(tool)).decode()
                pins[key] = (sha, definition)
                self._pinned.setdefault(owner, {})[name] = None
                new_pins.append((owner, name, sha, definition, now))
                passed.append(tool)
                continue
            if pinned[0] == sha:
                if self._changes.pop(key, None) is not None:  # the server went back to what was approved
                    self._write("delete from changes where server = ? and tool = ?", [key])
                passed.append(tool)
                continue
            known = self._changes.get(key)
            if known is None or digest(known.current) != sha:
                current = pinned_part(tool)
                self._changes[key] = Change(owner, name, orjson.loads(pinned[1]), current, now)
                new_changes.append((owner, name, sha, orjson.dumps(current).decode(), now))
                audit.info("pin changed server=%s tool=%s action=%s", owner, name, mode)
                log.warning(
                    "upstream %s changed the definition of tool %s since it was approved: %s until `onemcp mcp"
                    " approve %s/%s`",
                    owner,
                    name,
                    "withheld" if mode == "withhold" else "passed on (report mode)",
                    owner,
                    name,
                )
            if mode == "report":
                passed.append(tool)
            else:
                first[name] = False
        self._write("insert or replace into pins values (?, ?, ?, ?, ?)", new_pins)
        self._write("insert or replace into changes values (?, ?, ?, ?, ?)", new_changes)
        if new_pins and len(self._pinned.get(owner, ())) > MAX_PINS:
            self._forget_unlisted(owner)
        return passed

    def _forget_unlisted(self, owner: str) -> None:
        """Down to MAX_PINS pins of `owner`: the oldest of tools none of its lists (a template's instances
        share its pins) has now are forgotten, with their changes. A tool listed again later is pinned anew."""
        pins, pinned = self._open(), self._pinned[owner]
        lists = [tools for server, tools in self.raw.items() if shown_as(server) == owner]
        listed = {str(tool.get("name", "")) for tools in lists for tool in tools}
        over = len(pinned) - MAX_PINS
        gone = [(owner, tool) for tool in pinned if tool not in listed][:over]
        for key in gone:
            del pinned[key[1]]
            pins.pop(key, None)
            self._changes.pop(key, None)
        self._write("delete from pins where server = ? and tool = ?", gone)
        self._write("delete from changes where server = ? and tool = ?", gone)
        why = "server %s has pins of more than %d tools: the %d oldest it no longer lists were forgotten"
        hit("tool_pins", why, owner, MAX_PINS, len(gone))

    def passing(self, server: str, tools: list[Item], mode: PinMode) -> list[Item]:
        """The tools of a list that is not the server's list of record (a session's own connection's) that
        clients may see: in withhold mode, those not pinned yet or as pinned. Nothing is pinned or recorded:
        the shared connection's list decides that (one server, one record)."""
        if mode != "withhold":
            return tools
        pins = self._open()
        owner = shown_as(server)
        return [
            tool
            for tool in tools
            if (pinned := pins.get((owner, str(tool.get("name", ""))))) is None or pinned[0] == digest(tool)
        ]

    def forget(self, server: str) -> None:
        """The server's lists went (it was removed, stopped or failed; an instance was reaped): its last
        list is not kept for screening again. Its pins stay (trust on first use outlives a remove and
        re-add; an instance's are its template's)."""
        self.raw.pop(server, None)

    def withheld(self, server: str, mode: PinMode) -> set[str]:
        """Names of `server`'s tools withheld now (changed, not approved, in withhold mode)."""
        if mode != "withhold":
            return set()
        owner = shown_as(server)
        listed = {str(t.get("name", "")) for t in self.raw.get(server, [])}
        return {tool for (s, tool) in self._changes if s == owner and tool in listed}

    # ------------------------------------------------------------------ operators
    def changes(self) -> list[Change]:
        self._open()
        return sorted(self._changes.values(), key=lambda c: (c.server, c.tool))

    def approve(self, server: str, tools: Iterable[str] | None = None) -> list[str]:
        """Make the changed definitions of `server` (all, or `tools`) its pins; returns the tools approved."""
        pins = self._open()
        wanted = None if tools is None else set(tools)
        approved = [c for (s, t), c in self._changes.items() if s == server and (wanted is None or t in wanted)]
        now = time.time()
        for change in approved:
            key = (change.server, change.tool)
            definition = orjson.dumps(change.current).decode()
            pins[key] = (digest(change.current), definition)
            del self._changes[key]
        self._write(
            "insert or replace into pins values (?, ?, ?, ?, ?)",
            [(c.server, c.tool, digest(c.current), orjson.dumps(c.current).decode(), now) for c in approved],
        )
        self._write("delete from changes where server = ? and tool = ?", [(c.server, c.tool) for c in approved])
        for change in approved:
            audit.info("pin approved server=%s tool=%s", change.server, change.tool)
        return [c.tool for c in approved]

    def close(self) -> None:
        """The writes still waiting are done first (for a while: `Writer.close`)."""
        if self._writer is not None:
            self._writer.close()
