"""In-memory transport of the demo/fixture servers: one connection over a pair of in-process message streams.

The server side of `onemcp.upstream.transports.memory.MemoryTransport`: each item is one serialised
JSON-RPC message. Behaves as `stdio.serve_stdio` does on stdin EOF when the hub closes its side.
"""

from __future__ import annotations

import contextlib

import anyio
import orjson
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from onemcp.demo.kit import EOF_GRACE_SECONDS, McpServer
from onemcp.demo.peer import Connection
from onemcp.demo.wire import PARSE_ERROR, JsonObject, error_message


async def serve_streams(server: McpServer, receive: ObjectReceiveStream[bytes], send: ObjectSendStream[bytes]) -> None:
    """Serve one client until `receive` ends; cancelled, stop its requests at once."""

    async def write(message: JsonObject) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # the hub has gone
            await send.send(orjson.dumps(message))

    connection = Connection(server, write)
    grace = 0.0
    try:
        async for body in receive:
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError:
                await write(error_message(None, PARSE_ERROR, "Parse error"))
                continue
            await connection.receive(message)
        grace = EOF_GRACE_SECONDS
    finally:
        with anyio.CancelScope(shield=True):
            await connection.close(grace=grace)
