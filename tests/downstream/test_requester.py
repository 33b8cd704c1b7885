"""The front doors' requester decision: view, exposure and template context, with the refusals' statuses."""

from __future__ import annotations

from typing import Any

import pytest

from onemcp.auth.access import LEGACY_HTTP, MODERN_HTTP
from onemcp.auth.principal import ANONYMOUS, Principal
from onemcp.config.context import HEADER, encode
from onemcp.config.model import HubConfig
from onemcp.downstream.requester import Refused, decide
from onemcp.hub.core import Hub

SECRET = b"s" * 64

pytestmark = pytest.mark.anyio


def scope(query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "query_string": query.encode(), "headers": raw}


@pytest.fixture
def hub() -> Hub:
    hub = Hub(HubConfig.model_validate({"mcpTemplates": {"t": {"command": "x", "args": ["{{ project.path }}"]}}}))
    hub.context_secret = SECRET
    return hub


async def test_no_context_is_untrusted_and_no_error(hub: Hub) -> None:
    access = await decide(hub, scope(), ANONYMOUS, LEGACY_HTTP)
    assert access.context is None and not access.trusted


async def test_a_plain_request_is_decided_without_reading_a_view(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """No query string and no template context (a plain client's every 2026-07-28 request, each decided
    afresh): the decision is the hub's with no view, made without parsing a view or an exposure (nor the
    config's tags a view may name), and the same as with them."""
    restricted = Principal("key:dev", frozenset({"mcp", "server:a", "tool:b/x"}), kind="key")
    full = {p.id: await decide(hub, scope("exposure=search"), p, MODERN_HTTP) for p in (ANONYMOUS, restricted)}

    def unread(query: bytes | str) -> None:
        raise AssertionError(f"a view was read for query {query!r}")

    monkeypatch.setattr(hub, "view", unread)
    monkeypatch.setattr(hub, "exposure_asked", unread)
    for principal in (ANONYMOUS, restricted):
        access = await decide(hub, scope(), principal, MODERN_HTTP)
        assert access == hub.access(principal, MODERN_HTTP)
        assert access.view is None and access.exposure is None and access.query == "" and not access.trusted
        assert access.reach == full[principal.id].reach  # what it reaches is what the full reading decides


async def test_a_signed_context_is_trusted(hub: Hub) -> None:
    access = await decide(hub, scope(headers=encode({"project": {"path": "/p"}}, SECRET)), ANONYMOUS, LEGACY_HTTP)
    assert access.trusted and access.context == {"project": {"path": "/p"}}


async def test_an_unsigned_context_needs_a_credential_with_scope_templates(hub: Hub) -> None:
    unsigned = encode({"project": {"path": "/p"}}, None)
    with pytest.raises(Refused, match="must be signed") as refused:
        await decide(hub, scope(headers=unsigned), ANONYMOUS, LEGACY_HTTP)  # no credential at all: never enough
    assert refused.value.status == 403
    key = Principal("key:ops", frozenset({"mcp", "templates"}), kind="key")
    assert (await decide(hub, scope(headers=unsigned), key, LEGACY_HTTP)).trusted
    plain = Principal("key:dev", frozenset({"mcp"}), kind="key")
    with pytest.raises(Refused):
        await decide(hub, scope(headers=unsigned), plain, LEGACY_HTTP)


async def test_bad_input_statuses(hub: Hub) -> None:
    with pytest.raises(Refused) as bad_view:
        await decide(hub, scope("exposure=everything"), ANONYMOUS, LEGACY_HTTP)
    assert bad_view.value.status == 400
    with pytest.raises(Refused) as garbage:
        await decide(hub, scope(headers={HEADER: "%%%"}), ANONYMOUS, LEGACY_HTTP)
    assert garbage.value.status == 403 and "base64url" in garbage.value.message


async def test_with_replicas_only_an_unknown_preset_is_looked_for_again_in_redis() -> None:
    """A preset this replica does not know may have been made through another a moment ago: the replicas'
    presets are read from Redis before the 400. A selector wrong in any other way (a bad filter, a tag no
    server has) is wrong at every replica: it cost a Redis read (one at a time, under the presets' lock) per
    request, which a client repeating it could queue without end."""

    class Shared:
        def __init__(self) -> None:
            self.asked = 0

        async def presets_now(self) -> bool:
            self.asked += 1
            return False

    hub = Hub(HubConfig.model_validate({"mcpServers": {"a": {"command": "x", "tags": ["dev"]}}}))
    shared = Shared()
    hub.replicas = shared  # type: ignore[assignment]
    for query in ("filter=dev+(", "tags=nosuch", "filter=dev&tags=dev", "exposure=everything"):
        with pytest.raises(Refused):
            await decide(hub, scope(query), ANONYMOUS, LEGACY_HTTP)
    assert shared.asked == 0
    with pytest.raises(Refused, match="unknown preset"):
        await decide(hub, scope("preset=new"), ANONYMOUS, LEGACY_HTTP)
    assert shared.asked == 1
