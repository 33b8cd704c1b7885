"""Living configuration: watch mcp.json and its .env (and SIGHUP), validate a new version, apply it.

Owns when a reload happens and what is reported. A file that does not parse or validate
(bad JSON, a schema error, a missing ${VAR}) leaves the running config in place; the
reason, with the path of the bad field, is logged and shown in /health until a good
version arrives. A change seen by the watch is read once the file has stayed the same for
`SETTLE` seconds (a file written in place, in pieces, is never read half-way); an empty file is
refused. What changes is applied by `Hub.apply_config`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from onemcp.catalog.views import known_tags
from onemcp.config.files import locked
from onemcp.config.filters import parse, tags_named
from onemcp.config.load import ConfigError, load_config
from onemcp.config.model import HubConfig
from onemcp.config.presets import PresetError, load_presets, read_document, save
from onemcp.hub.core import Hub
from onemcp.observability.redact import REDACTOR

log = logging.getLogger("onemcp.reload")
DEBOUNCE_MS = 300
PRESETS = "presets.json"
DOTENV = ".env"  # read by `load.environment` beside the config
RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # seconds between attempts to read a config that could not be read
# a file written in place (truncated, then written in pieces) is read once it stays the same this long
# (seconds): a prefix of a YAML or TOML file often parses, with fewer servers, which would stop the others
SETTLE, SETTLE_TRIES = 0.5, 60  # and one still changing after SETTLE_TRIES looks is not read
# what a reload did: the file's config is now served, it already was (nothing done), or it was refused
APPLIED, UNCHANGED, REFUSED = "applied", "unchanged", "refused"


class Reloader:
    def __init__(self, hub: Hub, path: Path, *, sighup: bool = True) -> None:
        self.hub = hub
        self.path = path
        self.sighup = sighup  # False where SIGHUP ends the process (stdio serve): one handler per signal
        # a new config or new presets are in use (`hub.served`): what that changed, in words, for the log
        self.applied: Callable[[], list[str]] = lambda: []
        self.reloads = 0
        self.failures = 0
        self.config_error: str | None = None  # why the last mcp.json was refused, until a good one is read
        self.presets_error: str | None = None  # the same for presets.json: each file's own
        self.last_reload: float | None = None
        self.last_changes: dict[str, list[str]] = {}
        # settings read once at start (who may come in, where search keeps its vectors): a change waits for a restart
        self._started = self._read_once(hub.config)
        self.restart_needed: list[str] = []
        self._lock = anyio.Lock()
        self._retry = anyio.Event()  # set: a reload failed for a passing reason (see _retry_failed)
        if hub.replicas is not None:  # replicas on one Redis: the others' presets are written here
            hub.replicas.write_presets = self._write_presets

    async def reload(self, *, settle: bool = False) -> bool:
        """Load, validate and apply the file; False (and the reason kept) when it is refused. `settle`
        (a change the watch saw): read it once it has stayed the same for `SETTLE` seconds."""
        return await self.reload_outcome(settle=settle) != REFUSED

    async def reload_outcome(self, *, settle: bool = False) -> str:
        """`reload`, saying which: APPLIED, UNCHANGED (the file is the config served) or REFUSED."""
        async with self._lock:
            try:
                new = await self._settled() if settle else self._load()
            except ConfigError as exc:
                self.failures += 1
                self.config_error = str(exc)
                if exc.transient:
                    self._retry.set()  # the file may be fine: read it again once this passes
                    log.error("config change not read yet, retrying: %s", exc)
                else:
                    log.error("config change refused, keeping the running config: %s", exc)
                return REFUSED
            except Exception as exc:  # a reader's bug must not end the hub: the running config stays
                self.failures += 1
                self.config_error = f"{self.path}: the config could not be read ({type(exc).__name__}: {exc})"
                log.exception("config change refused, keeping the running config")
                return REFUSED
            self.config_error = None
            if new == self.hub.config:
                return UNCHANGED
            REDACTOR.use(new)
            self.last_changes = await self.hub.apply_config(new)
            moved = self.applied()  # "starting fx (now in this hub's view)"
            now = self._read_once(new)
            needed = [key for key, value in now.items() if value != self._started[key]]
            for key in sorted(set(needed) - set(self.restart_needed)):
                log.warning("%s changed: it takes effect when the hub restarts (the running hub keeps the old)", key)
            self.restart_needed = needed
            self.reloads += 1
            self.last_reload = time.time()
            said = "; ".join(
                [f"{k} {', '.join(v)}" for k, v in self.last_changes.items() if v and k != "unchanged"] + moved
            )
            log.info("config reloaded: %s", said or "hub settings only, no server changed")  # "added git; changed time"
            return APPLIED

    def _load(self) -> HubConfig:
        with contextlib.suppress(OSError):  # (one that cannot be read is said by load_config)
            if self.path.stat().st_size == 0:  # most often one being written: YAML and TOML read it as no servers
                raise ConfigError(
                    f"{self.path}: the file is empty (being written?); for no servers, write mcpServers empty"
                )
        return load_config(self.path)

    async def _settled(self) -> HubConfig:
        """The file's config once two reads `SETTLE` seconds apart agree (bytes, size, mtime: a read taken
        while it was changing is never acted on); refused when it is still changing after `SETTLE_TRIES`."""
        seen = self._fingerprint()
        for _ in range(SETTLE_TRIES):
            await self._quiet()
            try:
                new: HubConfig | ConfigError = self._load()
            except ConfigError as exc:
                new = exc
            now = self._fingerprint()
            if now == seen:
                if isinstance(new, ConfigError):
                    raise new
                return new
            log.info("%s is being written: reading it once it stays the same for %s s", self.path, SETTLE)
            seen = now
        raise ConfigError(
            f"{self.path}: kept changing for {SETTLE * SETTLE_TRIES:.0f} s: not read (the next change is)"
        )

    async def _quiet(self) -> None:
        await anyio.sleep(SETTLE)

    def _fingerprint(self) -> tuple[tuple[object, ...], ...]:
        """What mcp.json and its .env are now: identity, size, mtime and bytes (or why they cannot be read)."""
        found: list[tuple[object, ...]] = []
        for path in (self.path, self.path.parent / DOTENV):
            try:
                with path.open("rb") as file:
                    stat = os.fstat(file.fileno())
                    found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns, file.read()))
            except OSError as exc:
                found.append((None, None, None, exc.errno))
        return tuple(found)

    @staticmethod
    def _read_once(config: HubConfig) -> dict[str, object]:
        """The settings the hub reads only at start, by config key."""
        hub = config.hub
        return {
            "onemcp.auth": hub.auth,
            "onemcp.searchCache": hub.search_cache,
            "onemcp.audit": hub.audit,  # the audit log is opened at start (app.py)
            "onemcp.sessionStore": hub.session_store,  # and the store of sessions that survive a restart
        }

    @property
    def last_error(self) -> str | None:
        """What is wrong with the files as they are now (mcp.json's, then presets.json's), if anything."""
        return "; ".join(e for e in (self.config_error, self.presets_error) if e) or None

    @property
    def presets_path(self) -> Path:
        return self.path.parent / PRESETS

    def load_presets(self) -> bool:
        """Read presets.json; a bad file keeps the presets in use (and says why)."""
        try:
            loaded = load_presets(self.presets_path)
            self.hub.set_presets(
                {name: entry["filter"] for name, entry in loaded.items()},
                {name: entry["exposure"] for name, entry in loaded.items() if "exposure" in entry},
            )
        except PresetError as exc:
            self.failures += 1
            self.presets_error = str(exc)
            log.error("presets change refused, keeping the presets in use: %s", exc)
            return False
        self.presets_error = None
        if moved := self.applied():
            log.info("presets reloaded: %s", "; ".join(moved))  # "stopping fx (now outside this hub's view)"
        self._warn_unknown_tags(loaded)
        if self.hub.replicas is not None:  # replicas on one Redis: a change here reaches the others
            self.hub.replicas.presets_loaded(loaded)
        return True

    async def presets_edited(self) -> None:
        """presets.json was edited through this replica (the admin API): in use here, and (replicas) in Redis
        before the edit is answered, so that the client's next request may use them at any replica."""
        if self.load_presets() and self.hub.replicas is not None:
            await self.hub.replicas.share_presets()

    def _warn_unknown_tags(self, presets: dict[str, dict[str, str]]) -> None:
        """A preset naming a tag no server has is most likely a typo, and its view is empty: kept (for servers
        still to come, as `onemcp preset` keeps it), but said, as `?filter=` with that tag is a 400."""
        known = known_tags(self.hub.config)
        if known is None:
            return  # a template renders its own tags: any may exist
        for name, entry in presets.items():
            unknown = sorted(tags_named(parse(entry["filter"])) - known)
            if unknown:
                log.warning(
                    "preset %r names tag(s) no server has: %s (the tags in use: %s)",
                    name,
                    ", ".join(map(repr, unknown)),
                    ", ".join(sorted(known)) or "none",
                )

    async def _write_presets(self, presets: dict[str, Any]) -> None:
        """The replicas' presets into this replica's presets.json, and in use (at start, before the watch).
        Written on a worker thread: it waits for the file's edit lock (`onemcp preset` may hold it) up to 10 s."""
        await anyio.to_thread.run_sync(self._save_presets, presets)
        log.info("presets from the other replicas written to %s", self.presets_path)
        self.load_presets()

    def _save_presets(self, presets: dict[str, Any]) -> None:
        with locked(self.presets_path):  # as `onemcp preset` edits it
            doc = read_document(self.presets_path)
            doc["presets"] = presets
            save(self.presets_path, doc)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            tg.start_soon(self._retry_failed)
            if sys.platform != "win32" and self.sighup:
                tg.start_soon(self._on_sighup)
            task_status.started()

    def _absolute(self) -> Path:
        return Path(os.path.abspath(self.path))  # not resolved: the link is what is watched

    def _files(self) -> set[str]:
        """The paths whose change is a reload: mcp.json, the `.env` beside it (its ${VAR}s: a token rotated
        there was applied only at the next edit of mcp.json), and for a symlinked mcp.json the link's first
        step (a ConfigMap's `..data`) and the file it ends at."""
        path = self._absolute()
        files = {path, path.parent / DOTENV}
        if path.is_symlink():
            with contextlib.suppress(OSError):
                step = Path(os.readlink(path))
                if not step.is_absolute() and len(step.parts) > 1:
                    files.add(path.parent / step.parts[0])
            files.add(path.resolve())
        return {str(found) for found in files}

    def _watched(self, files: set[str]) -> dict[str, set[str]]:
        """Folder -> the names in it to watch: `files` and presets.json. A folder that is not there (removed
        with the config: a deploy swapping it, a checkout) is waited for from its nearest existing ancestor,
        by the name of the next step towards it."""
        watched: dict[str, set[str]] = {}
        for found in {*map(Path, files), self._absolute().parent / PRESETS}:
            folder, name = found.parent, found.name
            while not folder.is_dir():  # the root always is
                folder, name = folder.parent, folder.name
            watched.setdefault(str(folder), set()).add(name)
        return watched

    def _layout(self) -> tuple[set[str], dict[str, set[str]], dict[str, tuple[int, int] | None]]:
        """What to watch now, with each folder's identity: a folder swapped for another of its name
        (renamed away, a new one renamed in) is a new layout even where the names read the same."""
        files = self._files()
        watched = self._watched(files)
        return files, watched, {folder: _identity(folder) for folder in watched}

    async def _watch(self) -> None:
        """Reload on a change to mcp.json (or what its symlink leads to). When the layout changes (the link
        leads elsewhere, a folder on the way is removed, comes back or is swapped) the watch is set up again
        where things are now, and once it stands the file is read (it may have been written meanwhile)."""
        from watchfiles import awatch  # imported here: only a running hub watches

        presets = str(self._absolute().parent / PRESETS)
        rebuilt = False
        while True:
            layout = self._layout()
            files, watched, _ = layout

            def ours(_: object, path: str, watched: dict[str, set[str]] = watched) -> bool:
                found = Path(path)
                return path in watched or found.name in watched.get(str(found.parent), ())

            standing = False  # the first yield comes once the watch stands (then every 300 ms without changes)
            # rust_timeout: how often the watcher thread looks up, so that a shutdown is not held for 5 s
            async for changes in awatch(
                *watched,
                watch_filter=ours,
                debounce=DEBOUNCE_MS,
                recursive=False,
                rust_timeout=300,
                yield_on_timeout=True,
            ):
                changed = {path for _, path in changes}
                if not standing and rebuilt and self.path.exists():
                    changed |= files | {presets}  # written while the watch was being set up: read it
                if changed & files:
                    await self.reload(settle=True)  # mcp.json, or the link's step or target: reading it tells
                if presets in changed:
                    self.load_presets()  # every view naming a preset is decided again
                if (changed or not standing) and self._layout() != layout:
                    break  # watch where things are now
                standing = True
            else:
                return  # the watch ended by itself (as it did before links were followed)
            rebuilt = True

    async def _retry_failed(self) -> None:
        """Read the file again, backing off, after a reload failed for a passing reason (EMFILE...):
        an edit made while the process was out of file descriptors is applied once it recovers."""
        while True:
            await self._retry.wait()
            delay = RETRY_FIRST
            while self._retry.is_set():
                self._retry = anyio.Event()
                await anyio.sleep(delay)
                await self.reload()  # sets `_retry` again when it fails for a passing reason again
                delay = min(delay * 2, RETRY_MAX)

    async def _on_sighup(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                log.info("SIGHUP: reloading %s", self.path)
                await self.reload()

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "reloads": self.reloads,
            "failures": self.failures,
            "lastReload": self.last_reload,
            # scrubbed as its log line is: shown to every operator-scope caller (/health, the admin API)
            "lastError": None if (error := self.last_error) is None else REDACTOR.scrub(error),
            "lastChanges": self.last_changes,
            "restartNeeded": self.restart_needed,
        }


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_dev, found.st_ino
