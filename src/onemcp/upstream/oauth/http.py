"""HTTP for the hub's OAuth client: every exchange bounded in time and size, every URL checked.

Owns the rules that keep an authorization server (or whoever a challenge points at) from
stalling or flooding the hub: a deadline for the whole exchange (not per read), a cap on the
body read, no redirects followed, and which URLs may be contacted at all (https, or http on a
loopback host). `oauth_discovery` and `oauth_flow` make their requests through `request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson

from onemcp.http.fetch import tls_context
from onemcp.http.guard import is_loopback

DEADLINE = 20.0  # one whole exchange: connect, send, read the body
BODY_MAX = 256 * 1024


class OAuthClientError(Exception):
    """Something the hub's OAuth client cannot get past; the message says what."""


class OAuthHttpError(OAuthClientError):
    """The exchange could not be made (refused URL, network, deadline, oversized body): maybe transient."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: httpx.Headers

    def json(self) -> Any:
        """The body as JSON; None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode(errors="replace")


def check_url(url: str, what: str) -> str:
    """`url` if the hub may contact it: https, or http on a loopback host (local servers, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise OAuthHttpError(f"{what} {url!r} is not an https URL (http is only accepted on loopback)")


def client() -> httpx.AsyncClient:
    # the TLS context built once (`http.fetch.tls_context`): building it is 20-40 ms of the event loop
    return httpx.AsyncClient(timeout=DEADLINE, follow_redirects=False, verify=tls_context())


async def request(http: httpx.AsyncClient, method: str, url: str, what: str, **kwargs: Any) -> Reply:
    check_url(url, what)
    try:
        with anyio.fail_after(DEADLINE):
            async with http.stream(method, url, **kwargs) as r:
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > BODY_MAX:
                        raise OAuthHttpError(f"{what} {url} sent more than {BODY_MAX} bytes")
                return Reply(r.status_code, body, r.headers)
    except TimeoutError:
        raise OAuthHttpError(f"{what} {url} did not answer within {DEADLINE:g}s") from None
    except httpx.HTTPError as exc:
        raise OAuthHttpError(f"{what} {url} failed: {exc}") from None
