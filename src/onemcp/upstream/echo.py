"""A server that sends the hub's own request back: told as such, not as the request it seems to be.

A command that repeats what it reads (`cat`, a shell loop, a misconfigured wrapper) is no MCP
server, but each line it writes is valid JSON-RPC: the hub's `initialize` came back as a request
from the server, was refused as one the hub cannot forward, and that refusal came back again as
the answer to `initialize` ("initialize failed: onemcp cannot forward initialize (-32601)").
Owns only the recognition (the very message the hub sent, under the id of a call still waiting)
and the error that stands for its answer; `UpstreamConnection` delivers it.
"""

from __future__ import annotations

from collections.abc import Mapping

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream.call import Call


def sent_back(msg: Message, pending: Mapping[int, Call]) -> Message | None:
    """The error reply to give the waiting call when `msg` is the hub's own request to it sent back
    unchanged (never a request of the server's own: those have their own method, id or params); else None."""
    rid = msg.get("id")
    call = pending.get(rid) if isinstance(rid, int) and not isinstance(rid, bool) else None
    if call is None or msg != call.request:
        return None
    text = (
        f"the server sent the hub's own {call.method} request back instead of answering it:"
        " it repeats what it reads (as `cat` does); is the command an MCP server?"
    )
    return jsonrpc.error(rid, {"code": INTERNAL_ERROR, "message": text})
