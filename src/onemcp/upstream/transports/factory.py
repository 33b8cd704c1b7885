"""Which transport carries an upstream: the factory the pool and the per-session connections receive.

`make_transport` picks by config (stdio, Streamable HTTP, legacy HTTP+SSE); tests and embedders pass
their own `TransportFactory` (an in-memory one, say) to `Hub(transports=...)`.
"""

from __future__ import annotations

from collections.abc import Callable

from onemcp.config.model import ServerConfig
from onemcp.upstream.oauth.registry import UpstreamAuth
from onemcp.upstream.transports.base import Transport
from onemcp.upstream.transports.http import StreamableHttpTransport
from onemcp.upstream.transports.sse import SseTransport
from onemcp.upstream.transports.stdio import StdioTransport

TransportFactory = Callable[[str, ServerConfig, UpstreamAuth | None, ServerConfig | None], Transport]
"""(server name, the config to connect to, the hub's upstream OAuth, the server's own config) -> a transport."""


def make_transport(
    name: str, config: ServerConfig, auth: UpstreamAuth | None = None, server: ServerConfig | None = None
) -> Transport:
    """The transport for `config`; HTTP ones carry the hub's own OAuth credential when they may need one
    (the server's: `server` is its config when `config` is one of its replicas)."""
    if config.transport == "stdio":
        return StdioTransport(name, config)
    credential = auth.for_server(name, server or config) if auth is not None else None
    if config.transport == "sse":
        return SseTransport(name, config, credential)
    return StreamableHttpTransport(name, config, credential)
