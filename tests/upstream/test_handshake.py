"""The handshake's steps (`upstream/handshake.py`) against a scripted peer: which era, what it learns.

End to end over real servers of each era: tests/test_hub_e2e.py and tests/test_bridging.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest

from onemcp.config.model import ServerConfig
from onemcp.protocol.errors import UpstreamError, UpstreamReplied
from onemcp.protocol.meta import SERVER_INFO
from onemcp.upstream.call import Requester
from onemcp.upstream.era import MODERN
from onemcp.upstream.handshake import handshake

pytestmark = pytest.mark.anyio


class FakeTransport:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.protocol_version: str | None = "unset"


class Peer:
    """A connection whose upstream answers from `answers` (method -> result, or an exception to raise)."""

    def __init__(self, answers: dict[str, Any], *, protocol: str = "auto", kind: str = "stdio") -> None:
        self.name = "srv"
        self.config = ServerConfig.model_validate({"command": "x", "protocol": protocol})
        self.owner: Requester | None = None
        self.transport: Any = FakeTransport(kind)
        self.era = "legacy"
        self.protocol_version: str | None = None
        self.capabilities: dict[str, Any] = {}
        self.server_info: dict[str, Any] = {}
        self.instructions: str | None = None
        self.answers = answers
        self.sent: list[tuple[str, str, str | None]] = []  # (method, era at the time, transport's version)

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, limit: float | None = None
    ) -> dict[str, Any]:
        self.sent.append((method, self.era, self.transport.protocol_version))
        answer = self.answers.get(method, UpstreamReplied(self.name, method, {"code": -32601, "message": "no"}))
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, dict)
        return answer

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.sent.append((method, self.era, self.transport.protocol_version))


INITIALIZED = {
    "protocolVersion": "2025-06-18",
    "capabilities": {"tools": {}},
    "serverInfo": {"name": "old", "version": "1"},
    "instructions": "use me",
}


async def test_a_server_that_answers_discover_is_modern_and_is_not_initialized() -> None:
    discovered = {
        "supportedVersions": [MODERN],
        "capabilities": {"prompts": {}},
        "_meta": {SERVER_INFO: {"name": "new", "version": "2"}},
    }
    peer = Peer({"server/discover": discovered})
    await handshake(peer)
    assert peer.sent == [("server/discover", "modern", MODERN)]  # the probe goes out in the modern envelope
    assert (peer.era, peer.protocol_version, peer.transport.protocol_version) == ("modern", MODERN, MODERN)
    assert peer.capabilities == {"prompts": {}}
    assert peer.server_info == {"name": "new", "version": "2"}
    assert peer.instructions is None


async def test_a_server_that_refuses_discover_is_initialized_in_the_legacy_era() -> None:
    peer = Peer({"initialize": INITIALIZED})
    await handshake(peer)
    assert [method for method, _, _ in peer.sent] == ["server/discover", "initialize", "notifications/initialized"]
    assert peer.sent[1][1:] == ("legacy", None)  # initialize carries no version header
    assert (peer.era, peer.protocol_version, peer.transport.protocol_version) == ("legacy", "2025-06-18", "2025-06-18")
    assert peer.capabilities == {"tools": {}}
    assert peer.server_info == {"name": "old", "version": "1"}
    assert peer.instructions == "use me"


async def test_discover_listing_no_version_of_ours_falls_back_to_initialize() -> None:
    peer = Peer({"server/discover": {"supportedVersions": ["2099-01-01"]}, "initialize": INITIALIZED})
    await handshake(peer)
    assert peer.era == "legacy"


async def test_an_sse_transport_and_a_pinned_legacy_era_never_probe() -> None:
    for peer in (Peer({"initialize": INITIALIZED}, kind="sse"), Peer({"initialize": INITIALIZED}, protocol="legacy")):
        await handshake(peer)
        assert [method for method, _, _ in peer.sent] == ["initialize", "notifications/initialized"]


async def test_a_pinned_modern_era_fails_clearly_when_discover_fails() -> None:
    peer = Peer({}, protocol="modern")
    with pytest.raises(UpstreamError) as info:
        await handshake(peer)
    assert str(info.value) == "[srv] server/discover failed: no (-32601)"  # the server and the failure said once
    peer = Peer({"server/discover": {"supportedVersions": "all"}}, protocol="modern")
    with pytest.raises(UpstreamError, match="server/discover lists no supported version: 'all'"):
        await handshake(peer)
    assert [method for method, _, _ in peer.sent] == ["server/discover"]


async def test_an_unsupported_legacy_version_fails_the_handshake() -> None:
    peer = Peer({"initialize": {**INITIALIZED, "protocolVersion": "1999-01-01"}})
    with pytest.raises(UpstreamError, match="unsupported protocol version '1999-01-01'"):
        await handshake(peer)
    assert peer.sent[-1][0] == "initialize"  # never told it is initialized


async def test_a_pinned_modern_era_whose_discover_never_answers_says_so() -> None:
    class Silent(Peer):
        async def request(
            self, method: str, params: dict[str, Any] | None = None, *, limit: float | None = None
        ) -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

    peer = Silent({}, protocol="modern")
    peer.config = ServerConfig.model_validate({"command": "x", "protocol": "modern", "startupTimeout": 0.01})
    with anyio.fail_after(5), pytest.raises(UpstreamError) as info:
        await handshake(peer)
    assert str(info.value) == "[srv] server/discover failed: no answer within 0.01s"  # was "... failed: " (empty)


async def test_what_is_kept_of_a_server_s_info_and_instructions_is_bounded() -> None:
    """A server's serverInfo and instructions were kept whole (/health showed serverInfo: a 5 MB one made
    every /health reply 5 MB): its known fields are kept, each bounded; unknown ones are dropped."""
    from onemcp.upstream import handshake as kept

    huge = "x" * 1_000_000
    icon = {"src": "https://example.com/i.png", "mimeType": "image/png", "sizes": ["48x48"], "theme": "dark"}
    info = {
        "name": "n" * 1000,
        "title": "Title",
        "version": "1.0",
        "description": huge,
        "websiteUrl": "https://example.com/" + huge,
        "icons": [{"src": huge}, {"nosrc": 1}, {**icon, "junk": huge}, *[icon] * 100],
        "vendorJunk": {"blob": huge},
    }
    peer = Peer({"initialize": {**INITIALIZED, "serverInfo": info, "instructions": huge}})
    await handshake(peer)
    assert len(orjson.dumps(peer.server_info)) < 64 * 1024 and len(peer.instructions or "") <= 64 * 1024
    assert peer.server_info == {
        "name": "n" * kept.MAX_INFO_TEXT,
        "title": "Title",
        "version": "1.0",
        "description": "x" * kept.MAX_INFO_DESCRIPTION,
        "icons": [icon] * kept.MAX_ICONS,  # the one whose src is too long, and the one without, dropped
    }
    assert peer.instructions == "x" * kept.MAX_INSTRUCTIONS
    # the same for a 2026-07-28 server's, from server/discover's _meta; a short websiteUrl is kept
    discovered = {"supportedVersions": [MODERN], "_meta": {SERVER_INFO: {"name": 7, "websiteUrl": "https://e.x"}}}
    peer = Peer({"server/discover": discovered})
    await handshake(peer)
    assert peer.server_info == {"websiteUrl": "https://e.x"}
