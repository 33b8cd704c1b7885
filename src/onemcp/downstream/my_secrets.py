"""`/me/secrets`: a caller keeps its own values for the `${user:NAME}` placeholders of servers it reaches.

`GET /me/secrets` lists the names the caller's servers take and the ones it has stored (never a
value); `PUT /me/secrets/<NAME>` (JSON `{"value": "..."}`) stores its value and `DELETE` forgets it.
The principal is the credential's, admitted by the gate as on `/mcp`; it reads and writes only its
own values, and sets only names that an enabled server its scopes reach takes (another name is a
404 that names the ones it may set; a value stored before, for a server since gone, can still be
deleted). A principal that stands for several people (one built-in OAuth client, everyone on a hub
without auth) may not set or delete: one of them would choose for all. A value is one credential:
16 to 8,192 printable ASCII characters, no spaces (it may become a header, and it is masked in
every log line). The caller's next call uses the new value (the store's version changes). Owns
this endpoint; the store and rendering are `upstream.user_secrets`'s, the operator's commands
`onemcp auth secret`.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from typing import Any

import anyio.to_thread
import orjson

from onemcp.auth.access import refused
from onemcp.auth.gate import Gate
from onemcp.auth.principal import Principal
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.hub.connections import user_values
from onemcp.hub.core import Hub

PREFIX = "/me/secrets"
MIN_VALUE, MAX_VALUE = 16, 8 * 1024
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VALUE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what a header and an env var both carry
# an id's shape (`key:<id>` is 16 characters): such a value would mask who did what in the audit log
IDS = ("key:", "jwt:", "oauth:", "anonymous")
audit = logging.getLogger("onemcp.audit")
log = logging.getLogger("onemcp.http")


async def serve(hub: Hub, gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    principal = await gate.admit(scope, send)
    if principal is None:
        return
    method, name = scope["method"], scope["path"].removeprefix(PREFIX).strip("/")
    allowed = "GET" if not name else "PUT, DELETE"
    if method not in allowed.split(", "):
        await asgi.send_json(send, 405, {"error": f"{method}: use {allowed}"}, [(b"allow", allowed.encode())])
        return
    store = hub.user_secrets
    try:
        stored = {n: u for _, n, u in await anyio.to_thread.run_sync(store.listing, principal.id)}
        names = user_values(hub.config.enabled, principal)
        if not name:
            await asgi.send_json(send, 200, _listing(principal, names, stored))
            return
        if principal.shared:
            detail = "every caller of this hub" if principal.kind == "anonymous" else "everyone using this client"
            await asgi.send_json(
                send, 403, {"error": f"{principal.id} is {detail}: one may not choose for all; an operator sets it"}
            )
            return
        if not NAME.fullmatch(name) or (name not in names and (method == "PUT" or name not in stored)):
            said = f"${{user:{name}}}" if NAME.fullmatch(name) and len(name) <= 64 else "(not a NAME)"
            refused(principal, "me", method.lower(), said, "no server in its scopes takes it")
            known = ", ".join(sorted(names)) or "none"
            await asgi.send_json(
                send, 404, {"error": f"no server you reach takes ${{user:{name[:64]}}}; yours: {known}"}
            )
            return
        if method == "DELETE":
            forgot = await anyio.to_thread.run_sync(store.delete, principal.id, name)
            audit.info("user secret delete principal=%s name=%s forgotten=%s", principal.id, name, forgot)
            await asgi.send_json(send, 200, {"name": name, "forgotten": forgot})
            return
        value, status, problem = await _value(receive)
        if value is None:
            await asgi.send_json(send, status, {"error": problem})
            return
        await anyio.to_thread.run_sync(store.set, principal.id, name, value)
    except (OSError, sqlite3.Error) as exc:
        log.warning("user secrets: the store cannot be used (%s)", exc)
        await asgi.send_json(send, 503, {"error": f"the hub cannot keep values now: {type(exc).__name__}"})
        return
    except asgi.ClientGone:
        return
    audit.info("user secret set principal=%s name=%s", principal.id, name)
    await asgi.send_json(send, 200, {"name": name, "stored": True, "servers": names[name]})


def _listing(principal: Principal, names: dict[str, list[str]], stored: dict[str, float]) -> dict[str, Any]:
    shown = {**{n: [] for n in stored}, **names}  # a value kept for a server since gone is listed too
    return {
        "principal": principal.id,
        "shared": principal.shared,  # stands for several people: only an operator sets its values
        "names": {
            name: {
                "servers": servers,
                "set": name in stored,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored[name])) if name in stored else None,
            }
            for name, servers in sorted(shown.items())
        },
    }


async def _value(receive: Receive) -> tuple[str | None, int, str]:
    """The posted value, or None with the status and why not."""
    try:
        doc = orjson.loads(await asgi.read_body(receive, MAX_VALUE + 1024))
    except asgi.BodyTooLarge:
        return None, 413, f"too large: a value is at most {MAX_VALUE} characters"
    except orjson.JSONDecodeError:
        return None, 400, 'the body must be JSON: {"value": "..."}'
    if not isinstance(doc, dict) or set(doc) != {"value"} or not isinstance(doc["value"], str):
        return None, 400, 'the body must be {"value": "..."} and nothing else'
    value: str = doc["value"]
    if len(value) > MAX_VALUE:
        return None, 413, f"too large: a value is at most {MAX_VALUE} characters"
    if value.startswith(IDS):
        return None, 400, "a value cannot look like a principal's id (key:, jwt:, oauth:)"
    if len(value) < MIN_VALUE or not VALUE.fullmatch(value):
        return (
            None,
            400,
            (
                f"a value is one credential: {MIN_VALUE} to {MAX_VALUE} printable ASCII characters, no spaces"
                " (DELETE forgets a value; settings that are not secrets belong in the config)"
            ),
        )
    return value, 200, ""
