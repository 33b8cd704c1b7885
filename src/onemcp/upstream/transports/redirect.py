"""What a Streamable HTTP upstream's redirect (3xx) to a POST means for the hub.

Owns one decision: a 307 or 308 whose `Location` stays on the same origin (scheme, host and port)
moves the server (the URL it is reached at, for every later request; the redirected message is
sent again there), as a direct client that follows redirects would do; for the GET that opens an
HTTP+SSE server's stream, so does a 301, 302 or 303 (a GET stays a GET). A common case: a server
mounted at `/mcp/` reached at `/mcp` (or the other way), which Starlette answers with a 307. Any
other redirect is an error that says where it pointed: another origin would receive the server's
configured headers and the hub's token for it, and a 301, 302 or 303 turns a POST into a GET.
Does not own the exchange or the resending (http.py).
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from onemcp.observability.redact import display_url
from onemcp.upstream.transports.base import TransportError

MAX_MOVES = 5  # moves one transport follows in its life: beyond them a redirect is an error (a loop)


class Moved(TransportError):
    """The server moved, on its own origin: send the message again at `url`."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


def redirected(
    label: str, status: int, base: str, location: str | None, moves: int, *, get: bool = False
) -> TransportError:
    """The error for a redirect of `label` (a method) from `base`: Moved when the hub follows it.
    A GET (an HTTP+SSE server's stream) stays a GET whichever the redirect: 301, 302, 303 move it too."""
    where = _resolve(base, location)
    if where is None:
        return TransportError(f"{label}: the server answered HTTP {status} without a usable Location")
    followed = status in ((301, 302, 303, 307, 308) if get else (307, 308)) and _origin(where) == _origin(base)
    if followed and moves < MAX_MOVES:
        return Moved(f"{label}: the server moved to {display_url(where)} (HTTP {status})", where)
    why = "the limit of moves was reached" if followed else "not followed"
    return TransportError(f"{label}: the server answered HTTP {status} to {display_url(where)} ({why}: set the url)")


def _resolve(base: str, location: str | None) -> str | None:
    if not location:
        return None
    try:
        where = urljoin(base, location.strip())
        parts = urlsplit(where)
        parts.port  # noqa: B018  (raises ValueError for a port that does not parse)
    except ValueError:
        return None
    return where if parts.scheme in ("http", "https") and parts.hostname else None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default
