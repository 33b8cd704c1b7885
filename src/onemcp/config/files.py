"""Writing config files safely: atomic replace that keeps the file's mode, and timestamped backups.

Owns bytes on disk only; it knows nothing about JSON, TOML or what the files mean. Callers
(`edit` for mcp.json, `redirect` for other apps' configs) decide what to write and when.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

NEW_FILE_MODE = 0o600  # a new config may hold tokens: readable by its owner only
LOCK_WAIT = 10.0  # seconds an edit waits for another one to finish before it gives up
_STAMP = "%Y%m%dT%H%M%S_%fZ"


def file_mode(path: Path) -> int | None:
    """Permission bits of `path`, or None when it does not exist."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    The temporary file lives in the same directory (``os.replace`` is atomic only within one
    file system) and gets `mode`, else the current file's mode, else `NEW_FILE_MODE`. A
    symlinked config is written through, so the link (a dotfiles manager's, say) survives.
    """
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = file_mode(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, NEW_FILE_MODE if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def try_lock(fd: int) -> bool:
    """One try, without waiting, at an exclusive `fcntl.flock` of the open file `fd`: True when it holds
    the lock now (until it is closed), False while another holds it. Waiting between tries is the
    caller's (a thread sleeps, a task awaits). POSIX only."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def locked(path: Path, *, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of `path`: editors that take it run one after
    the other (two that both read the old file would each write their own change over the other's).

    The lock is `fcntl.flock` on `.<name>.lock` beside the file (its symlink's target), left in place:
    removing it would let a third editor lock a new file while the second holds the old one. Waits up
    to `wait` seconds, then raises OSError (EWOULDBLOCK) saying so. No lock on Windows."""
    if sys.platform == "win32":
        yield
        return
    target = path.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
    try:
        deadline = time.monotonic() + wait
        while not try_lock(fd):
            if time.monotonic() >= deadline:
                raise OSError(errno.EWOULDBLOCK, f"another edit of {target.name} still holds its lock")
            time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def timestamp(now: datetime | None = None) -> str:
    """A UTC timestamp that sorts lexically in time order and is safe in file names."""
    return (now or datetime.now(UTC)).strftime(_STAMP)


def unique_path(directory: Path, stem: str, suffix: str) -> Path:
    """`directory/<stem>.<timestamp><suffix>` (just `<timestamp><suffix>` without a stem), stamped
    later than any existing one.

    Sorting these names is then sorting by age even if two writes share a microsecond or the
    clock stepped back, which is what pruning and "the latest backup" rely on.
    """
    prefix = f"{stem}." if stem else ""
    now = datetime.now(UTC)
    for old in stamped(directory, stem, suffix):
        with contextlib.suppress(ValueError):
            then = datetime.strptime(old.name[len(prefix) : len(old.name) - len(suffix)], _STAMP)
            now = max(now, then.replace(tzinfo=UTC) + timedelta(microseconds=1))
    return directory / f"{prefix}{timestamp(now)}{suffix}"


def stamped(directory: Path, stem: str, suffix: str) -> list[Path]:
    """Files `unique_path` named in `directory` for this stem and suffix, oldest first."""
    if not directory.is_dir():
        return []
    pattern = f"{stem}.*{suffix}" if stem else f"*{suffix}"
    return sorted(p for p in directory.glob(pattern) if p.is_file())


def backup(path: Path, directory: Path, *, keep: int) -> Path | None:
    """Copy the current `path` into `directory` under a timestamped name; keep the newest `keep`.

    Returns the backup's path, or None when `path` does not exist yet (nothing to keep).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    copy = unique_path(directory, path.name, ".bak")
    atomic_write(copy, data, mode=file_mode(path))
    for old in backups_of(path.name, directory)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return copy


def backups_of(name: str, directory: Path) -> list[Path]:
    """Backups `backup` made of a file called `name`, oldest first."""
    return stamped(directory, name, ".bak")
