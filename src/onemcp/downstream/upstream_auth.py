"""HTTP endpoints for the hub's own OAuth with its upstreams.

`GET /oauth/upstream/callback/<server>` receives authorization responses (a browser page, open like any
redirect URI: the single-use `state` is what authenticates it; a user's own flow also needs the
cookie set where it began, `/oauth/upstream/start/...`, served by `user_link`). `GET /oauth/upstream` lists every
upstream credential with its authorization link, and `DELETE /oauth/upstream/<server>` logs out
(its users' own credentials too; `<server>~<id>` only one user's). When the hub has authentication,
the listing is the operator surfaces' read (`operator` or `admin` scope), its authorization links only
the admin's (whoever follows one authorizes the hub as themselves: a change); logging out needs admin.
"""

from __future__ import annotations

import logging
from typing import Protocol
from urllib.parse import parse_qsl

from onemcp.auth.access import operator_needs
from onemcp.auth.gate import Gate
from onemcp.auth.server.consent import HTML, PAGE_HEADERS, error_page
from onemcp.config.model import ServerConfig
from onemcp.downstream import user_link
from onemcp.http import asgi
from onemcp.http.asgi import Receive, Scope, Send
from onemcp.http.routes import UPSTREAM_OAUTH, UPSTREAM_OAUTH_CALLBACK, UPSTREAM_OAUTH_START
from onemcp.hub.core import Hub

PREFIX = UPSTREAM_OAUTH
# where a browser arrives by a redirect or a link (an Origin may be the authorization server's): served
# before the hub's Origin check; the listing and the logouts are served behind it
NAVIGATED = (UPSTREAM_OAUTH_CALLBACK + "/", UPSTREAM_OAUTH_START + "/")
audit = logging.getLogger("onemcp.audit")


class Credentials(Protocol):
    """What these endpoints need of the hub's upstream credentials (`upstream.oauth.registry.UpstreamAuth`)."""

    async def callback(
        self, server: str, params: dict[str, str], browser: str | None = None, config: ServerConfig | None = None
    ) -> tuple[int, str, str]: ...
    async def forget(self, name: str) -> bool: ...
    async def links_written(self) -> None: ...
    async def user_link(self, credential: str, browser: str, config: ServerConfig) -> str | None: ...
    def start_url(self, credential: str) -> str | None: ...
    def callback_url(self, server: str) -> str | None: ...


async def serve(hub: Hub, auth: Credentials, gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    """`auth`: the hub's own OAuth credentials with its upstreams (the one the `hub` was given)."""
    path: str = scope["path"]
    method: str = scope["method"]
    if path.startswith(UPSTREAM_OAUTH_CALLBACK + "/") and method == "GET":
        server = path.removeprefix(UPSTREAM_OAUTH_CALLBACK + "/")
        try:
            params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), max_num_fields=50))
        except ValueError:
            status, title, detail = 400, "Bad request", "Too many parameters."
        else:
            browser, own = None, None
            if "~" in server:  # a user's own: the cookie where it began, and the server's config (replicas)
                browser = asgi.cookies(scope).get(user_link.link_cookie(auth, server)[0])
                own = hub.config.servers.get(server.partition("~")[0])
            status, title, detail = await auth.callback(server, params, browser, own)
        await asgi.send_bytes(send, status, error_page(title, detail), HTML, PAGE_HEADERS)
        return
    if path.startswith(UPSTREAM_OAUTH_START + "/"):  # a user signs in to authorize their own credential
        await user_link.serve(hub, auth, gate, scope, receive, send)
        return
    if path.rstrip("/") == PREFIX and method == "GET":
        reader = await gate.admit(scope, send, check=lambda p: operator_needs(p, change=False))
        if reader is None:
            return
        listing = hub.state.authorizations(with_link=reader.is_admin)  # (no auth: everyone is)
        if reader.is_admin:
            await auth.links_written()  # a link in it works at any replica
        await asgi.send_json(send, 200, {"upstreams": listing})
        return
    principal = await gate.admit(scope, send, admin=True)
    if principal is None:
        return
    name = path.removeprefix(PREFIX + "/")
    if method == "DELETE" and name.partition("~")[0] in hub.config.servers:  # a server, or one user's credential
        try:
            forgot = await auth.forget(name)
        except ConnectionError as exc:  # the replicas' Redis: logged out here, not yet in the store
            audit.info("upstream logout server=%s principal=%s failed: %s", name, principal.id, exc)
            await asgi.send_json(send, 503, {"error": f"{exc}: try again", "server": name})
            return
        audit.info("upstream logout server=%s principal=%s forgotten=%s", name, principal.id, forgot)
        await asgi.send_json(send, 200, {"server": name, "forgotten": forgot})
        return
    await asgi.send_json(send, 404, {"error": "not found"})
