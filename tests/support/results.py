"""What tests read out of the SDK client's results."""

from __future__ import annotations

import mcp_types as types


def text_of(result: types.CallToolResult) -> str:
    """The text of a tool result's first content item (which must be text)."""
    item = result.content[0]
    assert isinstance(item, types.TextContent)
    return item.text
