"""The pages a person sees at the authorization endpoint: the consent form and the error page.

Owns the HTML (every interpolated value escaped), the headers that keep it from being framed
or cached, and whether an answer was posted from the page's own origin. Decides nothing else:
`oauth_server` validates the request, checks the form and the operator key, and says which of
the form's variants to show.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

from onemcp.http.asgi import Scope, header

PAGE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    # same-origin: the consent form's POST carries a real Origin (checked), the client never sees the URL
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    # No form-action: browsers apply it to the redirect that follows the form, to the client's URI.
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
]
HTML = b"text/html; charset=utf-8"
# a person's own key, typed on one of the hub's pages (a user's link, their values)
KEY_FIELD = (
    "<label>The API key (or token) your MCP client uses for onemcp"
    "<input type=password name=key autocomplete=off autofocus required></label>"
)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.3rem; } code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; word-break: break-all; }
ul { padding-left: 1.2rem; } .note { color: #666; font-size: .9rem; }
button { font-size: 1rem; padding: .5rem 1.2rem; margin-right: .5rem; cursor: pointer; }
label { display: block; margin: 1rem 0; } input[type=password] { width: 100%; font-size: 1rem; padding: .4rem; }
.error { color: #a00; font-weight: bold; }
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    ).encode()


def consent_page(
    *,
    client_name: str,
    client_id: str,
    verified_by_url: bool,
    redirect_uri: str,
    scopes: tuple[str, ...],
    action: str,
    request_id: str,
    csrf: str,
    ask_key: bool = False,
    operator_name: str | None = None,
    error: str | None = None,
) -> bytes:
    """Approve or deny, posted back to `action` with the request id and the CSRF token.

    `ask_key`: the form has an operator key field (needed to approve, not to deny); `operator_name`:
    the API key this browser is remembered by; `error`: why the last answer was not accepted.
    """
    who = (
        f"its identity is the document at <code>{escape(client_id)}</code>"
        if verified_by_url
        else "its name is self-declared (dynamically registered)"
    )
    host = urlsplit(redirect_uri).netloc
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    operator = ""
    if ask_key:
        # not `required`: Deny must go through without it
        operator = (
            "<label>Operator key (an API key with the <code>admin</code> scope, from "
            "<code>onemcp auth key create --scope admin</code>)"
            "<input type=password name=operator_key autocomplete=off></label>"
            "<p class=note>Needed to approve, not to deny. This browser is then remembered for 12 hours"
            " (if it approved here recently, you may leave the field empty).</p>"
        )
    elif operator_name is not None:
        operator = f"<p class=note>Approving as the operator key <code>{escape(operator_name)}</code>.</p>"
    body = (
        (f"<p class=error role=alert>{escape(error)}</p>" if error else "")
        + f"<h1>Allow <strong>{escape(client_name)}</strong> to use this MCP hub?</h1>"
        f"<p class=note>The application asks for:</p><ul>{items}</ul>"
        f"<p class=note>After you decide you go back to <code>{escape(host)}</code>; {who}.</p>"
        f'<form method=post action="{escape(action)}">'
        f'<input type=hidden name=request_id value="{escape(request_id)}">'
        f'<input type=hidden name=csrf value="{escape(csrf)}">'
        f"{operator}"
        "<button type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button>"
        "</form>"
    )
    return _page("Authorize application", body)


def posted_here(scope: Scope, issuer: str) -> bool:
    """Did the consent form come from this origin (Fetch metadata, else Origin; absent: not a browser)?

    A page of another origin that is still same-site (another port on this host, a sibling subdomain)
    could post a form it prepared, and the browser would send the SameSite operator cookie along.
    """
    site = header(scope, b"sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = header(scope, b"origin")
    if origin is None or (origin == "null" and site == "same-origin"):
        return True
    ours = urlsplit(issuer)
    here = f"{scope.get('scheme', 'http')}://{header(scope, b'host') or ''}"
    return origin in (f"{ours.scheme}://{ours.netloc}", here)


def page(title: str, body: str) -> bytes:
    """Another page of the hub's, in the same frame (`body`: HTML whose every interpolated value is escaped)."""
    return _page(title, body)


def error_page(title: str, detail: str) -> bytes:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>")


def back_page(detail: str, back: str) -> bytes:
    """An authorization error the application must hear of, at a redirect URI not sent to at once: the
    error, and the way back (`back`: that URI with the error) as a link the person may follow."""
    host = urlsplit(back).netloc
    return _page(
        "Authorization failed",
        f"<h1>Authorization failed</h1><p>{escape(detail)}</p>"
        f'<p><a href="{escape(back)}">Back to {escape(host)}</a> (it will be told of the error)</p>',
    )
