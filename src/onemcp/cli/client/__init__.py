"""The CLI's own client of a running hub: HTTP/1.1 and JSON-RPC."""
