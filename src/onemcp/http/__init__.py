"""HTTP plumbing under everything that serves: ASGI types and helpers, the Host/Origin guard,
the hub's HTTP/1.1 server."""
