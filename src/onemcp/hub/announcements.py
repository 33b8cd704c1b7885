"""What each client was told its lists are, and `list_changed` when what it sees really changes.

Owns the fingerprint of each session's (and listen stream's) visible lists (as its exposure
serves them: a search-mode tools list changes only when the mode does), the servers' tags that
views decide on, deciding every session's access again after a config or presets change (dropping
subscriptions that fell out of reach), and sending `notifications/*/list_changed` only to those
whose visible list changed. Does not own the lists (the `Catalog`) nor the decision of what a
principal may reach (`auth.access`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio

from onemcp.config.model import HubConfig
from onemcp.hub.listeners import Listener
from onemcp.hub.session import Session, SessionStore
from onemcp.hub.subscriptions import Subscriptions
from onemcp.protocol import jsonrpc
from onemcp.protocol.methods import KINDS

log = logging.getLogger("onemcp.hub")


class Announcements:
    def __init__(
        self,
        lists: Callable[[str, Session], bytes],
        sessions: SessionStore,
        listeners: set[Listener],
        subscriptions: Subscriptions,
        instance_tags: Callable[[], dict[str, list[str]]] = dict,
    ) -> None:
        self.lists = lists  # a session's serialised list of a kind, as it would get it now
        self.sessions = sessions
        self.listeners = listeners
        self.subscriptions = subscriptions
        self._tags: tuple[HubConfig | None, dict[str, list[str]]] = (None, {})  # per config: server -> tags
        self.instance_tags = instance_tags  # each template instance's rendered tags
        # awaited before a fan-out, with the sessions about to be compared (the hub: count off the event
        # loop the lists, each as that session sees it, an `auto` session's mode rests on)
        self.before: Callable[[list[Session]], Awaitable[None]] | None = None
        self._pending: set[str] = set()
        self._wake: anyio.Event | None = None  # set by `run`: announcements go out from its task
        self._holds = 0  # while above 0, announcements gather (`hold`)
        self._fanned_out = 0  # by `run`'s task, so far (`sent`)
        self._fanning_out: anyio.Event | None = None  # set when the next one is done

    def tags(self, config: HubConfig) -> dict[str, list[str]]:
        """Each enabled server's tags in `config`, and each template instance's (what views by tag decide on)."""
        if self._tags[0] is not config:
            self._tags = (config, {name: server.tags for name, server in config.enabled.items()})
        extra = self.instance_tags()
        return {**self._tags[1], **extra} if extra else self._tags[1]

    def remember(self, session: Session) -> None:
        """Note what the session's lists look like now (list_changed goes out when they change)."""
        session.seen = {kind: hash(self.lists(kind, session)) for kind in KINDS}

    def refresh(self, config: HubConfig, presets: Mapping[str, str]) -> None:
        """Decide every session's access again (by `config`'s tags), then tell whoever's lists changed."""
        tags = self.tags(config)
        for session in [*self.sessions, *(listener.session for listener in self.listeners)]:
            session.access = session.access.rebuilt(tags, presets)
            for key in [k for k in session.subscriptions if not session.access.reach.shows("resources", *k)]:
                self.subscriptions.drop(session, key)
        self.announce(set(KINDS))

    def announce(self, kinds: set[str]) -> None:
        """list_changed for these kinds, only to those whose visible list really changed: from `run`'s
        task once it runs (right after, changes in a row merged), else here and now; while held, later."""
        self._pending |= kinds
        if self._holds or not self._pending:
            return
        if self._wake is None:
            kinds, self._pending = self._pending, set()
            self._fan_out(kinds)
        else:
            self._wake.set()

    def hold(self) -> Callable[[], None]:
        """Gather announcements until the returned `release` is called (it counts once): a change made in
        steps (a reload replacing template instances: the old ones' lists go, then each of the new ones'
        comes) is announced once, for the lists that differ in the end."""
        self._holds += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._holds -= 1
                self.announce(set())

        return release

    async def sent(self) -> None:
        """Return once what was announced until now has gone out (at once when nothing waits to, or while
        announcements are held): a call whose answer waited for its server's new list answers after the
        `list_changed` it caused, in the order the server sent the two."""
        if self._wake is None or not self._pending or self._holds:
            return
        target = self._fanned_out + 1  # the next fan-out takes what is pending now (it takes it at its end)
        while self._fanned_out < target and self._wake is not None:
            if self._fanning_out is None:
                self._fanning_out = anyio.Event()
            await self._fanning_out.wait()

    async def run(self) -> None:
        """Send the announcements, for as long as the hub runs (`before` is awaited ahead of each)."""
        self._wake = anyio.Event()
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                if self._holds:
                    continue  # the last release wakes it again
                try:
                    if self.before is not None:
                        sessions = [*self.sessions, *(listener.session for listener in self.listeners)]
                        await self.before(sessions)
                    kinds, self._pending = self._pending, set()
                    self._fan_out(kinds)
                except Exception:  # the top of a background task: logged, the next change announces again
                    log.exception("list_changed announcements failed")
                finally:
                    self._fanned_out += 1
                    self._announced()
        finally:
            self._wake = None
            self._announced()

    def _announced(self) -> None:
        if self._fanning_out is not None:
            self._fanning_out.set()
            self._fanning_out = None

    def _fan_out(self, kinds: set[str]) -> None:
        for session in self.sessions:
            if session.initialized:
                for method in self._changed_for(session, kinds):
                    session.post(jsonrpc.notification(method))
        for listener in self.listeners:
            for method in self._changed_for(listener.session, kinds):
                if method in listener.methods:
                    listener.post(jsonrpc.notification(method))

    def _changed_for(self, session: Session, kinds: set[str]) -> list[str]:
        methods: set[str] = set()
        for kind in kinds:
            now = hash(self.lists(kind, session))
            if session.seen.get(kind) != now:
                session.seen[kind] = now
                methods.add(KINDS[kind][1])
        return sorted(methods)
