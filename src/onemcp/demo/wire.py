"""JSON-RPC basics of the demo/fixture servers: message types, error codes, the error exception.

Shared by the server (`kit`) and its connections (`peer`); depends on nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

JsonObject = dict[str, Any]
RequestId = str | int
Send = Callable[[JsonObject], Awaitable[None]]
"""Writes one JSON-RPC message to some stream."""

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
RESOURCE_NOT_FOUND: Final = -32002


class JsonRpcError(Exception):
    """An error answer to a request (raised by handlers, or received for a server-initiated request)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> JsonObject:
        error: JsonObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_message(request_id: RequestId | None, code: int, message: str, data: Any = None) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "error": JsonRpcError(code, message, data).to_error()}
