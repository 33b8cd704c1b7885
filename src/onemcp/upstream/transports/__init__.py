"""How bytes reach an upstream: stdio, Streamable HTTP (our HTTP/1.1 client), legacy HTTP+SSE."""
