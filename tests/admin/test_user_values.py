"""`/api/v1/user-secrets`: the operator sees who has which `${user:NAME}` value (never one) and forgets one.

A hub with API keys whose server takes `${user:GH_TOKEN}`: alice stores her own value through
`/me/secrets`; an `operator` key lists it without the value and may not delete it; an admin key
deletes it (audited), after which alice's call has none; bad queries are 400 and 404.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore
from support.hub import running_hub
from upstream.test_user_secrets import answer, call, gh_hub_config

pytestmark = pytest.mark.anyio


async def test_the_operator_lists_and_an_admin_forgets_a_users_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onemcp.audit")
    config, path = gh_hub_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.db")
    admin, operator, alice = (keys.create(n, [s]) for n, s in (("a", "admin"), ("o", "operator"), ("u", "mcp")))
    alice_id = f"key:{alice.split('_')[1]}"
    with anyio.fail_after(60):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=30) as http:
            value = "alices-own-value-0123456789"
            mine = f"{hub.base}/me/secrets/GH_TOKEN"
            r = await http.put(mine, json={"value": value}, headers={"authorization": f"Bearer {alice}"})
            assert r.status_code == 200
            got, pid = answer(await call(http, hub, alice))
            assert got == value

            api = f"{hub.base}/api/v1/user-secrets"
            listed = await http.get(api, headers={"authorization": f"Bearer {operator}"})
            assert listed.status_code == 200 and value not in listed.text
            doc: dict[str, Any] = listed.json()
            assert [(v["principal"], v["name"], v["servers"]) for v in doc["values"]] == [
                (alice_id, "GH_TOKEN", ["gh"])
            ]
            assert doc["names"] == {"GH_TOKEN": ["gh"]}
            for blank in ("?x=", "?x"):  # a parameter the route does not take is refused, even blank
                r = await http.get(api + blank, headers={"authorization": f"Bearer {operator}"})
                assert r.status_code == 400 and "unknown parameter" in r.text, r.text

            query = {"principal": alice_id, "name": "GH_TOKEN"}
            as_operator = await http.delete(api, params=query, headers={"authorization": f"Bearer {operator}"})
            assert as_operator.status_code == 403  # looking is not changing
            as_admin = {"authorization": f"Bearer {admin}"}
            assert (await http.delete(api, params={"principal": alice_id}, headers=as_admin)).status_code == 400
            r = await http.delete(api, params={**query, "other": "x"}, headers=as_admin)
            assert r.status_code == 400  # a query parameter the route does not take
            r = await http.request("DELETE", api, params=query, headers=as_admin, content=b'{"x": 1}')
            assert r.status_code == 400  # a body this route does not take is refused, not ignored
            r = await http.delete(api, params=query, headers=as_admin)
            assert r.status_code == 200 and r.json()["forgotten"] is True
            assert "action=user-secret-delete" in caplog.text and value not in caplog.text
            assert (await http.delete(api, params=query, headers=as_admin)).status_code == 404
            assert "GH_TOKEN" in json.dumps(await call(http, hub, alice))  # she has none now
            with anyio.fail_after(10):  # and the process made from the deleted value is gone
                while gone(pid) is False:
                    await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert (await http.get(api, headers=as_admin)).json()["values"] == []

            # the document names the route's query parameters; a store that cannot be read is a 503
            spec = (await http.get(f"{hub.base}/api/v1/openapi.json", headers=as_admin)).json()
            named = [p["name"] for p in spec["paths"]["/api/v1/user-secrets"]["delete"]["parameters"]]
            assert named == ["principal", "name"]

            def broken(principal: str | None = None) -> list[tuple[str, str, float]]:
                raise sqlite3.DatabaseError("file is not a database")

            hub.app.hub.user_secrets.listing = broken  # type: ignore[method-assign]
            r = await http.get(api, headers=as_admin)
            assert r.status_code == 503 and "DatabaseError" in r.json()["error"]


def gone(pid: str) -> bool:
    """Has the process exited (no longer there, or a zombie waiting for its parent)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
