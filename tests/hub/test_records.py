"""The saved-session record: what goes in, what a revived session gets back, what is never read."""

from __future__ import annotations

from dataclasses import replace

import orjson

from onemcp.auth.access import LEGACY_HTTP, decide
from onemcp.auth.principal import ANONYMOUS
from onemcp.hub import records
from onemcp.hub.session import Session


def _session() -> Session:
    access = replace(decide(ANONYMOUS, LEGACY_HTTP, None, {}, {}), query="tags=dev")
    return Session(id="r" * 32, transport="streamable-http", access=access)


def test_a_record_round_trips_through_json() -> None:
    before = _session()
    before.protocol_version = "2025-06-18"
    before.client_capabilities = {"roots": {"listChanged": True}}
    before.client_info = {"name": "sdk", "version": "1"}
    before.log_level = "debug"
    before.initialized = True
    before.subscriptions[("time", "time://now")] = None
    doc = orjson.loads(orjson.dumps(records.record_of(before)))  # as a store keeps it
    assert doc["principal"] == ANONYMOUS.key and doc["query"] == "tags=dev"

    after = Session(id=before.id, transport="streamable-http", access=before.access)
    keys = records.restore(after, doc)
    assert keys == [("time", "time://now")]
    assert (after.protocol_version, after.log_level, after.initialized) == ("2025-06-18", "debug", True)
    assert after.client_capabilities == before.client_capabilities
    assert after.client_info == before.client_info


def test_a_damaged_record_restores_what_it_can() -> None:
    session = _session()
    doc = {"protocolVersion": None, "subscriptions": [["a", "u"], "bad", ["too", "many", "parts"], 7]}
    assert records.restore(session, doc) == [("a", "u")]
    assert (session.protocol_version, session.client_capabilities, session.initialized) == ("", {}, False)
