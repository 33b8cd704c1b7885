"""A small document fetched from another party (an issuer's JWKS, a client's metadata document).

The whole exchange is bounded by its deadline (httpx's timeout is per read: a party that drips its
answer a byte at a time would hold the fetch for as long as it liked), the body by its size, and the
TLS context is built once per process: building one reads the CA bundle, some 20-40 ms of the event
loop's time for every fetch, which any caller naming a new client metadata URL could ask for. A fetch
may be pinned to an address already looked up and checked (`connect_to`): the name is not resolved again
(a name that answers a public address to the check and an internal one to the fetch), and TLS is still
verified for the name; a pinned fetch never goes through $HTTP_PROXY/$HTTPS_PROXY.
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


async def fetch(
    url: str,
    *,
    within: float,
    limit: int,
    headers: dict[str, str],
    follow_redirects: bool,
    connect_to: str | None = None,
) -> bytes:
    """The body of a 200 answer to `GET url`, at most `limit` bytes, whole within `within` seconds; from
    the address `connect_to` when given (directly, the URL's host named in Host and verified by TLS)."""
    body = bytearray()
    extensions: dict[str, str] = {}
    try:
        if connect_to is not None:
            if follow_redirects:
                raise ValueError("a fetch pinned to an address follows no redirect")
            url, headers, extensions = _pinned(httpx.URL(url), connect_to, headers)
        client = httpx.AsyncClient(
            timeout=within, follow_redirects=follow_redirects, verify=tls_context(), trust_env=connect_to is None
        )
        with anyio.fail_after(within):
            async with (
                client as http,
                http.stream("GET", url, headers=headers, extensions=extensions) as response,
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


def _pinned(url: httpx.URL, address: str, headers: dict[str, str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """`url` with its host replaced by `address`, and the Host header and TLS server name (SNI, and the name
    the certificate must carry) that keep naming the original host."""
    name = url.raw_host.decode("ascii")  # an IPv6 literal without its brackets: the TLS server name
    shown = f"[{name}]" if ":" in name else name  # as a Host header writes it (RFC 9110 §7.2, RFC 3986 §3.2.2)
    host = shown if url.port is None else f"{shown}:{url.port}"
    return str(url.copy_with(host=address)), {**headers, "host": host}, {"sni_hostname": name}
