"""What a Streamable HTTP upstream's non-2xx answer to a POST says.

Owns the reading of an error answer: its text as one short line for a client (no URL), the
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
from typing import Any

import orjson

from onemcp.protocol import jsonrpc
from onemcp.protocol.jsonrpc import Message

ERROR_BODY_MAX = 4096  # of a non-2xx body: enough for a JSON-RPC error with data
ERROR_LINE_MAX = 200  # of its text in an error message
RETRY_AFTER_MAX = 300.0  # the longest wait a Retry-After is followed for


def one_line(raw: bytes) -> str:
    """An upstream's error body as one short line (HTML pages and stack traces included)."""
    text = " ".join(raw.decode(errors="replace").split())
    return text if len(text) <= ERROR_LINE_MAX else text[: ERROR_LINE_MAX - 3] + "..."


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
