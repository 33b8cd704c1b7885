"""`cli.hub_health`: the one-line summaries `start`, `status` and `mcp status` print of a hub's /health.

(The commands that read /health from a running hub are tested as a user runs them in test_daemon.py.)"""

from __future__ import annotations

from onemcp.cli.hub_health import hub_notes, summary


def test_status_names_a_server_whose_circuit_is_open() -> None:
    """A hung server stays "ready" while its breaker refuses every call: /health says degraded, and the
    summary start and status print says which server and why (it said only "2 server(s): 2 ready")."""
    health = {
        "upstreams": {
            "a": {"state": "ready", "breaker": "open"},
            "b": {"state": "ready", "breaker": "closed"},
            "c": {"state": "failed", "breaker": "closed", "lastError": "process exited with code 1"},
        }
    }
    assert summary(health) == (
        "3 server(s): 1 failed, 2 ready; failed: c (process exited with code 1); circuit open (it answers no call): a"
    )


def test_status_says_a_servers_error_whole_or_cut_with_a_marker() -> None:
    """The summary cut each error at 80 characters mid-word and without a mark ('cannot connect to
    127.0.0.1:58089: Conne)'), and a failed server without an error was an IndexError (a traceback)."""
    refused = "POST http://127.0.0.1:58089/mcp failed: cannot connect to 127.0.0.1:58089: Connection refused"
    health = {
        "upstreams": {
            "web": {"state": "failed", "lastError": refused},
            "big": {"state": "failed", "lastError": "x" * 500 + "\nsecond line"},
            "mute": {"state": "failed", "lastError": ""},
        }
    }
    assert summary(health) == f"3 server(s): 3 failed; failed: web ({refused}), big ({'x' * 160}...), mute"


def test_status_names_a_server_that_keeps_failing_to_start() -> None:
    """A server that never answers its handshake is "starting" again and again: the summary said "1 starting"
    with every retry, never that it failed or why."""
    health = {
        "upstreams": {
            "a": {"state": "ready", "breaker": "closed"},
            "b": {"state": "starting", "breaker": "closed", "lastError": None},  # its first try
            "c": {"state": "starting", "breaker": "closed", "lastError": "did not start within 30s (attempt 4)"},
        }
    }
    assert summary(health) == "3 server(s): 1 ready, 2 starting; still trying: c (did not start within 30s (attempt 4))"


def test_status_names_tools_withheld_since_their_definition_changed() -> None:
    """An operator's own edit (mcp-server-time's --local-timezone) changed two tools' descriptions: they were
    withheld from every client while status said "ok, 5 server(s): 5 ready" and mcp status "time ... 0"."""
    changed = [
        {"server": "time", "tool": "convert_time", "seenAt": 1.0, "mode": "withhold"},
        {"server": "time", "tool": "get_current_time", "seenAt": 1.0, "mode": "withhold"},
        {"server": "mine", "tool": "echo", "seenAt": 1.0, "mode": "report"},  # passed on: nothing to do
    ]
    assert hub_notes({"status": "ok", "pins": {"mode": "withhold", "changed": changed}}) == [
        "withheld from clients, their definition changed since approved: time/convert_time, time/get_current_time"
        " (`onemcp mcp pins` shows the change, `onemcp mcp approve SERVER[/TOOL]` approves it)"
    ]
    assert hub_notes({"status": "ok", "pins": {"mode": "withhold", "changed": []}}) == []
