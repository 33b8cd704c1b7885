"""A small document fetched from another party (an issuer's JWKS, a client's metadata document).

The whole exchange is bounded by its deadline (httpx's timeout is per read: a party that drips its
answer a byte at a time would hold the fetch for as long as it liked), the body by its size, and the
TLS context is built once per process: building one reads the CA bundle, some 20-40 ms of the event
loop's time for every fetch, which any caller naming a new client metadata URL could ask for.
Does not own what the document means, nor the callers' messages (`FetchFailed.kind` tells them apart).
"""

from __future__ import annotations

import functools
import ssl

import anyio
import httpx


class FetchFailed(Exception):
    """The document could not be fetched. `kind`: "status" (not a 200), "too_large", "timeout" (no whole
    answer within the deadline) or "transport" (connect, TLS, protocol); the message says why."""

    def __init__(self, message: str, kind: str = "transport") -> None:
        super().__init__(message)
        self.kind = kind


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context of every fetch (httpx's default: its CA bundle, SSL_CERT_FILE honoured)."""
    return httpx.create_ssl_context()


async def fetch(url: str, *, within: float, limit: int, headers: dict[str, str], follow_redirects: bool) -> bytes:
    """The body of a 200 answer to `GET url`, at most `limit` bytes, whole within `within` seconds."""
    body = bytearray()
    try:
        with anyio.fail_after(within):
            async with (
                httpx.AsyncClient(timeout=within, follow_redirects=follow_redirects, verify=tls_context()) as http,
                http.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    raise FetchFailed(f"HTTP {response.status_code}", "status")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchFailed(f"larger than {limit} bytes", "too_large")
    except TimeoutError:
        raise FetchFailed(f"no whole answer within {within:g}s", "timeout") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise FetchFailed(str(exc) or type(exc).__name__) from None
    return bytes(body)
