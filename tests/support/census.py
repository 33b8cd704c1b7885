"""What a running hub holds, counted: for tests that a lifecycle gives back everything it took.

`census(roots)` counts, after a full garbage collection: the live instances of every onemcp class
and of the anyio and asyncio objects that carry work (tasks, cancel scopes, events, memory
streams), the running asyncio tasks, the process's open file descriptors and its child processes
(zombies apart), and the length of every container reachable from `roots` by attribute path (a
dict's values and a list's items under `path[]`, summed), so that a table that grew is named; a deque
with a maxlen (a ring, bounded by construction and checked apart) is not.
Two censuses taken after the same lifecycle ran once and many times must be equal.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections import Counter, deque
from pathlib import Path
from typing import Any

WORK = ("onemcp.", "anyio.", "asyncio.")  # the modules whose live objects are counted
# Not counted. Scheduled callbacks: a cancelled timer stays in the loop's heap until its time comes
# (bounded by time, not by use). anyio's worker threads (and their loop tokens) end after a while idle,
# and come and go with the thread limiters, which are made once per owner (the event loop's, the
# search's query encoding, once its transformer ranks) and bound them.
TRANSIENT = frozenset(
    {
        "asyncio.TimerHandle",
        "asyncio.Handle",
        "anyio.WorkerThread",
        "anyio.EventLoopToken",
        "anyio.CapacityLimiter",
    }
)
SKIPPED = (type, type(os), type(len), type(lambda: 0), asyncio.AbstractEventLoop)


def _kind(obj: object) -> str | None:
    kind = type(obj)
    module = kind.__dict__.get("__module__")
    if not isinstance(module, str):
        return None
    if module.startswith("onemcp."):
        return f"{module}.{kind.__qualname__}"
    if module.startswith(WORK) or module in ("_asyncio", "anyio"):  # (anyio renames what it exports: by package)
        return f"{module.split('.')[0].lstrip('_')}.{kind.__qualname__}"
    return None


def children() -> tuple[int, int]:
    """(live, zombie) children of this process."""
    live = zombie = 0
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            if fields[0] == "Z":
                zombie += 1
            else:
                live += 1
    return live, zombie


def _tables(roots: dict[str, object], depth: int = 7) -> Counter[str]:
    sizes: Counter[str] = Counter()
    seen: set[int] = set()
    todo: deque[tuple[str, object, int]] = deque((name, root, 0) for name, root in roots.items())
    while todo:
        path, obj, level = todo.popleft()
        if id(obj) in seen or level > depth or isinstance(obj, SKIPPED):
            continue
        seen.add(id(obj))
        if isinstance(obj, deque) and obj.maxlen is not None:
            continue  # a ring (the event bus's recent events and failed calls): bounded by its maxlen, not by use
        if isinstance(obj, dict | list | set | frozenset | tuple | deque | Counter):
            if not isinstance(obj, tuple):
                sizes[path] += len(obj)
            items = obj.values() if isinstance(obj, dict) else obj
            todo.extend((f"{path}[]", item, level + 1) for item in list(items))
            continue
        if not str(type(obj).__dict__.get("__module__")).startswith("onemcp."):
            continue
        fields: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                fields[slot] = getattr(obj, slot)
        todo.extend((f"{path}.{name}", value, level + 1) for name, value in fields.items())
    return sizes


def census(roots: dict[str, object]) -> Counter[str]:
    """Everything counted (see the module's docstring); call it from inside the event loop."""
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = _kind(obj)
        if kind is not None and kind not in TRANSIENT:
            counts[f"live {kind}"] += 1
    counts["asyncio tasks"] = len(asyncio.all_tasks())
    counts["open fds"] = len(os.listdir("/proc/self/fd"))
    counts["children"], counts["zombies"] = children()
    counts.update({f"len {path}": size for path, size in _tables(roots).items()})
    return counts


def grown(before: Counter[str], after: Counter[str]) -> str:
    """What differs between two censuses, a line each: name: before -> after ("" when nothing does)."""
    keys = sorted(k for k in set(before) | set(after) if before[k] != after[k])
    return "\n".join(f"{k}: {before[k]} -> {after[k]}" for k in keys)
