"""The pages a person sees at the authorization endpoint: the consent form and the error page.

Owns the HTML (every interpolated value escaped) and the headers that keep it from being framed
or cached. Does not decide anything: `oauth_server` validates the request and checks the form.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

PAGE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    # No form-action: browsers apply it to the redirect that follows the form, to the client's URI.
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
]
HTML = b"text/html; charset=utf-8"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.3rem; } code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; word-break: break-all; }
ul { padding-left: 1.2rem; } .note { color: #666; font-size: .9rem; }
button { font-size: 1rem; padding: .5rem 1.2rem; margin-right: .5rem; cursor: pointer; }
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
) -> bytes:
    """Approve or deny, posted back to `action` with the request id and the CSRF token."""
    who = (
        f"its identity is the document at <code>{escape(client_id)}</code>"
        if verified_by_url
        else "its name is self-declared (dynamically registered)"
    )
    host = urlsplit(redirect_uri).netloc
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    body = (
        f"<h1>Allow <strong>{escape(client_name)}</strong> to use this MCP hub?</h1>"
        f"<p class=note>The application asks for:</p><ul>{items}</ul>"
        f"<p class=note>After you decide you go back to <code>{escape(host)}</code>; {who}.</p>"
        f'<form method=post action="{escape(action)}">'
        f'<input type=hidden name=request_id value="{escape(request_id)}">'
        f'<input type=hidden name=csrf value="{escape(csrf)}">'
        "<button type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button>"
        "</form>"
    )
    return _page("Authorize application", body)


def error_page(title: str, detail: str) -> bytes:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>")
