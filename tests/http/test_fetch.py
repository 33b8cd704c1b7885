"""http/fetch.py: a small document fetched whole within its deadline, its body capped, one TLS context."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from onemcp.http.fetch import FetchFailed, fetch, tls_context
from support.credentials import dripping_party, loopback_asgi

pytestmark = pytest.mark.anyio
HEADERS = {"accept": "application/json"}


def answering(status: int, body: bytes) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": body})

    return app


async def test_a_document_its_status_and_its_size() -> None:
    with anyio.fail_after(20):
        async with loopback_asgi(answering(200, b'{"keys": []}')) as base:
            got = await fetch(f"{base}/doc", within=5, limit=100, headers=HEADERS, follow_redirects=False)
            assert got == b'{"keys": []}'
            with pytest.raises(FetchFailed, match="larger than 5 bytes") as too_large:
                await fetch(f"{base}/doc", within=5, limit=5, headers=HEADERS, follow_redirects=False)
            assert too_large.value.kind == "too_large"
        async with loopback_asgi(answering(404, b"no")) as base:
            with pytest.raises(FetchFailed, match="HTTP 404") as status:
                await fetch(f"{base}/doc", within=5, limit=100, headers=HEADERS, follow_redirects=False)
            assert status.value.kind == "status"


async def test_a_party_that_drips_its_answer_is_cut_off_at_the_deadline() -> None:
    with anyio.fail_after(20):
        async with dripping_party() as (base, _):
            with pytest.raises(FetchFailed, match=r"no whole answer within 0\.3s") as cut:
                await fetch(f"{base}/doc", within=0.3, limit=1000, headers=HEADERS, follow_redirects=False)
            assert cut.value.kind == "timeout"


async def test_an_unreachable_party_and_one_tls_context() -> None:
    with anyio.fail_after(20), pytest.raises(FetchFailed) as failed:
        await fetch("http://127.0.0.1:9/doc", within=5, limit=100, headers=HEADERS, follow_redirects=False)
    assert failed.value.kind == "transport" and str(failed.value)
    assert tls_context() is tls_context()  # built once: each build reads the CA bundle (20-40 ms)


async def test_a_fetch_pinned_to_an_address_names_the_host_and_goes_there_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`connect_to`: the name is not resolved again (it resolves nowhere here), the Host header still names it,
    and $HTTP_PROXY is not used (nothing listens there)."""
    seen: list[dict[bytes, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    with anyio.fail_after(20):
        async with loopback_asgi(app) as base:
            port = base.rsplit(":", 1)[1]
            url = f"http://doc.invalid:{port}/doc"
            got = await fetch(url, within=5, limit=100, headers=HEADERS, follow_redirects=False, connect_to="127.0.0.1")
            assert got == b"{}" and seen[0][b"host"] == f"doc.invalid:{port}".encode()
            with pytest.raises(ValueError, match="follows no redirect"):
                await fetch(url, within=5, limit=100, headers=HEADERS, follow_redirects=True, connect_to="127.0.0.1")


async def test_a_pinned_fetch_of_an_ipv6_literal_names_it_in_brackets() -> None:
    """A client_id such as https://[2001:db8::1]/doc (a public IPv6 address is allowed) is fetched pinned to
    that address: its Host header is `[2001:db8::1]`, as RFC 9110 writes an IPv6 literal, not the bare address
    (which a server reads as a malformed Host, or a host and a port)."""
    seen: list[dict[bytes, bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    with anyio.fail_after(20):
        async with loopback_asgi(app) as base:
            port = base.rsplit(":", 1)[1]
            url = f"http://[2001:db8::1]:{port}/doc"
            got = await fetch(url, within=5, limit=100, headers=HEADERS, follow_redirects=False, connect_to="127.0.0.1")
            assert got == b"{}" and seen[0][b"host"] == f"[2001:db8::1]:{port}".encode()
