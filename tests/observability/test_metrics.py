"""/metrics is valid Prometheus text with bounded labels, and counts what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from fixtures.launch import fixture_command
from onemcp.config.model import HubConfig
from onemcp.observability.metrics import Metrics
from support.hub import running_hub
from support.inprocess import InProcessHub, fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio


def stdio(**extra: Any) -> dict[str, Any]:
    cmd = fixture_command()
    return {"command": cmd[0], "args": cmd[1:], **extra}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_requests_and_state(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {}}')
    config = {"mcpServers": {"a": stdio(), "slow": stdio(timeout=0.3)}}
    with anyio.fail_after(30):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient() as http:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                await c.call_tool("a__echo", {"message": "x"})
                await c.call_tool("a__echo", {"message": "y"})
                with pytest.raises(MCPError):
                    await c.call_tool("a__error", {})
                with pytest.raises(MCPError):
                    await c.call_tool("slow__sleep", {"seconds": 5})
                assert (await c.call_tool("a__fail", {})).is_error  # reached the tool, which failed
                for _ in range(2):
                    with pytest.raises(MCPError):
                        await c.call_tool("a__nosuch", {})  # answered by the hub: no such tool
                r = await http.get(f"{hub.base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("onemcp_upstream_requests_total", method="tools/call", server="a", outcome="ok") == 2
    assert value("onemcp_upstream_requests_total", method="tools/call", server="a", outcome="error") == 1
    assert value("onemcp_upstream_requests_total", method="tools/call", server="slow", outcome="timeout") == 1
    assert value("onemcp_upstream_requests_total", method="tools/call", server="a", outcome="tool_error") == 1
    assert value("onemcp_upstream_request_duration_seconds_count", method="tools/call", server="a") == 4
    not_found = [
        v
        for (n, labels), v in got.items()
        if n == "onemcp_answered_errors_total" and dict(labels)["method"] == "tools/call"
    ]
    assert not_found == [2]
    assert value("onemcp_upstream_up", server="a", transport="stdio") == 1
    assert value("onemcp_upstream_restarts_total", server="a") == 0
    assert value("onemcp_config_reloads_total", outcome="refused") == 0
    assert ("onemcp_sessions", ()) in got
    # bounded labels: only configured servers, only known methods
    servers = {dict(labels).get("server") for (_, labels) in got if dict(labels).get("server")}
    assert servers == {"a", "slow"}


def test_answered_error_codes_are_the_hubs_own_or_other() -> None:
    """An upstream chooses the code of its answer to one of the hub's requests: it must not grow series."""
    metrics = Metrics()
    for code in (-32602, 7, -31999, 123456789, -32602):
        metrics.answered_error("tools/call", code)
    metrics.answered_error("made/up", -32601)
    got = samples(metrics.render().decode())
    answered = {tuple(sorted(labels)): v for (n, labels), v in got.items() if n == "onemcp_answered_errors_total"}
    assert answered == {
        (("code", "-32602"), ("method", "tools/call")): 2,
        (("code", "other"), ("method", "tools/call")): 3,
        (("code", "-32601"), ("method", "other")): 1,
    }


def test_a_cancelled_request_is_counted_but_not_timed() -> None:
    """A request its client cancelled had no answer: the time its client waited is not a latency (a client
    that cancels every call at once would pull the histogram towards zero, one that waits long towards
    its own patience). Counted under outcome cancelled; an answer and a timeout are timed."""
    metrics = Metrics()
    for outcome, seconds in (("ok", 0.2), ("cancelled", 0.001), ("cancelled", 50.0), ("timeout", 60.0)):
        metrics.observe("tools/call", "a", outcome, seconds)
    got = samples(metrics.render().decode())
    timed = ("method", "tools/call"), ("server", "a")
    assert got[("onemcp_upstream_request_duration_seconds_count", timed)] == 2
    assert got[("onemcp_upstream_request_duration_seconds_sum", timed)] == pytest.approx(60.2)
    assert got[("onemcp_upstream_requests_total", (*timed[:1], ("outcome", "cancelled"), timed[1]))] == 2


async def test_many_distinct_names_from_clients_make_no_new_series() -> None:
    """Every label is a known value: a client sending 200 distinct methods, tool names, URIs, task ids and
    protocol versions, in both eras, leaves /metrics with the series it had after the first of each."""
    from support.inprocess import fixture, inprocess_hub, tool_call

    async def send_all(h: Any, session: Any, i: int) -> None:
        asks = {
            f"made/up{i}": {},
            "tools/call": tool_call(f"alpha__nope{i}"),
            "resources/read": {"uri": f"alpha+fixture://nope/{i}"},
            "prompts/get": {"name": f"nope{i}"},
            "tasks/get": {"taskId": f"t{i}"},
        }
        for method, params in asks.items():
            await session.ask(method, params)
            await h.client.modern(method, **params)

    def series(h: Any) -> set[str]:
        text = h.app.hub.metrics.render().decode()
        return {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}

    with anyio.fail_after(30):
        async with inprocess_hub({"alpha": fixture()}) as h:
            session = await h.session()
            await send_all(h, session, 0)
            first = series(h)
            for i in range(1, 200):
                await send_all(h, session, i)
            assert series(h) == first


async def test_a_server_removed_by_a_reload_leaves_metrics_once_its_connection_is_gone() -> None:
    """s37 h1/h4: the request series of a server a reload removed stayed in /metrics (one set per name ever
    configured) until a restart. They go once its connection is gone (its calls drained), as a target that
    no longer exists; a server still configured, or added back, keeps counting."""
    servers = {"a": fixture("--name", "a"), "b": fixture("--name", "b")}

    def config(names: list[str]) -> HubConfig:
        return HubConfig.model_validate({"mcpServers": {n: servers[n] for n in names}})

    async def scrape(h: InProcessHub) -> set[str]:
        async with h.client.open("GET", path="/metrics") as response:
            assert response.status == 200
            got = samples((await response.read()).decode())
        return {dict(labels)["server"] for (name, labels) in got if name.startswith("onemcp_upstream_request")}

    with anyio.fail_after(30):
        async with inprocess_hub(servers) as h:
            session = await h.session()
            for name in ("a", "b"):
                assert "result" in await session.ask("tools/call", tool_call(f"{name}__echo", message="x"))
            assert await scrape(h) == {"a", "b"}
            await h.app.hub.apply_config(config(["a"]))
            while "b" in h.app.hub.pool.slots or h.app.hub.pool.busy("b"):
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (its removal runs in the background)
            assert await scrape(h) == {"a"}
            assert not [key for key in h.app.hub.metrics._counters if key[1] == "b"]  # nor kept unshown
            await h.app.hub.apply_config(config(["a", "b"]))
            await h.ready("b")
            assert "result" in await session.ask("tools/call", tool_call("b__echo", message="x"))
            assert await scrape(h) == {"a", "b"}
