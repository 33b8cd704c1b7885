"""What a Streamable HTTP upstream's non-2xx answer to a POST says.

Owns the reading of an error answer: its text as one short line for a client (no URL; the status with
its reason, an HTML error page's words without its markup), the
JSON-RPC error it may carry for the request, how long a refusal (429, 503) asks the hub to wait
(Retry-After), and whether it means the server no longer knows the hub's session. The spec says
404 for that; the reference SDK servers answer an id they do not know
(say, after a restart) with 400 "Bad Request: No valid session ID provided". So a 400 to a request
that carried a session id means the session is gone when its body names the session, or when it
came right after a connection to the server failed (it went away and came back). Any other 400 is
the server's answer to that request, passed on as it is. Does not own the exchange (http.py).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any

import orjson

from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message

ERROR_BODY_MAX = 4096  # of a non-2xx body: enough for a JSON-RPC error with data
ERROR_LINE_MAX = 200  # of its text in an error message
RETRY_AFTER_MAX = 300.0  # the longest wait a Retry-After is followed for


def error_text(status: int, raw: bytes, content_type: str = "") -> str:
    """An upstream's non-2xx answer as one short line for a client: the status and its reason, then the
    body's text (an HTML page's without its markup: a proxy's error page), unless it only repeats them."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    head = f"HTTP {status} {reason}".rstrip()
    text = _page_text(raw) if _is_html(raw, content_type) else " ".join(raw.decode(errors="replace").split())
    for said in (f"{status} {reason}", reason, str(status)):  # nginx's page is "502 Bad Gateway" twice
        if said and text.lower().startswith(said.lower()):
            text = text[len(said) :].lstrip(" -:|")
    if len(text) > ERROR_LINE_MAX:
        text = text[: ERROR_LINE_MAX - 3] + "..."
    return f"{head}: {text}" if text else head


def _is_html(raw: bytes, content_type: str) -> bool:
    start = raw.lstrip()[:9].lower()
    return "html" in content_type.lower() or start.startswith((b"<!doctype", b"<html"))


class _PageText(HTMLParser):
    """The words a page shows: not its markup, scripts, styles or head (its title only when nothing else)."""

    HIDDEN = frozenset({"script", "style", "head", "title", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden = 0
        self.in_title = False
        self.title: list[str] = []
        self.words: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
            self.in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1
            self.in_title = False

    def handle_data(self, data: str) -> None:
        (self.title if self.in_title else self.words if not self.hidden else []).append(data)


def _page_text(raw: bytes) -> str:
    page = _PageText()
    page.feed(raw.decode(errors="replace"))  # lenient: a page cut at ERROR_BODY_MAX reads as far as it goes
    text = " ".join(" ".join(page.words).split())
    return text or " ".join(" ".join(page.title).split())


def rpc_error(raw: bytes, request_id: Any) -> Message | None:
    """The JSON-RPC error response to `request_id` in a non-2xx body, if that is what it is."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if jsonrpc.too_deep(raw, doc):
        return None  # said as the status and the body's first line instead
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
        return None
    if doc.get("id") not in (request_id, None) or not isinstance(doc["error"].get("code"), int):
        return None
    return {"jsonrpc": "2.0", "id": request_id, "error": doc["error"]}


def session_gone(status: int, raw: bytes, session: str | None, *, after_failure: bool) -> bool:
    """Does this 400 say the server no longer knows the session the request carried?

    Only a request that carried a session id, and only when the body names the session (the
    SDKs' "No valid session ID provided") or a connection to the server failed just before.
    """
    if status != 400 or session is None:
        return False
    return after_failure or b"session" in raw[:ERROR_BODY_MAX].lower()


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After (delta-seconds or an HTTP date) asks for, at most RETRY_AFTER_MAX; None
    without one, or for one that does not parse."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(when - time.time(), 0.0), RETRY_AFTER_MAX)
