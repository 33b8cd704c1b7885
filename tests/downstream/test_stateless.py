"""The 2026-07-28 core both entry points share: which requests are of the era, their checks, their result shape.

The wire around it is tested with real clients: tests/downstream/test_modern.py (POST /mcp) and
tests/downstream/test_stdio_serve.py (`serve --transport stdio`).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from onemcp.auth.access import STDIO
from onemcp.auth.principal import ANONYMOUS
from onemcp.config.model import HubConfig
from onemcp.downstream import stateless
from onemcp.hub.core import Hub
from onemcp.protocol.errors import HubError
from onemcp.protocol.jsonrpc import Message

VERSION = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
ENVELOPE = {VERSION: "2026-07-28", CAPS: {}}


def request(method: str, meta: Any = None, **params: Any) -> Message:
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest.mark.parametrize(
    ("msg", "modern"),
    [
        (request("tools/call", ENVELOPE, name="x"), True),
        (request("server/discover"), True),  # exists only in 2026-07-28: refused there if it lacks the envelope
        (request("tools/list", {VERSION: "2099-01-01"}), True),  # refused as unsupported, in the era's terms
        (request("tools/list", {VERSION: 7}), True),
        (request("tools/call", {"progressToken": 1}, name="x"), False),  # legacy `_meta` carries tokens
        (request("tools/list"), False),
        (request("tools/list", {VERSION: "2025-11-25"}), False),
        (request("initialize", ENVELOPE, protocolVersion="2025-11-25"), False),  # the handshake, whatever it carries
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, False),
    ],
)
def test_which_requests_claim_the_2026_era(msg: Message, modern: bool) -> None:
    assert stateless.claims_modern(msg) is modern


def test_the_envelope_needs_a_version_and_capabilities() -> None:
    assert stateless.envelope({"_meta": ENVELOPE}) is not None
    refused: list[object] = [None, {}, {"_meta": []}, {"_meta": {VERSION: "2026-07-28"}}, {"_meta": {CAPS: {}}}]
    for params in refused:
        with pytest.raises(HubError) as err:
            stateless.envelope(params)
        assert err.value.code == -32602


def test_an_unsupported_version_names_the_supported_ones() -> None:
    stateless.check_version(dict(ENVELOPE))
    with pytest.raises(HubError) as err:
        stateless.check_version({VERSION: "2099-01-01", CAPS: {}})
    assert err.value.code == -32022
    assert err.value.data["requested"] == "2099-01-01" and "2026-07-28" in err.value.data["supported"]


@pytest.mark.parametrize("method", ["ping", "initialize", "logging/setLevel", "resources/subscribe", "tasks/get"])
def test_legacy_only_methods_do_not_exist_in_the_era(method: str) -> None:
    with pytest.raises(HubError) as err:
        stateless.check_method(method)
    assert err.value.to_error() == {"code": -32601, "message": f"Method not found: {method}"}


def test_params_the_hub_reads_itself_are_checked() -> None:
    stateless.check_params({"inputResponses": {"a": {}}, "_meta": {**ENVELOPE, LOG_LEVEL: "info"}})
    for params in (
        {"inputResponses": [], "_meta": ENVELOPE},
        {"inputResponses": {"a": 1}, "_meta": ENVELOPE},
        {"_meta": {**ENVELOPE, LOG_LEVEL: "loud"}},
    ):
        with pytest.raises(HubError) as err:
            stateless.check_params(params)
        assert err.value.code == -32602


def test_a_reply_gets_the_eras_shape() -> None:
    hub = Hub(HubConfig.model_validate({}))
    requests = stateless.ModernRequests(hub, "t")
    session = requests.session(hub.access(ANONYMOUS, STDIO), dict(ENVELOPE))
    assert session.ephemeral and session.id == "t-1" and session.protocol_version == "2026-07-28"
    read = requests.decorate(
        "resources/read", {"jsonrpc": "2.0", "id": 1, "result": {"contents": [], "_meta": {"k": 1}}}
    )
    assert read["result"]["resultType"] == "complete" and read["result"]["cacheScope"] == "private"
    assert read["result"]["_meta"]["k"] == 1 and read["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]
    call = requests.decorate("tools/call", {"jsonrpc": "2.0", "id": 1, "result": {"content": []}})
    assert "ttlMs" not in call["result"] and call["result"]["resultType"] == "complete"


@pytest.mark.parametrize(
    ("upstream", "shown"),
    [
        ({"ttlMs": 123456, "cacheScope": "public"}, {"ttlMs": 123456, "cacheScope": "private"}),
        ({"ttlMs": -5, "cacheScope": "everyone"}, {"ttlMs": 0, "cacheScope": "private"}),
        ({"ttlMs": True}, {"ttlMs": 0, "cacheScope": "private"}),
        ({"ttlMs": 1.5}, {"ttlMs": 0, "cacheScope": "private"}),
    ],
)
def test_a_reads_caching_hints_are_valid_and_private_whatever_the_upstream_said(
    upstream: dict[str, Any], shown: dict[str, Any]
) -> None:
    """caching.mdx: `ttlMs` >= 0, `cacheScope` public or private; the hub adds who may read what."""
    requests = stateless.ModernRequests(Hub(HubConfig.model_validate({})), "t")
    read = requests.decorate("resources/read", {"jsonrpc": "2.0", "id": 1, "result": {"contents": [], **upstream}})
    assert {k: read["result"][k] for k in ("ttlMs", "cacheScope")} == shown


def test_an_input_required_result_carries_no_caching_hints() -> None:
    requests = stateless.ModernRequests(Hub(HubConfig.model_validate({})), "t")
    interim = {"resultType": "input_required", "inputRequests": {}, "requestState": "s", "ttlMs": 5}
    read = requests.decorate("resources/read", {"jsonrpc": "2.0", "id": 1, "result": interim})
    assert not {"ttlMs", "cacheScope"} & set(read["result"])


@pytest.mark.anyio
async def test_only_progress_and_logs_go_before_a_reply() -> None:
    seen: list[Message] = []

    async def emit(msg: Message) -> None:
        seen.append(msg)

    related = stateless.scoped(emit)
    with anyio.fail_after(5):
        for method in ("notifications/progress", "notifications/message", "sampling/createMessage"):
            await related({"jsonrpc": "2.0", "method": method})
    assert [m["method"] for m in seen] == ["notifications/progress", "notifications/message"]
