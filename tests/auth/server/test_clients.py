"""auth/server/clients.py: a Client ID Metadata Document is fetched from the address its host was checked at (not
resolved again, TLS verified for the name, no proxy), and a transport failure tells the caller nothing more.
(Registration and the other metadata-document rules: tests/auth/server/test_server_app.py.)"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from onemcp.auth.server import clients
from onemcp.auth.server.app import OAuthServer
from onemcp.http import fetch as fetch_module
from support.certs import self_signed

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:9"  # in-process: never connected to
REDIRECT = "http://127.0.0.1:5173/callback"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
NAME = "rebind.example"  # the certificate's name; resolved only by the test's resolver


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    server = OAuthServer(tmp_path / "oauth.db", ISSUER, f"{ISSUER}/mcp", scopes_supported=["mcp"], consent="auto")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER) as http:
            yield http
    finally:
        server.close()


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A certificate for NAME, which the hub's fetches trust; the party's TLS context."""
    serving = self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", NAME)
    trusting = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    monkeypatch.setattr(fetch_module, "tls_context", lambda: trusting)
    return serving


@asynccontextmanager
async def party(tls: ssl.SSLContext, hosts: list[str]) -> AsyncIterator[int]:
    """A loopback https party answering any GET with the metadata document of the client_id it was asked for
    (Host and path); yields its port and records each request's Host in `hosts`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            path = head.split(" ")[1]
            host = next(
                line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("host:")
            )
            hosts.append(host)
            body = orjson.dumps({"client_id": f"https://{host}{path}", "redirect_uris": [REDIRECT]})
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n")
            writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # (a client that refused the certificate)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """The system resolver, where each name of the returned table answers its next address in turn (and then
    does not resolve); loopback counts as public, as the party is on it."""
    real = socket.getaddrinfo
    table: dict[str, list[str]] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in table:
            return real(host, port, *args, **kwargs)
        if not table[name]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(table[name].pop(0), port, *args, **kwargs)

    public = clients.is_public
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(clients, "is_public", lambda address: address == "127.0.0.1" or public(address))
    for variable in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens: a fetch through it fails
    yield table


async def authorize(http: httpx.AsyncClient, client_id: str) -> httpx.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s"}
    return await http.get(
        "/oauth/authorize", params={**params, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    )


async def test_the_document_is_fetched_from_the_address_checked_not_a_second_answer_and_not_by_proxy(
    hub: httpx.AsyncClient, tls: ssl.SSLContext, resolver: dict[str, list[str]]
) -> None:
    """The fetch resolved the name again: one that answered a public address to the check and 10.x to the fetch
    reached the hub's own network (DNS rebinding). Here the second answer is none at all: fetched anyway,
    from the address checked, TLS verified for the name, Host naming it; and not through $HTTPS_PROXY."""
    hosts: list[str] = []
    async with party(tls, hosts) as port:
        resolver[NAME] = ["127.0.0.1"]  # once
        with anyio.fail_after(15):
            r = await authorize(hub, f"https://{NAME}:{port}/client.json")
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(REDIRECT + "?code=")
    assert hosts == [f"{NAME}:{port}"] and resolver[NAME] == []


async def test_any_transport_failure_is_one_message_that_tells_refused_from_tls_from_nothing(
    hub: httpx.AsyncClient, tls: ssl.SSLContext, resolver: dict[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The error page said "connection refused", "certificate verify failed" and the like: a port scanner of
    wherever the name led, for anyone who can reach the hub. One message now; the details in the hub's log."""
    caplog.set_level(logging.INFO, "onemcp.auth")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    shut = closed.getsockname()[1]
    closed.close()  # a port nobody listens on: refused
    async with party(tls, []) as port:
        resolver["wrong.example"] = ["127.0.0.1"]  # a certificate for another name
        resolver["shut.example"] = ["127.0.0.1"]
        with anyio.fail_after(15):
            pages = [
                await authorize(hub, f"https://wrong.example:{port}/client.json"),
                await authorize(hub, f"https://shut.example:{shut}/client.json"),
            ]
    for r, host in zip(pages, [f"wrong.example:{port}", f"shut.example:{shut}"], strict=True):
        assert r.status_code == 400, r.text
        assert f"https://{host}/client.json could not be fetched</p>" in r.text, r.text
    assert "certificate" in caplog.text.lower()  # the hub's log says why
