"""SQLite stores under concurrent writers: many processes opening and writing one fresh file at once."""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from pathlib import Path

from onemcp.auth.keys import KeyStore

PROCESSES = 8
ROUNDS = 12


def _create_key(directory: str, start: float, results: multiprocessing.Queue[str | None]) -> None:
    while time.time() < start:  # line the processes up so they open the fresh file together
        pass
    try:
        KeyStore(Path(directory) / "keys.db").create("k", ["mcp"])
        results.put(None)
    except Exception as exc:  # the parent reports it
        results.put(repr(exc))


def test_concurrent_key_creation_on_a_fresh_config_dir_never_fails() -> None:
    """`onemcp auth key create` run several times at once on a new config dir (was ~15% 'database is locked')."""
    context = multiprocessing.get_context("fork")
    errors: list[str] = []
    created = 0
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as directory:
            results: multiprocessing.Queue[str | None] = context.Queue()
            start = time.time() + 0.3
            workers = [context.Process(target=_create_key, args=(directory, start, results)) for _ in range(PROCESSES)]
            for worker in workers:
                worker.start()
            outcomes = [results.get(timeout=60) for _ in workers]
            for worker in workers:
                worker.join(timeout=60)
            errors += [o for o in outcomes if o is not None]
            created += len(KeyStore(Path(directory) / "keys.db").list())
    assert errors == []
    assert created == PROCESSES * ROUNDS
