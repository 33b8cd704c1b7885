"""Reading a Streamable HTTP upstream's non-2xx answer (http_status.py): when a 400 means the server
no longer knows the hub's session. End to end, with a server that restarts: test_http_outage.py."""

from __future__ import annotations

import json

import pytest

from onemcp.upstream.transports.http_status import one_line, rpc_error, session_gone

SDK_400 = json.dumps(
    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}, "id": None}
).encode()
OWN_400 = json.dumps({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "session", "after_failure", "gone"),
    [
        (400, SDK_400, "s1", False, True),  # the reference servers' answer to an unknown session id
        (400, b"Invalid or expired session", "s1", False, True),
        (400, b"Bad Request", "s1", True, True),  # right after a connection to it broke
        (400, b"Bad Request", "s1", False, False),  # any other 400 is an answer to the request
        (400, OWN_400, "s1", False, False),
        (400, SDK_400, None, False, False),  # no session was sent: none can be gone
        (400, b"Bad Request", None, True, False),
        (500, SDK_400, "s1", True, False),
    ],
)
def test_a_400_means_the_session_is_gone_only_when_it_names_it_or_follows_a_failure(
    status: int, body: bytes, session: str | None, after_failure: bool, gone: bool
) -> None:
    assert session_gone(status, body, session, after_failure=after_failure) is gone


def test_the_error_body_and_the_json_rpc_error_it_carries() -> None:
    assert one_line(b"<html>\n  <b>Bad</b>\n</html>") == "<html> <b>Bad</b> </html>"
    assert len(one_line(b"x" * 500)) == 200
    assert rpc_error(OWN_400, 3) == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad arguments"}}
    assert rpc_error(SDK_400, 3) is not None  # id null: still the answer
    assert rpc_error(OWN_400, 4) is None and rpc_error(b"not json", 3) is None
