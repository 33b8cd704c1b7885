"""The authorization server's calls on its state run on worker threads of their own: while another process
holds oauth.db's lock, however many registrations and tokens wait for it, the hub's other worker-thread
users (config reads, searches, Redis) still get a thread."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest

from onemcp.auth.server.app import OAuthServer
from onemcp.auth.server.state_calls import STATE_THREADS
from onemcp.config import sqlite as sqlite_module
from support.held_sqlite import held_sqlite

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:9"  # in-process: never connected to
REDIRECT = "http://127.0.0.1:5173/callback"
HUB_THREADS = STATE_THREADS + 2  # the process's worker threads, fewer than anyio's 40 (so as few requests fill them)


async def test_a_held_oauth_db_leaves_worker_threads_for_the_rest_of_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call waited for the lock on one of anyio's shared worker threads: more waiting registrations than
    the process has threads took them all, and every other `to_thread` user of the hub waited with them (up to
    the busy timeout, 30 s). The state's calls take `STATE_THREADS` at most now; the rest wait their turn and
    are all answered once the lock is free."""
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", 60.0)  # the lock outlives the test's deadlines
    threads = anyio.to_thread.current_default_thread_limiter()
    monkeypatch.setattr(threads, "total_tokens", HUB_THREADS)
    server = OAuthServer(tmp_path / "oauth.db", ISSUER, f"{ISSUER}/mcp", scopes_supported=["mcp"], consent="auto")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER)
    answers: list[int] = []

    async def register() -> None:
        answers.append((await http.post("/oauth/register", json={"redirect_uris": [REDIRECT]})).status_code)

    try:
        assert (await http.post("/oauth/register", json={"redirect_uris": [REDIRECT]})).status_code == 201
        with anyio.fail_after(20), held_sqlite(tmp_path / "oauth.db") as release:
            async with anyio.create_task_group() as tg:
                for _ in range(HUB_THREADS + 2):
                    tg.start_soon(register)
                await anyio.wait_all_tasks_blocked()  # each waits for the lock, or for one of the state's threads
                try:
                    with anyio.fail_after(5):  # (failing: the registrations' threads end once the lock is free)
                        assert await anyio.to_thread.run_sync(len, "another user of a worker thread") == 31
                    assert answers == []
                finally:
                    release()
        assert answers == [201] * (HUB_THREADS + 2)
    finally:
        await http.aclose()
        server.close()
