"""An upstream's message budget (`maxMessagesPerSecond`): one server's flood costs that server, not the hub.

Before: a server flooding notifications or requests to the hub (log lines, progress, sampling, roots)
was read as fast as it wrote, and the hub parsed, routed or refused every message: another server's
`tools/call` went from about 1 ms to 100-300 ms over stdio, and to seconds over HTTP (a server starting
beside it did not start within 30 s).
"""

from __future__ import annotations

import contextlib
import logging
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pydantic
import pytest

from fixtures.launch import fixture_command, running_http_fixture
from onemcp.config.model import MAX_MESSAGES_PER_SECOND, HubConfig, ServerConfig
from onemcp.observability.limits import HITS
from onemcp.upstream.pool import retime
from onemcp.upstream.transports.budget import MIN_PAUSE, Budget
from onemcp.upstream.transports.stdio import StdioTransport, _ChildProtocol
from support.clock import Clock
from support.hub import raw_session, running_hub

DEADLINE = 30.0
RATE = 1000
FLOOD = 4000  # log lines the flooding server sends about one call, then it answers


def test_a_burst_within_the_budget_reads_on_and_past_it_stops_for_what_it_owes() -> None:
    clock = Clock(100.0)
    budget = Budget("fx", 100, clock)
    budget.take(100)  # a second's worth at once: fine
    assert budget.owed() == 0.0
    budget.take(50)
    assert budget.owed() == pytest.approx(0.5 + MIN_PAUSE) and budget.pauses == 1
    clock.now += 0.5  # paid for: read on
    assert budget.owed() == 0.0 and budget.pauses == 1
    clock.now += 10  # quiet for long: a full bucket again, never more
    budget.take(100)
    assert budget.owed() == 0.0
    assert budget.taken == 250


def test_replies_to_the_hub_are_not_counted_and_everything_else_is() -> None:
    budget = Budget("fx", 10, Clock(100.0))
    got: list[dict[str, Any]] = []
    deliver = budget.counted(lambda msg, related: got.append(msg))
    deliver({"jsonrpc": "2.0", "id": 1, "result": {}}, None)
    deliver({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}, None)
    deliver({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}}, None)
    assert len(got) == 3 and budget.taken == 2


def test_no_bound_never_owes() -> None:
    budget = Budget("fx", None, Clock(100.0))
    budget.take(10**9)
    assert budget.owed() == 0.0 and budget.pauses == 0


def test_the_setting_is_the_hubs_unless_a_server_sets_its_own() -> None:
    config = HubConfig.model_validate(
        {
            "mcpServers": {"a": {"command": "x"}, "b": {"command": "x", "maxMessagesPerSecond": 50}},
            "onemcp": {"limits": {"maxMessagesPerSecond": 200}},
        }
    )
    assert config.servers["a"].max_messages_per_second == 200
    assert config.servers["b"].max_messages_per_second == 50
    default = HubConfig.model_validate({"mcpServers": {"a": {"command": "x"}}})
    assert default.servers["a"].max_messages_per_second == MAX_MESSAGES_PER_SECOND
    for bad in ({"maxMessagesPerSecond": 0}, {"maxMessagesPerSecnd": 10}):
        with pytest.raises(pydantic.ValidationError):
            HubConfig.model_validate({"mcpServers": {"a": {"command": "x", **bad}}})


def _call(rid: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


@pytest.mark.anyio
@pytest.mark.parametrize("wire", ["stdio", "http"])
async def test_a_flooding_server_is_read_at_its_budget_while_another_is_served(
    wire: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paused = anyio.Event()
    flooder: list[Budget] = []
    real = Budget.owed

    def owed(self: Budget) -> float:
        wait = real(self)
        if wait and self.server == "fx" and not paused.is_set():
            flooder.append(self)
            paused.set()
        return wait

    monkeypatch.setattr(Budget, "owed", owed)
    HITS._last_warned.pop("upstream_messages", None)  # another test's warning does not hide this one's
    before = HITS.counts["upstream_messages"]
    cmd = fixture_command()
    order: list[str] = []
    texts: dict[str, str] = {}
    with anyio.fail_after(DEADLINE), caplog.at_level(logging.WARNING):
        async with contextlib.AsyncExitStack() as stack:
            if wire == "http":  # the call's log lines come on its reply stream
                fx: dict[str, Any] = {"url": await stack.enter_async_context(running_http_fixture("--sse-responses"))}
                fx["protocol"] = "legacy"
            else:
                fx = {"command": cmd[0], "args": cmd[1:]}
            fx["maxMessagesPerSecond"] = RATE
            good = {"command": cmd[0], "args": cmd[1:]}
            config = {"mcpServers": {"fx": fx, "good": good}, "onemcp": {"prefixMode": "always"}}
            hub = await stack.enter_async_context(running_hub(config))
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=DEADLINE))
            headers = await raw_session(http, hub.url)

            async def call(rid: int, name: str, arguments: dict[str, Any]) -> None:
                texts[name] = (await http.post(hub.url, json=_call(rid, name, arguments), headers=headers)).text
                order.append(name)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 2, "fx__log", {"count": FLOOD})
                await paused.wait()  # the flooding server overdrew its budget: it is not read for a while
                await call(3, "good__echo", {"message": "served"})
                read_then = flooder[0].taken
            health = (await http.get(f"{hub.base}/health")).json()["upstreams"]["fx"]
    assert "served" in texts["good__echo"]
    assert '"logged"' in texts["fx__log"]  # the flooding server's own reply still arrives
    assert order == ["good__echo", "fx__log"]  # the other server was served while the flood was held back
    assert read_then < FLOOD
    assert HITS.counts["upstream_messages"] > before and health["floodPauses"] >= 1
    assert any("upstream fx sends more than 1000 messages a second" in r.getMessage() for r in caplog.records)


class _Pipe:
    """A stdout pipe transport: whether it is read."""

    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


class _Process:
    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe

    def get_pipe_transport(self, fd: int) -> _Pipe:
        return self.pipe


@pytest.mark.anyio
async def test_a_stdio_read_past_the_budget_is_held_from_the_line_that_overdrew_it_and_read_on_in_order() -> None:
    """One pipe read holds hundreds of lines: the pause is one line's debt, not the whole read's."""
    owner = StdioTransport("fx", ServerConfig.model_validate({"command": "unused", "maxMessagesPerSecond": 10}))
    clock = Clock(100.0)
    owner.budget = Budget("fx", 10, clock)
    pipe = _Pipe()
    got: list[Any] = []
    deliver = owner.budget.counted(lambda msg, related: got.append(msg.get("params", {}).get("n", "reply")))
    protocol = _ChildProtocol(owner, deliver)
    protocol.connection_made(_Process(pipe))  # type: ignore[arg-type]
    lines = [b'{"jsonrpc":"2.0","method":"notifications/message","params":{"n":%d}}' % n for n in range(30)]
    protocol.pipe_data_received(1, b"\n".join(lines) + b'\n{"jsonrpc":"2.0","id":1,"re')  # and half a reply
    assert got == list(range(11)) and not pipe.reading  # a burst of 10, then the 11th overdrew it
    assert protocol._read_on_later is not None
    protocol._read_on_later.cancel()
    clock.now += 1.1  # a second past the debt: a full bucket, 10 more, then the next pause
    protocol._read_on()
    assert got == list(range(22)) and not pipe.reading
    protocol._read_on_later.cancel()
    clock.now += 10
    protocol._read_on()  # the rest of the read, then reading again
    assert got == list(range(30)) and pipe.reading and protocol._read_on_later is None
    protocol.pipe_data_received(1, b'sult":{}}\n')
    assert got == [*range(30), "reply"] and owner.budget.pauses == 2  # the reply (uncounted) came whole


def test_a_new_budget_applies_to_a_running_connection_without_a_restart() -> None:
    before = ServerConfig.model_validate({"command": "x", "maxMessagesPerSecond": 100})
    after = ServerConfig.model_validate({"command": "x", "maxMessagesPerSecond": 5})
    assert before.same_connection(after)  # a reload does not restart the server for it ...
    transport = StdioTransport("fx", before)
    conn = SimpleNamespace(config=before, transport=transport)
    retime(conn, after.request_settings())  # type: ignore[arg-type]
    assert transport.budget.rate == 5  # ... its running connection takes it from its next message


@pytest.mark.anyio
async def test_what_a_stdio_server_left_held_is_dropped_once_it_is_closed() -> None:
    owner = StdioTransport("fx", ServerConfig.model_validate({"command": "unused"}))
    owner.budget = Budget("fx", 1, Clock(100.0))
    got: list[Any] = []
    protocol = _ChildProtocol(owner, owner.budget.counted(lambda msg, related: got.append(msg)))
    protocol.connection_made(_Process(_Pipe()))  # type: ignore[arg-type]
    protocol.pipe_data_received(1, b'{"jsonrpc":"2.0","method":"notifications/message","params":{}}\n' * 5)
    assert len(got) == 2 and protocol._read_on_later is not None
    protocol._read_on_later.cancel()
    owner._mark_closed("process exited with code 0")  # its messages go nowhere now
    protocol._read_on()
    assert len(got) == 2
