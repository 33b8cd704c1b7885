"""Who is asking, as the HTTP front doors decide it: the view, the tool exposure and the template context.

Owns reading a request's selectors (query string) and its template context (the `Onemcp-Context`
headers, `config.context`) into one `Access` through `Hub.access`, and the refusals that come
with them: an unknown view or exposure (400), a context that does not verify or that this
principal may not send (403, audited). Does not decide what the access reaches (`auth.access`).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl

from onemcp.auth.access import Access, refused
from onemcp.auth.principal import Principal
from onemcp.catalog import views
from onemcp.config import context as wire
from onemcp.http import asgi
from onemcp.http.asgi import Scope
from onemcp.hub import revival
from onemcp.hub.core import Hub

TEMPLATES_SCOPE = "templates"  # a credential holding it may send an unsigned template context
_CONTEXT = wire.HEADER.encode()


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def decide(hub: Hub, scope: Scope, principal: Principal, entry: str) -> Access:
    """The requester's access (Refused: why not, with the HTTP status)."""
    query = scope.get("query_string", b"")
    value = asgi.header(scope, _CONTEXT)
    if not query and value is None:
        # no view, no exposure asked, no context: the decision without parsing, nor copying it to note its
        # query (""). What every 2026-07-28 request of a plain client costs, so read nothing it does not need
        return hub.access(principal, entry)
    try:
        views.check_query(query)
        view = await revival.view_of(hub, query)
        asked = hub.exposure_asked(query)
    except views.ViewError as exc:
        raise Refused(400, str(exc)) from None
    text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    if value is None:
        return replace(hub.access(principal, entry, view, asked), query=text)
    signature = asgi.header(scope, wire.SIGNATURE_HEADER.encode())
    try:
        context, signed = wire.decode(value, signature, hub.context_secret)
    except wire.ContextError as exc:
        refused(principal, entry, "context", "templates", str(exc))
        raise Refused(403, str(exc)) from None
    allowed = principal.kind != "anonymous" and TEMPLATES_SCOPE in principal.scopes
    if not (signed or allowed):
        reason = (
            "a template context must be signed with this hub's key (context.key beside mcp.json: "
            "`onemcp proxy` and the agent CLI do this) or come with a credential holding scope 'templates'"
        )
        refused(principal, entry, "context", "templates", "unsigned context")
        raise Refused(403, reason)
    return replace(hub.access(principal, entry, view, asked, context, trusted=True), query=text)


def other_view(scope: Scope, chosen: str) -> str | None:
    """Why a request on a session cannot carry its query string (None: it may): the session's view and
    exposure were chosen by `chosen` at initialize; a request may repeat that query or leave it out."""
    query = scope.get("query_string", b"")
    text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    if not text or text == chosen:  # as a client sends it: the same URL each time (or none)
        return None
    if sorted(parse_qsl(text, keep_blank_values=True)) == sorted(parse_qsl(chosen, keep_blank_values=True)):
        return None
    try:
        views.check_query(query)
    except views.ViewError as exc:
        return f"Bad Request: {exc}"
    was = f"?{chosen}" if chosen else "no query"
    return f"Bad Request: this session was made with {was}; another view or exposure needs a new session"
