"""The `_meta` keys of the 2026-07-28 envelope and results (the `io.modelcontextprotocol/` namespace), and
the hub's own few (`onemcp/`).

Vocabulary only: who writes or reads them is the era bridge (upstream/era.py), the modern
endpoint (downstream/modern.py), listen streams and the CLI's modern client.
"""

from __future__ import annotations

PREFIX = "io.modelcontextprotocol/"
PROTOCOL_VERSION = PREFIX + "protocolVersion"
CLIENT_CAPABILITIES = PREFIX + "clientCapabilities"
CLIENT_INFO = PREFIX + "clientInfo"
LOG_LEVEL = PREFIX + "logLevel"
SERVER_INFO = PREFIX + "serverInfo"
SUBSCRIPTION_ID = PREFIX + "subscriptionId"
# what a 2026-07-28 request carries about its client, in every request
ENVELOPE = (PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL)

# The hub's own keys (its `onemcp/` prefix), where a merged answer must say what it could not merge.
# A merged `tasks/list`: the servers (as shown) whose tasks are left out of it, all or some (no answer in time,
# or a failure); absent when none is.
SERVERS_LEFT_OUT = "onemcp/serversLeftOut"
