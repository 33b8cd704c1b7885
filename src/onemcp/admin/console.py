"""The web console at /ui: one page and its script, a login that trades an API key for a cookie.

Owns the page (server-rendered shell; `static/console.js` draws the tabs from the admin API and
its event stream, no build step, no network beyond the hub), the login (an API key with the
`admin` or `operator` scope, checked through the gate, exchanged for an opaque HttpOnly,
SameSite=Strict session cookie; the key stays in this process's memory, re-verified on every
request, so revoking it ends the session), and CSRF (a token per console session, or per
process on a hub without auth, that the page sends as `x-onemcp-csrf` on every change). A hub
without auth needs no login (as for `/mcp`). Does not answer the API itself (`admin.api`).
"""

from __future__ import annotations

import hmac
import html
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from onemcp.admin.api import AdminApi
from onemcp.auth.access import operator_needs
from onemcp.auth.principal import InvalidToken
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send

PREFIX = "/ui"
COOKIE = "onemcp_console"
CSRF_HEADER = b"x-onemcp-csrf"
LIFETIME = 12 * 3600.0
STATIC = Path(__file__).parent / "static"
MAX_SESSIONS = 1000
TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml"}


@dataclass
class _Login:
    key: str
    csrf: str
    expires: float


class Console:
    def __init__(self, api: AdminApi, bind_host: str) -> None:
        self.api = api
        self.bind_host = bind_host
        self._logins: dict[str, _Login] = {}
        self._open_csrf = secrets.token_urlsafe(24)  # a hub without auth: one token for this process
        api.csrf_ok = self.csrf_ok
        api.with_login = self.with_login

    # ------------------------------------------------------------------ logins
    def _login(self, scope: Scope) -> tuple[str, _Login] | None:
        sid = asgi.cookies(scope).get(COOKIE)
        login = self._logins.get(sid) if sid else None
        if sid is None or login is None:
            return None
        if login.expires < time.time():
            del self._logins[sid]
            return None
        return sid, login

    def with_login(self, scope: Scope) -> Scope:
        """A browser request of a logged-in console: the scope with its key as the bearer credential."""
        if asgi.header(scope, b"authorization") is not None:
            return scope
        found = self._login(scope)
        if found is None:
            return scope
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        headers.append((b"authorization", f"Bearer {found[1].key}".encode()))
        scope = {**scope, "headers": headers}
        scope.pop("onemcp.headers", None)
        scope["onemcp.console"] = True
        return scope

    def csrf_ok(self, scope: Scope) -> bool:
        """May this request change something? Bearer clients and non-browser clients need no token;
        a browser (cookie, Origin or Sec-Fetch-*) must send the page's token."""
        if asgi.header(scope, b"authorization") is not None and not scope.get("onemcp.console"):
            return True
        browser = any(asgi.header(scope, h) is not None for h in (b"cookie", b"origin", b"sec-fetch-site"))
        if not browser:
            return True
        sent = asgi.header(scope, CSRF_HEADER) or ""
        found = self._login(scope)
        expected = found[1].csrf if found is not None else (self._open_csrf if not self.api.gate.required else "")
        return bool(expected) and hmac.compare_digest(sent, expected)

    # ------------------------------------------------------------------ routes
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(PREFIX) :] or "/"
        if path.startswith("/static/"):
            await self._static(path[len("/static/") :], send)
            return
        if path == "/login":
            if scope["method"] == "POST":
                await self._login_post(scope, receive, send)
            else:
                await self._page(send, login=True)
            return
        if path == "/logout" and scope["method"] == "POST":
            found = self._login(scope)
            if found is not None and self.csrf_ok(scope):
                del self._logins[found[0]]
            await self._redirect(send, f"{PREFIX}/login", clear=True)
            return
        if path not in ("/", ""):
            await asgi.send_json(send, 404, {"error": "no such page"})
            return
        if not self.api.gate.required:
            await self._page(send, csrf=self._open_csrf)
            return
        found = self._login(scope)
        if found is None:
            await self._redirect(send, f"{PREFIX}/login")
            return
        await self._page(send, csrf=found[1].csrf)

    async def _login_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            raw = await asgi.read_body(receive, 16 * 1024)
        except asgi.BodyTooLarge:
            await self._page(send, login=True, error="That was not a key.", status=413)
            return
        key = dict(parse_qsl(raw.decode("latin-1"))).get("key", "").strip()
        try:
            principal = await self.api.gate.verify(key) if key else None
        except InvalidToken:
            principal = None
        if principal is None or operator_needs(principal, change=False) is not None:
            reason = "unknown or invalid key" if principal is None else "the key has neither admin nor operator scope"
            who = principal.id if principal is not None else "-"
            self.api.audit_refusal(who, f"console login: {reason}")
            await self._page(send, login=True, error=f"Not signed in: {reason}.", status=403)
            return
        if len(self._logins) >= MAX_SESSIONS:
            now = time.time()
            for sid in [s for s, login in self._logins.items() if login.expires < now] or list(self._logins)[:100]:
                self._logins.pop(sid, None)
        sid = secrets.token_urlsafe(32)
        self._logins[sid] = _Login(key, secrets.token_urlsafe(24), time.time() + LIFETIME)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(LIFETIME)}{secure}"
        self.api.audit_change(principal.id, "console-login", "-")
        await self._redirect(send, f"{PREFIX}/", cookie=cookie)

    async def _redirect(self, send: Send, where: str, *, cookie: str | None = None, clear: bool = False) -> None:
        headers = [(b"location", where.encode()), (b"cache-control", b"no-store")]
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        if clear:
            headers.append((b"set-cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0".encode()))
        await asgi.send_bytes(send, 303, b"", b"text/plain", headers)

    async def _static(self, name: str, send: Send) -> None:
        try:
            target = (STATIC / name).resolve()
        except (ValueError, OSError):  # a NUL in the name, say
            target = STATIC
        if target.parent != STATIC.resolve() or not target.is_file() or target.suffix not in TYPES:
            await asgi.send_json(send, 404, {"error": "no such file"})
            return
        await asgi.send_bytes(send, 200, target.read_bytes(), TYPES[target.suffix], [(b"cache-control", b"no-cache")])

    async def _page(
        self, send: Send, *, csrf: str = "", login: bool = False, error: str = "", status: int = 200
    ) -> None:
        if login:
            body = f"""<main class="login"><h1>onemcp</h1>
<form method="post" action="{PREFIX}/login"><label>API key (admin or operator scope)
<input type="password" name="key" autocomplete="off" autofocus></label>
<button type="submit">Sign in</button></form>
<p class="error">{html.escape(error)}</p></main>"""
        else:
            body = '<div id="app"><p>Loading…</p></div>'
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onemcp console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{html.escape(csrf)}">
<link rel="stylesheet" href="{PREFIX}/static/console.css"></head>
<body>{body}{"" if login else f'<script src="{PREFIX}/static/console.js"></script>'}</body></html>"""
        headers = [
            (b"cache-control", b"no-store"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", b"default-src 'self'; style-src 'self'; frame-ancestors 'none'"),
        ]
        await asgi.send_bytes(send, status, page.encode(), b"text/html; charset=utf-8", headers)
