"""Template instances: binding by context, sharing by rendered config, caps, reaping, retiring."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import anyio
import pytest

from onemcp.app import OneMcpApp
from onemcp.auth.access import LEGACY_HTTP, decide
from onemcp.auth.principal import ANONYMOUS, Principal
from onemcp.catalog.reach import Reach
from onemcp.config.context import Signer
from onemcp.config.model import HubConfig, Limits
from onemcp.hub.instances import Instance, TemplateInstances
from onemcp.protocol.errors import InvalidParams, LimitReached
from support.inprocess import AsgiClient, FixtureUpstreams, lifespan, modern_request

pytestmark = pytest.mark.anyio


def templates(**options: Any) -> HubConfig:
    return HubConfig.model_validate(
        {"mcpTemplates": {"mem": {"command": "srv", "args": ["{{ project.path }}"], "template": options}}}
    )


class Harness:
    def __init__(self, config: HubConfig, limits: Limits | None = None) -> None:
        self.config = config
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.instances = TemplateInstances(
            lambda: self.config.templates, lambda: limits or Limits(), self.start, self.stop
        )

    async def start(self, instance: Instance) -> bool:
        self.started.append(instance.id)
        return True

    async def stop(self, instance: Instance) -> None:
        self.stopped.append(instance.id)

    def bind(
        self, path: str, session: str = "s1", *, trusted: bool = True, principal: Principal = ANONYMOUS
    ) -> frozenset[str]:
        access = decide(principal, LEGACY_HTTP, None, {}, {})
        access = replace(access, context={"project": {"path": path}}, trusted=trusted)
        return self.instances.bind(access, session, {"name": "client"}, "legacy")


def test_only_a_trusted_context_binds() -> None:
    h = Harness(templates())
    assert h.bind("/a", trusted=False) == frozenset()
    (bound,) = h.bind("/a")
    assert bound.startswith("mem@") and h.instances.instances[bound].summary["project"] == "/a"


def test_same_rendering_shares_and_per_session_does_not() -> None:
    shared = Harness(templates())
    assert shared.bind("/a", "s1") == shared.bind("/a", "s2") != shared.bind("/b", "s3")
    assert shared.instances.instances[next(iter(shared.bind("/a", "s1")))].sessions == {"s1", "s2"}
    own = Harness(templates(shareable=False))
    assert own.bind("/a", "s1") != own.bind("/a", "s2")


def test_a_field_that_does_not_render_is_invalid_params() -> None:
    h = Harness(HubConfig.model_validate({"mcpTemplates": {"mem": {"command": "srv", "args": ["{{ project.nope }}"]}}}))
    with pytest.raises(InvalidParams, match=r"mcpTemplates\.mem\.args\[0\]"):
        h.bind("/a")


async def test_ensure_starts_once_and_caps_refuse() -> None:
    h = Harness(templates(maxInstances=1))
    a = h.bind("/a")
    async with anyio.create_task_group() as tg:  # concurrent first lists start it once
        tg.start_soon(h.instances.ensure, a)
        tg.start_soon(h.instances.ensure, a)
    assert h.started == sorted(a)
    with pytest.raises(LimitReached, match="maxInstances") as refused:
        await h.instances.ensure(h.bind("/b", "s2"))
    assert refused.value.status == 429
    hub_wide = Harness(templates(), Limits.model_validate({"maxTemplateInstances": 1}))
    await hub_wide.instances.ensure(hub_wide.bind("/a"))
    with pytest.raises(LimitReached, match="maxTemplateInstances"):
        await hub_wide.instances.ensure(hub_wide.bind("/b", "s2"))


class SlowStart(Harness):
    """A harness whose instances take until `go` to start."""

    def __init__(self, config: HubConfig) -> None:
        super().__init__(config)
        self.go = anyio.Event()

    async def start(self, instance: Instance) -> bool:
        self.started.append(instance.id)
        await self.go.wait()
        return True


async def test_a_requester_waits_for_the_start_another_began() -> None:
    """Two sessions of one project list at once: the second waits for the instance the first is starting,
    rather than listing before its tools are there."""
    h = SlowStart(templates())
    a = h.bind("/a")
    returned: list[bool] = []  # per second requester: had the start finished when its ensure returned?

    async def second() -> None:
        await h.instances.ensure(a)
        returned.append(h.go.is_set())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(h.instances.ensure, a)
            await anyio.wait_all_tasks_blocked()  # the first start is under way
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()  # the second either returned or waits
            h.go.set()
    assert h.started == sorted(a) and returned == [True]


async def test_reap_stops_only_unheld_idle_instances() -> None:
    h = Harness(templates(idleTimeout=10))
    a, b = h.bind("/a", "s1"), h.bind("/b", "s2")
    await h.instances.ensure(a | b)
    h.instances.release("s1")
    now = h.instances.instances[next(iter(a))].last_used
    assert await h.instances.reap(now + 5) == []  # not idle long enough
    assert await h.instances.reap(now + 11) == sorted(a)  # b is still held by s2
    assert h.stopped == sorted(a) and set(h.instances.instances) == set(b)


async def test_retire_stops_what_the_predicate_rejects() -> None:
    h = Harness(templates())
    a = h.bind("/a")
    await h.instances.ensure(a)
    assert await h.instances.retire(lambda i: False) == sorted(a)
    assert h.stopped == sorted(a) and not h.instances.instances


async def test_an_instance_a_request_waits_for_outlives_a_reload_until_it_is_served() -> None:
    """A reload that changes the template while a 2026-07-28 request waits for its instance's start: that
    instance serves the request (it was stopped under it, and the list came without the template's
    tools), then goes at the next reap, not after its idleTimeout."""
    h = SlowStart(templates(idleTimeout=300))
    access = replace(decide(ANONYMOUS, LEGACY_HTTP, None, {}, {}), context={"project": {"path": "/a"}}, trusted=True)
    a = h.instances.bind(access, "", {"name": "client"}, "modern")  # no session holds it: the request alone
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.instances.ensure, a)
        await anyio.wait_all_tasks_blocked()  # its start is under way
        h.config = templates(idleTimeout=300, maxInstances=5)  # the reload
        assert await h.instances.retire(lambda i: False) == []
        h.go.set()
    (instance,) = h.instances.instances.values()
    assert instance.running and h.stopped == []  # the request is answered by it
    assert await h.instances.reap(instance.last_used + 1) == sorted(a)  # then it goes
    assert h.stopped == sorted(a)


def test_reach_shows_an_instance_only_to_those_bound() -> None:
    everyone = Reach()
    assert everyone.everything and not everyone.shows("tools", "mem@abc", "read")
    bound = Reach().bound(frozenset({"mem@abc"}))
    assert not bound.everything  # the catalog filters: another instance of mem is not this one
    assert bound.shows("tools", "mem@abc", "read") and not bound.shows("tools", "mem@def", "read")
    scoped = Reach(frozenset({"mem"}), instances=frozenset({"mem@abc"}))  # scope server:mem covers its instances
    assert scoped.shows("tools", "mem@abc", "read") and scoped.touches("mem@abc")
    narrow = Reach(frozenset(), frozenset({("mem", "read")}), frozenset({"mem@abc"}))
    assert narrow.shows("tools", "mem@abc", "read") and not narrow.shows("tools", "mem@abc", "write")
    assert not Reach(frozenset({"other"}), instances=frozenset({"mem@abc"})).shows("tools", "mem@abc", "read")


async def test_reap_keeps_an_instance_an_open_listen_holds() -> None:
    """A 2026-07-28 `subscriptions/listen` holds no session: the instances it uses are passed as `held`."""
    h = Harness(templates(idleTimeout=10))
    a = h.bind("/a", "s1")
    await h.instances.ensure(a)
    h.instances.release("s1")
    now = h.instances.instances[next(iter(a))].last_used
    assert await h.instances.reap(now + 11, held=a) == []  # the listen is open
    assert await h.instances.reap(now + 15) == []  # idle from when it was last held
    assert await h.instances.reap(now + 22) == sorted(a)


async def test_a_reaped_instance_leaves_no_tools_list_repairs_or_logger_behind() -> None:
    """In a hub: each instance ever started kept its last tools list (pins), its repairs report and a logger
    for as long as the hub ran (~29 kB each: soak hunt s29/p F1); reaped, nothing of it stays."""
    doc = {
        "mcpServers": {"a": {"command": "fixture", "args": ["--name", "a"]}},
        "mcpTemplates": {"fxt": {"command": "fixture", "args": ["--tools", "3"], "env": {"P": "{{ project.name }}"}}},
    }
    app = OneMcpApp(HubConfig.model_validate(doc), transports=FixtureUpstreams())
    hub = app.hub
    hub.context_secret = b"k" * 32
    with anyio.fail_after(10):
        async with lifespan(app):
            await hub.pool.tried.wait()
            loggers = len(logging.Logger.manager.loggerDict)
            for n in range(6):  # one project each: an instance each
                headers, body = modern_request("tools/list")
                context = Signer({"project": {"path": f"/p/{n}", "name": f"p{n}"}}, hub.context_secret)
                _, (reply,) = await AsgiClient(app).request("POST", headers={**headers, **context.headers()}, body=body)
                assert "fxt__tool_0" in {t["name"] for t in reply["result"]["tools"]}
            assert len(hub.instances.running()) == 6 and len(hub.pins.raw) == 7
            assert len(await hub.instances.reap(time.monotonic() + 3600)) == 6
            assert set(hub.pins.raw) == set(hub.catalog.repairs) == {"a"}
            assert len(logging.Logger.manager.loggerDict) == loggers
