"""MCP method vocabulary the hub reasons with: list kinds, log levels, what a server may ask a client.

Vocabulary only, no behaviour: the catalog, the connections, sessions and the reverse path
all read these tables.
"""

from __future__ import annotations

# list kind (the result key) -> (its list method, its list_changed notification)
KINDS: dict[str, tuple[str, str]] = {
    "tools": ("tools/list", "notifications/tools/list_changed"),
    "prompts": ("prompts/list", "notifications/prompts/list_changed"),
    "resources": ("resources/list", "notifications/resources/list_changed"),
    "resourceTemplates": ("resources/templates/list", "notifications/resources/list_changed"),
}
KIND_BY_METHOD = {method: kind for kind, (method, _) in KINDS.items()}

# `logging/setLevel` levels (RFC 5424 severities), least severe first
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

# server->client request -> the client capability it needs
REVERSE_CAPABILITY = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
