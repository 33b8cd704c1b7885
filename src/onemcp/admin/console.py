"""The web console at /ui: one page and its script; the key it signs in with stays in the tab.

Owns the page (server-rendered shell; `static/console.js` draws the tabs from the admin API and
its event stream, no build step, no network beyond the hub) and CSRF for a hub without auth. The
script asks for an API key with the `admin` or `operator` scope, keeps it in the tab's
`sessionStorage` and sends it as a bearer credential on every request: no cookie, so no server on
another port of the same host (a browser sends a host's cookies to every port) and no other site
can ride the console's sign-in, and any replica serves the page and its API alike. The API checks
the key on every request (revoking it ends the console's access at once). A hub without auth needs
no key (as for `/mcp`); its changes carry a CSRF token of this process (`x-onemcp-csrf`), which
the page holds. Does not answer the API itself (`admin.api`).
"""

from __future__ import annotations

import hmac
import html
import secrets
from pathlib import Path

from onemcp.admin.api import AdminApi
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send

PREFIX = "/ui"
CSRF_HEADER = b"x-onemcp-csrf"
STATIC = Path(__file__).parent / "static"
TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml"}


class Console:
    def __init__(self, api: AdminApi, bind_host: str) -> None:
        self.api = api
        self.bind_host = bind_host
        self._open_csrf = secrets.token_urlsafe(24)  # a hub without auth: one token for this process
        api.csrf_ok = self.csrf_ok

    def csrf_ok(self, scope: Scope) -> bool:
        """May this request change something? A bearer credential is no ambient one: it needs no token
        (the console sends its key so). A browser without one (a hub without auth) must send the page's."""
        if asgi.header(scope, b"authorization") is not None:
            return True
        browser = any(asgi.header(scope, h) is not None for h in (b"cookie", b"origin", b"sec-fetch-site"))
        if not browser:
            return True
        sent = asgi.header(scope, CSRF_HEADER) or ""
        expected = self._open_csrf if not self.api.gate.required else ""
        return bool(expected) and hmac.compare_digest(sent, expected)

    # ------------------------------------------------------------------ routes
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(PREFIX) :] or "/"
        if path.startswith("/static/"):
            await self._static(path[len("/static/") :], send)
            return
        if path == "/login" and scope["method"] == "GET":  # where the sign-in page was: it is in the page now
            headers = [(b"location", f"{PREFIX}/".encode()), (b"cache-control", b"no-store")]
            await asgi.send_bytes(send, 303, b"", b"text/plain", headers)
            return
        if path not in ("/", ""):
            await asgi.send_json(send, 404, {"error": "no such page"})
            return
        await self._page(send)

    async def _static(self, name: str, send: Send) -> None:
        try:
            target = (STATIC / name).resolve()
        except (ValueError, OSError):  # a NUL in the name, say
            target = STATIC
        if target.parent != STATIC.resolve() or not target.is_file() or target.suffix not in TYPES:
            await asgi.send_json(send, 404, {"error": "no such file"})
            return
        await asgi.send_bytes(send, 200, target.read_bytes(), TYPES[target.suffix], [(b"cache-control", b"no-cache")])

    async def _page(self, send: Send) -> None:
        required = self.api.gate.required
        csrf = "" if required else self._open_csrf
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onemcp console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{html.escape(csrf)}">
<meta name="auth" content="{"key" if required else "none"}">
<link rel="icon" href="{PREFIX}/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{PREFIX}/static/console.css"></head>
<body><div id="app"><p>Loading…</p></div><script src="{PREFIX}/static/console.js"></script></body></html>"""
        headers = [
            (b"cache-control", b"no-store"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"content-security-policy", b"default-src 'self'; style-src 'self'; frame-ancestors 'none'"),
        ]
        await asgi.send_bytes(send, 200, page.encode(), b"text/html; charset=utf-8", headers)
