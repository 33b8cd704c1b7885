"""What tests read out of the SDK client's results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types


def text_of(result: types.CallToolResult) -> str:
    """The text of a tool result's first content item (which must be text)."""
    item = result.content[0]
    assert isinstance(item, types.TextContent)
    return item.text


class Heard:
    """The notifications of one kind a client's message handler was given, each as `value` reads it
    (`came` is set once one did). Pass it as the SDK client's `message_handler`."""

    def __init__(self, kind: type[Any], value: Callable[[Any], str]) -> None:
        self.kind, self.value = kind, value
        self.values: list[str] = []
        self.came = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, self.kind):
            self.values.append(self.value(message))
            self.came.set()
