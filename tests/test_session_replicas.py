"""Two hub replicas sharing sessions through a real Redis: a session made on one continues on the other.

`redis-server` (Debian's package; scripts/test installs it) runs on a free loopback port for the
test and is stopped by its PID. Both hubs run in this process on their own ports with the same
config and `sessionStore: redis://...`, as replicas behind a load balancer would.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore
from support.hub import HEADERS, INIT, running_hub
from support.services import NEEDS_REDIS, replica_config

pytestmark = [
    pytest.mark.anyio,
    NEEDS_REDIS,
]
DEADLINE = 60.0


async def test_a_session_made_on_one_replica_continues_on_another(redis_url: str) -> None:
    import redis

    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(replica_config(redis_url)) as one,
            running_hub(replica_config(redis_url)) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            r = await http.post(one.url, json=INIT, headers=HEADERS)
            sid = r.headers["mcp-session-id"]
            headers = {**HEADERS, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            await http.post(one.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": "on two"}},
            }
            r = await http.post(two.url, json=call, headers=headers)  # the other replica: it never saw this session
            assert r.status_code == 200 and "on two" in r.text, r.text
            assert two.app.hub.find_session(sid) is not None
            store = redis.Redis.from_url(redis_url)
            ttl = store.ttl(f"onemcp:session:{sid}")
            assert 0 < ttl <= 1800  # Redis expires it after the idle timeout
            store.close()
            r = await http.post(two.url, json={**call, "id": 3}, headers={**headers, "mcp-session-id": "f" * 32})
            assert r.status_code == 404


async def test_a_quota_is_one_quota_across_replicas(redis_url: str) -> None:
    doc = replica_config(redis_url)
    doc["onemcp"]["auth"] = {"quotas": [{"tool": "fx/echo", "calls": 3, "window": 60}]}
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc) as one,
            running_hub(doc) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            texts = []
            for i, hub in enumerate([one, two, one, two]):
                r = await http.post(hub.url, json=INIT, headers=HEADERS)
                headers = {
                    **HEADERS,
                    "mcp-session-id": r.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                }
                call = {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": "q"}},
                }
                texts.append((await http.post(hub.url, json=call, headers=headers)).text)
            assert all("Quota exceeded" not in t for t in texts[:3]), texts
            assert "Quota exceeded for fx/echo: at most 3 calls per 60s" in texts[3], texts[3]


async def test_the_request_rate_is_one_bucket_across_replicas(redis_url: str, tmp_path: Path) -> None:
    doc = replica_config(redis_url)
    doc["onemcp"]["auth"] = {"apiKeys": True, "rateLimit": {"requestsPerMinute": 1, "burst": 4}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(doc))
    key = KeyStore(tmp_path / "keys.db").create("k", ["mcp"])
    auth = {**HEADERS, "authorization": f"Bearer {key}"}
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(doc, config_path=path) as one,
            running_hub(doc, config_path=path) as two,
            httpx.AsyncClient(timeout=30) as http,
        ):
            statuses = [(await http.post(hub.url, json=INIT, headers=auth)).status_code for hub in (one, two) * 3]
            # a burst of 4 between both replicas, not 4 on each: the 5th and 6th are refused wherever they land
            assert statuses == [200, 200, 200, 200, 429, 429], statuses


async def test_a_preset_made_on_one_replica_reaches_the_others(redis_url: str, tmp_path: Path) -> None:
    """Each replica has its own config folder; a preset written beside one's config reaches the other's
    presets.json and view, and a replica that starts later takes the replicas' presets from Redis."""
    from onemcp.config.presets import load_presets, save

    doc = replica_config(redis_url)
    paths = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "mcp.json")
        paths[-1].write_text(json.dumps(doc))
    save(tmp_path / "b" / "presets.json", {"presets": {"old": {"filter": "fx"}}})  # b's own, before Redis had any
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=paths[0]) as a, running_hub(doc, config_path=paths[1]) as b:
            with anyio.fail_after(10):
                while "old" not in a.app.hub.presets:  # the first replica with presets shared b's
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            save(tmp_path / "a" / "presets.json", {"presets": {"dev": {"filter": "fx", "description": "d"}}})
            with anyio.fail_after(15):
                while "dev" not in b.app.hub.presets:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert set(b.app.hub.presets) == {"dev"}  # a's file replaced the set: "old" went with it
            assert set(load_presets(tmp_path / "b" / "presets.json")) == {"dev"}
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{b.base}/health")
            assert r.json()["replicas"]["messages"].get("received presets", 0) >= 1
        async with running_hub(doc, config_path=paths[2]) as c:  # started later, its folder without presets
            with anyio.fail_after(10):
                while "dev" not in c.app.hub.presets:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert load_presets(tmp_path / "c" / "presets.json")["dev"]["description"] == "d"
