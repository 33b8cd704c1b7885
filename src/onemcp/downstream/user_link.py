"""Where a user signs in to authorize onemcp with a `perUser` upstream for themselves.

`GET /oauth/upstream/start/<server>~<principal hash>` is the link a user's first call hands them:
a form asking for the key their MCP client uses (none on a hub without auth). `POST` checks that
the form came from this page (a SameSite=Strict CSRF cookie and its token, and the Origin), that
the key is valid, and that it is the principal the link was made for; only then does it make an
authorization link, set the cookie the callback will ask for (`link_cookie`: one per credential;
on an https hub a `__Host-` cookie, which a sibling domain cannot plant; on http scoped to the
credential's callback path) and send the browser to the upstream's authorization page. So a link
forwarded to someone else, or the upstream's page opened in another browser, cannot tie another
person's upstream account to this principal. Owns these pages and cookies; the links, the check of
the cookie and the flow itself are `upstream.oauth.registry`'s.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from html import escape
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from onemcp.auth.gate import Gate
from onemcp.auth.principal import ANONYMOUS, InvalidToken, Principal
from onemcp.auth.server.consent import HTML, KEY_FIELD, PAGE_HEADERS, error_page, page, posted_here
from onemcp.config.model import ServerConfig, UpstreamOAuth
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.http.routes import UPSTREAM_OAUTH_START
from onemcp.hub.connections import per_user_credential
from onemcp.hub.core import Hub

CSRF_COOKIE = "onemcp_link_csrf"
CREDENTIAL = re.compile(r"[A-Za-z0-9_-]+~[0-9a-f]{16}")  # `hub.connections.per_user_credential`'s names
LIFETIME = 600  # seconds: as long as the authorization link it leads to
audit = logging.getLogger("onemcp.audit")


class Links(Protocol):
    """What this page needs of the hub's upstream credentials (`upstream.oauth.registry.UpstreamAuth`)."""

    async def user_link(self, credential: str, browser: str, config: ServerConfig) -> str | None: ...
    def start_url(self, credential: str) -> str | None: ...
    def callback_url(self, server: str) -> str | None: ...


def link_cookie(links: Links, credential: str) -> tuple[str, str]:
    """The name of the cookie a credential's callback asks for, and its attributes (the public URL's
    scheme and path: behind a proxy the hub's routes are not the browser's)."""
    callback = urlsplit(links.callback_url(credential) or "")
    name = "onemcp_link_" + credential.replace("~", "_")  # a server's name and the principal's hash
    if callback.scheme == "https":  # no Domain, Path=/, Secure: only this host can set it
        return f"__Host-{name}", "HttpOnly; SameSite=Lax; Path=/; Secure"
    return name, f"HttpOnly; SameSite=Lax; Path={callback.path}"


async def serve(hub: Hub, links: Links, gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    credential = scope["path"].removeprefix(UPSTREAM_OAUTH_START + "/")
    server, _, _ = credential.partition("~")
    own = hub.config.servers.get(server)
    if (
        not CREDENTIAL.fullmatch(credential)
        or own is None
        or not isinstance(own.oauth, UpstreamOAuth)
        or not own.oauth.per_user
    ):
        await _answer(send, 404, error_page("No such authorization", "This link names no server users authorize."))
        return
    start = urlsplit(links.start_url(credential) or "")
    csrf_path = start.path or scope["path"]
    csrf_secure = "; Secure" if start.scheme == "https" else ""
    ask_key = gate.required

    async def form(error: str = "", status: int = 200) -> None:
        await _form(send, server, csrf_path + csrf_secure, ask_key=ask_key, error=error, status=status)

    if scope["method"] == "GET":
        await form()
        return
    if scope["method"] != "POST":
        await _answer(send, 405, error_page("Method not allowed", "Open the link, then use its form."))
        return
    try:
        fields = dict(parse_qsl((await asgi.read_body(receive, 16 * 1024)).decode("latin-1"), max_num_fields=10))
    except asgi.BodyTooLarge:
        await form("That was not a key.", 413)
        return
    except ValueError:
        await form("That was not this page's form.", 400)
        return
    sent, expected = fields.get("csrf", "").encode(), asgi.cookies(scope).get(CSRF_COOKIE, "").encode()
    if not expected or not hmac.compare_digest(sent, expected) or not posted_here(scope, gate.resource(scope)):
        audit.info("upstream user authorization refused server=%s reason=form not from this page", server)
        await form("The form expired: try again.", 403)
        return
    principal = await _principal(gate, fields.get("key", "").strip())
    if principal is None:
        audit.info("upstream user authorization refused server=%s principal=- reason=invalid key", server)
        await form("Not signed in: unknown or invalid key.", 403)
        return
    if per_user_credential(server, principal.id) != credential:
        audit.info(
            "upstream user authorization refused server=%s principal=%s reason=another's link", server, principal.id
        )
        await form("This link was made for another onemcp user. Open the link your own MCP client gave you.", 403)
        return
    browser = secrets.token_urlsafe(32)
    link = await links.user_link(credential, browser, own)
    if link is None:  # authorized meanwhile, or no replica has seen the principal's call
        detail = f"This hub has no authorization of yours with {server} waiting: call it from your client again."
        await _answer(send, 409, error_page("Nothing to authorize here", detail))
        return
    audit.info("upstream user authorization started server=%s principal=%s", server, principal.id)
    name, attributes = link_cookie(links, credential)
    # Lax: it must come back on the authorization server's redirect, a top-level GET from another site
    cookie = f"{name}={browser}; {attributes}; Max-Age={LIFETIME}"
    headers = [(b"location", link.encode()), (b"cache-control", b"no-store"), (b"set-cookie", cookie.encode())]
    await asgi.send_bytes(send, 303, b"", b"text/plain", headers)


async def _principal(gate: Gate, key: str) -> Principal | None:
    if not gate.required:
        return ANONYMOUS
    try:
        return await gate.verify(key) if key else None
    except InvalidToken:
        return None


async def _form(send: Send, server: str, path: str, *, ask_key: bool, error: str, status: int) -> None:
    """The sign-in form, with a new CSRF token in its cookie (`path`: its Path and any more attributes)."""
    csrf = secrets.token_urlsafe(24)
    field = KEY_FIELD if ask_key else ""
    body = (
        f"<h1>Authorize onemcp with <strong>{escape(server)}</strong> for yourself</h1>"
        "<p class=note>onemcp will use your own account with this server for your calls, and for nobody "
        "else's. To make sure of that, sign in with the key your client uses; a link someone else sent you "
        "will not work with your key.</p>"
        + (f"<p class=error>{escape(error)}</p>" if error else "")
        + f'<form method=post><input type=hidden name=csrf value="{escape(csrf)}">{field}'
        "<button type=submit>Continue to the server's authorization page</button></form>"
    )
    cookie = f"{CSRF_COOKIE}={csrf}; HttpOnly; SameSite=Strict; Max-Age={LIFETIME}; Path={path}"
    await _answer(send, status, page("Authorize for yourself", body), cookie)


async def _answer(send: Send, status: int, body: bytes, cookie: str | None = None) -> None:
    headers = list(PAGE_HEADERS)
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode()))
    await asgi.send_bytes(send, status, body, HTML, headers)
