"""`/me/secrets`: a caller keeps its own values for the `${user:NAME}` placeholders of servers it reaches.

`GET /me/secrets` lists the names the caller's servers take (never a value), which it has set and
when; `PUT /me/secrets/<NAME>` (JSON `{"value": "..."}`) stores its value and `DELETE` forgets it.
The principal is the credential's, admitted by the gate as on `/mcp`; it reads and writes only its
own values, and only names that a server its scopes reach takes (another name is a 404 that names
the ones it may set). A value is one line of at most 8 KiB (it may become an HTTP header). The
caller's next call uses the new value (the store's version changes). Owns this endpoint; the store
and rendering are `upstream.user_secrets`'s, the operator's commands `onemcp auth secret`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from onemcp.auth.gate import Gate
from onemcp.auth.principal import Principal
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.hub.connections import user_secret_names
from onemcp.hub.core import Hub

PREFIX = "/me/secrets"
MAX_VALUE = 8 * 1024
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
audit = logging.getLogger("onemcp.audit")


async def serve(hub: Hub, gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    principal = await gate.admit(scope, send)
    if principal is None:
        return
    store = hub.user_secrets
    method, name = scope["method"], scope["path"].removeprefix(PREFIX).strip("/")
    names = user_secret_names(hub.config.servers, principal)
    if not name:
        if method != "GET":
            await asgi.send_json(send, 405, {"error": f"{method} {PREFIX}: use GET, or PUT/DELETE {PREFIX}/<NAME>"})
            return
        updated = {n: u for p, n, u in store.listing() if p == principal.id}
        await asgi.send_json(send, 200, _listing(principal, names, updated))
        return
    if method not in ("PUT", "DELETE"):
        await asgi.send_json(send, 405, {"error": f"{method} {PREFIX}/{name[:64]}: use PUT or DELETE"})
        return
    if not NAME.fullmatch(name) or name not in names:
        known = ", ".join(sorted(names)) or "none"
        await asgi.send_json(send, 404, {"error": f"no server you reach takes ${{user:{name[:64]}}}; yours: {known}"})
        return
    if method == "DELETE":
        forgot = store.delete(principal.id, name)
        audit.info("user secret delete principal=%s name=%s forgotten=%s", principal.id, name, forgot)
        await asgi.send_json(send, 200, {"name": name, "forgotten": forgot})
        return
    value, problem = await _value(receive)
    if value is None:
        await asgi.send_json(send, 413 if problem.startswith("too large") else 400, {"error": problem})
        return
    store.set(principal.id, name, value)
    audit.info("user secret set principal=%s name=%s", principal.id, name)
    await asgi.send_json(send, 200, {"name": name, "stored": True, "servers": names[name]})


def _listing(principal: Principal, names: dict[str, list[str]], updated: dict[str, float]) -> dict[str, Any]:
    return {
        "principal": principal.id,
        "names": {
            name: {
                "servers": servers,
                "set": name in updated,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated[name])) if name in updated else None,
            }
            for name, servers in sorted(names.items())
        },
    }


async def _value(receive: Receive) -> tuple[str | None, str]:
    """The posted value, or None and why not."""
    try:
        doc = orjson.loads(await asgi.read_body(receive, MAX_VALUE + 1024))
    except asgi.BodyTooLarge:
        return None, f"too large: a value is at most {MAX_VALUE} bytes"
    except orjson.JSONDecodeError:
        return None, 'the body must be JSON: {"value": "..."}'
    if not isinstance(doc, dict) or set(doc) != {"value"} or not isinstance(doc["value"], str):
        return None, 'the body must be {"value": "..."} and nothing else'
    value: str = doc["value"]
    if not value:
        return None, "the value is empty: DELETE forgets a value"
    if len(value.encode()) > MAX_VALUE:
        return None, f"too large: a value is at most {MAX_VALUE} bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None, "the value must be one line without control characters"
    return value, ""
