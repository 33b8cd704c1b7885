"""The saved-session file: records by id, idle expiry, purge, owner-only, and a hub that cannot write one."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from onemcp.hub.saved import FILE, SavedSessions


def test_save_load_delete_and_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = SavedSessions(tmp_path)
    assert saved.enabled and not (tmp_path / FILE).exists()  # made by the first save, not before
    assert saved.load("a" * 32, idle_timeout=60) is None and not (tmp_path / FILE).exists()
    saved.save("a" * 32, {"principal": "anonymous mcp", "logLevel": "debug"})
    assert stat.S_IMODE((tmp_path / FILE).stat().st_mode) == 0o600
    assert saved.load("a" * 32, idle_timeout=60) == {"principal": "anonymous mcp", "logLevel": "debug"}
    assert saved.load("b" * 32, idle_timeout=60) is None
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert saved.load("a" * 32, idle_timeout=60) is None  # idle longer than the timeout: not revived
    saved.seen(["a" * 32])  # ...unless it was seen lately
    assert saved.load("a" * 32, idle_timeout=60) is not None
    saved.delete("a" * 32)
    assert saved.load("a" * 32, idle_timeout=60) is None
    saved.close()


def test_purge_drops_only_the_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = SavedSessions(tmp_path)
    saved.save("old", {})
    later = time.time() + 100
    monkeypatch.setattr(time, "time", lambda: later)
    saved.save("new", {})
    saved.purge(idle_timeout=50)
    assert saved.load("old", 1000) is None and saved.load("new", 1000) == {}


def test_without_a_usable_directory_nothing_is_saved(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    saved = SavedSessions(blocker)
    assert not saved.enabled
    saved.save("x", {})
    assert saved.load("x", 60) is None
    assert not SavedSessions(None).enabled
