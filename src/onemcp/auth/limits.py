"""Per-principal tool quotas and the result size limit: limits a model can read and act on.

A quota over its budget answers the call with a tool error (isError) that says the limit
and when to retry, instead of an HTTP error the model never sees. A result larger than
the configured size has its text cut, with a marker saying how much was left out.
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections import deque
from typing import Any

from onemcp.config.model import Quota


class QuotaBook:
    def __init__(self, quotas: list[Quota]) -> None:
        self.quotas = quotas
        self._calls: dict[tuple[str, int], deque[float]] = {}

    def charge(self, principal: str, server: str, tool: str) -> str | None:
        """Count a call; the refusal text when a quota is spent (then nothing is counted)."""
        now = time.monotonic()
        hits = [(i, q) for i, q in enumerate(self.quotas) if fnmatch.fnmatchcase(f"{server}/{tool}", q.tool)]
        for index, quota in hits:
            calls = self._calls.setdefault((principal, index), deque())
            while calls and now - calls[0] >= quota.window:
                calls.popleft()
            if len(calls) >= quota.calls:
                retry = math.ceil(quota.window - (now - calls[0]))
                return (
                    f"Quota exceeded for {server}/{tool}: at most {quota.calls} calls per {quota.window:g}s. "
                    f"Retry in {retry}s."
                )
        for index, _ in hits:
            self._calls[(principal, index)].append(now)
        return None


def refusal(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def truncate(result: dict[str, Any], limit: int) -> None:
    """Cut a tool result's text content to `limit` bytes in all (in place), saying so."""
    content = result.get("content")
    if not isinstance(content, list):
        return
    used = 0
    cut = 0
    for item in content:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            data = item["text"].encode()
            room = max(0, limit - used)
            if len(data) > room:
                cut += len(data) - room
                item["text"] = data[:room].decode(errors="ignore")
            used += min(len(data), room)
    if cut:
        content.append({"type": "text", "text": f"[onemcp: result truncated, {cut} bytes omitted]"})
        structured = result.pop("structuredContent", None)
        if structured is not None:
            content.append({"type": "text", "text": "[onemcp: structuredContent omitted with the truncated result]"})
