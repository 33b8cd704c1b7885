"""auth/server/lookup.py: a client metadata document's host is looked up on threads of its own, and only a few
fetches are in flight at once, each counted until its lookup thread has returned."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.server import clients, lookup
from onemcp.auth.server.app import OAuthServer

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:9"  # in-process: never connected to
REDIRECT = "http://127.0.0.1:5173/callback"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    server = OAuthServer(tmp_path / "oauth.db", ISSUER, f"{ISSUER}/mcp", scopes_supported=["mcp"], consent="auto")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url=ISSUER) as http:
            yield http
    finally:
        server.close()


async def authorize(http: httpx.AsyncClient, client_id: str) -> httpx.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s"}
    return await http.get(
        "/oauth/authorize", params={**params, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    )


async def test_names_whose_dns_never_answers_take_a_few_fetches_and_never_the_hubs_own_lookups(
    hub: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can name a client_id whose host's DNS never answers: each lookup held one of the event loop's
    few getaddrinfo threads until the resolver gave up (the 5 s deadline freed the request, not the thread),
    so a handful of such links stalled every other lookup of the hub (upstream connects, Redis). Now at most
    MAX_FETCHES are in flight, each until its thread returns, on threads of their own; past that, refused at once."""
    real = socket.getaddrinfo
    answer = threading.Event()
    stalled: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".stall.example"):
            stalled.append(name)
            answer.wait(20)  # (the test sets it at its end: the threads return)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(clients, "METADATA_TIMEOUT", 0.05)
    try:
        with anyio.fail_after(15):
            for n in range(lookup.MAX_FETCHES):
                r = await authorize(hub, f"https://h{n}.stall.example/client.json")
                assert r.status_code == 400 and "its host resolves to no public address" in r.text, r.text
        with anyio.fail_after(5):  # the hub's own lookups go on meanwhile (the loop's executor: 6 on 2 cores)
            assert await anyio.getaddrinfo("localhost", 80)
        with anyio.fail_after(15):
            for n in range(2):
                r = await authorize(hub, f"https://more{n}.stall.example/client.json")
                assert r.status_code == 400, r.text
                assert "as many client metadata documents as it will at once (8); try again shortly" in r.text
        assert len(stalled) == lookup.MAX_FETCHES  # the refused ones were not looked up
    finally:
        answer.set()
    with anyio.fail_after(15):  # the threads returned: their places are free again
        while lookup.FETCHES.in_flight:
            await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (worker threads returning)
        r = await authorize(hub, "https://again.stall.example/client.json")
    assert "its host resolves to no public address" in r.text, r.text


async def test_a_slot_is_given_back_by_its_last_holder_and_a_lookup_given_up_before_it_began() -> None:
    slots = lookup.FetchSlots(1)
    slot = slots.take()
    assert slot is not None and slots.take() is None
    slot.hold()  # (a lookup thread it started)
    slot.release()  # the request ends: the thread still counts
    assert slots.take() is None
    slot.release()  # the thread returns
    assert slots.in_flight == 0

    taken = slots.take()
    assert taken is not None
    with anyio.CancelScope() as scope:
        scope.cancel()  # given up before its thread could begin: the slot is not left held
        await lookup.addresses("never.example", 443, taken, 5)
    taken.release()
    assert slots.in_flight == 0
