"""A stream resumed on another replica (`hub.followed`), two replicas' relays joined in this process: what the
follower writes, and when the holder stops. (Over a real Redis: tests/hub/test_hub_replicas.py.)"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.abc
import pytest

from onemcp.hub import followed as followed_module
from onemcp.hub.followed import FollowedStreams
from onemcp.hub.replay import OutStream, StreamStore, replica_of
from onemcp.hub.session import Session

pytestmark = pytest.mark.anyio


class Wire:
    """What each replica's relay sends reaches the other's `FollowedStreams` in order, as `Replicas._received`
    hands it on; `drop` loses a document on the way; a tag with no replica hears nothing (`missed`)."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.replicas: dict[str, FollowedStreams] = {}
        self.sent: list[dict[str, Any]] = []
        self.drop: Callable[[dict[str, Any]], bool] = lambda doc: False
        self.silent = False  # the holder is no longer subscribed

    def relay(self, tag: str) -> Any:
        wire = self

        class Relay:
            def send(self, to: str, doc: dict[str, Any], missed: Callable[[], None] | None = None) -> bool:
                doc = {**doc, "from": tag}
                wire.sent.append(doc)
                target = wire.replicas.get(to)
                if target is None:
                    if missed is not None:
                        missed()
                elif not wire.drop(doc):
                    wire.tg.start_soon(wire.deliver, target, doc)
                return True

            async def present(self, other: str) -> bool:
                return other in wire.replicas and not wire.silent

        Relay.tag = tag  # type: ignore[attr-defined]
        return Relay()

    @staticmethod
    async def deliver(target: FollowedStreams, doc: dict[str, Any]) -> None:
        if doc["k"] == "follow":
            await target.serve(doc)
        elif doc["k"] == "events":
            target.batch(doc)
        else:
            target.unfollow(doc)


def session(streams: StreamStore, principal: str = "key:a mcp") -> Session:
    return cast(
        Session, SimpleNamespace(id="s1", principal=SimpleNamespace(key=principal), streams=streams, touch=lambda: None)
    )


def replicas(wire: Wire, held: Session) -> tuple[FollowedStreams, FollowedStreams]:
    """(holder "A", which has `held`, follower "B")."""
    sessions = SimpleNamespace(get=lambda sid: held if sid == held.id else None)
    a = FollowedStreams(wire.relay("A"), cast(Any, sessions))
    b = FollowedStreams(wire.relay("B"), cast(Any, SimpleNamespace(get=lambda sid: None)))
    wire.replicas.update({"A": a, "B": b})
    return a, b


async def test_a_reply_stream_is_replayed_after_the_id_then_followed_until_its_reply() -> None:
    store = StreamStore(replica="A")
    stream = store.open("p")
    assert stream.id == "p1@A" and replica_of(f"{stream.id}-0") == "A" and replica_of("p1-0") == ""
    first, second = stream.add({"jsonrpc": "2.0", "method": "one"}), stream.add({"jsonrpc": "2.0", "method": "two"})
    written: list[bytes] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            wire = Wire(tg)
            _, b = replicas(wire, session(store))

            async def write(event: bytes) -> None:
                written.append(event)
                if len(written) == 1:  # replayed: the call goes on there
                    stream.add({"jsonrpc": "2.0", "id": 7, "result": {}})
                    stream.finish()

            assert await b.follow("A", session(StreamStore()), "p1@A-1", write) == "done"
    assert written[0] == second and first not in written
    assert b'"id":7' in written[1] and len(written) == 2


async def test_what_the_holder_does_not_hold_for_that_principal_is_unknown_and_nothing_is_written() -> None:
    store = StreamStore(replica="A")
    stream = store.open("p")
    stream.add({"jsonrpc": "2.0", "method": "one"})
    stream.finish()  # answered: a follower gets its events and the end
    written: list[bytes] = []

    async def write(event: bytes) -> None:
        written.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            wire = Wire(tg)
            _, b = replicas(wire, session(store))
            assert await b.follow("A", session(StreamStore()), "p9@A-0", write) == "unknown"
            held_by_another = session(StreamStore(), principal="key:b mcp")
            wire.replicas["A"].sessions = cast(Any, SimpleNamespace(get=lambda sid: session(store, "key:b mcp")))
            assert await b.follow("A", held_by_another, "p1@A-0", write) == "done"  # the same principal: its events
            wire.replicas["A"].sessions = cast(Any, SimpleNamespace(get=lambda sid: session(store)))
            assert await b.follow("A", held_by_another, "p1@A-0", write) == "unknown"  # another's session
            assert await b.follow("C", held_by_another, "p1@C-0", write) == "unknown"  # nobody heard
    assert len(written) == 1


async def test_a_lost_batch_ends_the_clients_stream_and_stops_the_holder() -> None:
    store = StreamStore(replica="A")
    stream = store.open("p")
    written: list[bytes] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            wire = Wire(tg)
            a, b = replicas(wire, session(store))

            def lost(doc: dict[str, Any]) -> bool:  # the second batch is lost; the stream goes on
                if doc.get("n") != 1:
                    return False
                stream.add({"jsonrpc": "2.0", "method": "event 2"})
                return True

            wire.drop = lost

            async def write(event: bytes) -> None:
                written.append(event)
                if len(written) == 1:
                    stream.add({"jsonrpc": "2.0", "method": "event 1"})

            stream.add({"jsonrpc": "2.0", "method": "event 0"})
            assert await b.follow("A", session(StreamStore()), "p1@A-0", write) == "broken"
            with anyio.fail_after(5):
                while a._serving:  # the holder heard the unfollow
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
    assert len(written) == 1
    assert [d["k"] for d in wire.sent if d["from"] == "B"] == ["follow", "unfollow"]


@pytest.mark.parametrize("gone", [False, True])
async def test_the_follower_gives_up_when_the_holder_falls_silent_or_is_gone(
    monkeypatch: pytest.MonkeyPatch, gone: bool
) -> None:
    """Nothing more arrives (Redis lost): ended after SILENCE; the holder no longer subscribed: at the next check."""
    monkeypatch.setattr(followed_module, "CHECK_EVERY", 0.01)
    monkeypatch.setattr(followed_module, "SILENCE", 3600.0 if gone else 0.05)
    store = StreamStore(replica="A")
    stream = store.open("p")
    stream.add({"jsonrpc": "2.0", "method": "one"})
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            wire = Wire(tg)
            _, b = replicas(wire, session(store))

            async def write(event: bytes) -> None:
                wire.drop = lambda doc: True  # nothing more arrives: Redis lost
                wire.silent = gone

            assert await b.follow("A", session(StreamStore()), "p1@A-0", write) == "broken"
            stream.finish()  # the holder's relay ends with its stream


async def test_a_get_stream_is_replayed_only_and_large_events_go_in_several_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(followed_module, "BATCH_BYTES", 300)
    store = StreamStore(replica="A")
    stream: OutStream = store.open("g")
    events = [stream.add({"jsonrpc": "2.0", "method": "m", "params": {"x": "y" * 200}}) for _ in range(3)]
    written: list[bytes] = []

    async def write(event: bytes) -> None:
        written.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            wire = Wire(tg)
            replicas(wire, session(store))
            assert await wire.replicas["B"].follow("A", session(StreamStore()), "g1@A-0", write) == "done"
    assert written == events  # the GET stream is still live there: the follower's own carries on
    assert len([d for d in wire.sent if d["k"] == "events"]) == 3
