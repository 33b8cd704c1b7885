"""Counting tokens as a model is charged for them: o200k (the GPT-4o family's encoding), offline.

The vocabulary ships inside the `quicktok-v1` package (no download at run time). It is loaded
on the first count, not on import: its tables take about 64 MB, which a hub that never reports
token counts should not pay. Where the package cannot be installed, an estimate of 4 bytes a
token stands in, and `exact()` says so.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson


@cache
def _encoding() -> Any:
    try:
        import quicktok
    except ImportError:  # pragma: no cover - platforms without a quicktok wheel
        return None
    return quicktok.get_encoding("o200k_base")


def exact() -> bool:
    """Are counts exact o200k counts (else estimates)?"""
    return _encoding() is not None


def count_tokens(text: str) -> int:
    """Tokens of `text` (o200k)."""
    encoding = _encoding()
    if encoding is None:  # pragma: no cover
        return (len(text.encode()) + 3) // 4
    return int(encoding.count(text))


def count_json(value: Any) -> int:
    """Tokens of `value` as compact JSON, as a client receives it."""
    return count_tokens(orjson.dumps(value).decode())
