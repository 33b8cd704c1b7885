"""Counting tokens as a model is charged for them: o200k (the GPT-4o family's encoding), offline.

The vocabulary ships inside the `quicktok-v1` package (no download at run time). It is loaded
on the first count, not on import, and given back once no count was asked for `IDLE_RELEASE`
seconds (`release_if_idle`, which the hub calls now and then): its tables take about 64 MB, which
a hub should not keep for a /health page opened once (callers remember counts by content, so a
hub whose lists do not change counts nothing again). Where the package cannot be installed, an
estimate of 4 bytes a token stands in, and `exact()` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import threading
import time
from typing import Any

import orjson

ENCODING = "o200k_base"
IDLE_RELEASE = 60.0  # seconds without a count after which the vocabulary is dropped
_lock = threading.Lock()
_held: Any = None  # the loaded tokenizer, while in use
_used = 0.0  # monotonic time of the last count


def _encoding() -> Any:
    global _held, _used
    with _lock:
        _used = time.monotonic()
        if _held is None and exact():
            import quicktok

            _held = quicktok.Tokenizer(ENCODING, "")  # not get_encoding(): its cache would keep it for good
        return _held


def load() -> None:
    """Have the vocabulary in memory (about 0.4 s when it is not): run on a worker thread, so that the
    first count on the hub's event loop does not hold every client for that long."""
    _encoding()


def exact() -> bool:
    """Are counts exact o200k counts (else estimates)?"""
    return importlib.util.find_spec("quicktok") is not None


def loaded() -> bool:
    """Is the vocabulary in memory now?"""
    return _held is not None


def release_if_idle(now: float | None = None) -> bool:
    """Drop the vocabulary if no count was asked for IDLE_RELEASE seconds; True when it was dropped."""
    global _held
    with _lock:
        if _held is None or (now if now is not None else time.monotonic()) - _used < IDLE_RELEASE:
            return False
        _held = None
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # the allocator keeps freed pages unless asked
    return True


def count_tokens(text: str) -> int:
    """Tokens of `text` (o200k)."""
    encoding = _encoding()
    if encoding is None:  # pragma: no cover
        return (len(text.encode()) + 3) // 4
    return int(encoding.count(text))


def count_json(value: Any) -> int:
    """Tokens of `value` as compact JSON, as a client receives it."""
    return count_tokens(orjson.dumps(value).decode())
