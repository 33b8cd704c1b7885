"""Tasks (2025-11-25) through the hub: task-augmented calls, tasks/*, status, per-session visibility."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp_types._v2025_11_25 import GetTaskResult, ListTasksResult

from fixtures.launch import fixture_command
from fixtures.tasks import TaskTable
from onemcp.demo.kit import INTERNAL_ERROR, JsonRpcError
from onemcp.hub import tasks
from onemcp.protocol.errors import NotFound
from onemcp.upstream import pool
from support.hub import HEADERS, INIT, raw_session, running_hub
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio
DEADLINE = 30.0


def stdio(*args: str) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:]}


def req(method: str, rid: int = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


async def test_task_lifecycle_through_the_hub() -> None:
    config = {"mcpServers": {"a": stdio("--tasks"), "b": stdio()}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            init = (await http.post(hub.url, json=INIT, headers=HEADERS)).json()
            assert "tools" in init["result"]["capabilities"]["tasks"]["requests"]  # advertised: a serves tasks
            headers = await raw_session(http, hub.url)
            async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                created = await http.post(
                    hub.url,
                    json=req("tools/call", name="a__sleep", arguments={"seconds": 0.2}, task={"ttl": 60000}),
                    headers=headers,
                )
                task = created.json()["result"]["task"]
                assert task["taskId"].startswith("a:") and task["status"] == "working"
                got = await http.post(hub.url, json=req("tasks/get", taskId=task["taskId"]), headers=headers)
                assert got.json()["result"]["taskId"] == task["taskId"]
                result = await http.post(hub.url, json=req("tasks/result", taskId=task["taskId"]), headers=headers)
                body = result.json()["result"]
                assert body["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task["taskId"]
                listed = await http.post(hub.url, json=req("tasks/list"), headers=headers)
                assert [t["taskId"] for t in listed.json()["result"]["tasks"]] == [task["taskId"]]
                assert "_meta" not in listed.json()["result"]  # every server answered: nothing left out
                async for line in stream.aiter_lines():
                    if line.startswith("data: ") and line[6:].strip():
                        note = orjson.loads(line[6:])
                        if note["method"] == "notifications/tasks/status":
                            assert note["params"]["taskId"] == task["taskId"]
                            assert note["params"]["status"] == "completed"
                            break
            # another session cannot see or touch it
            other = await raw_session(http, hub.url)
            r = await http.post(hub.url, json=req("tasks/get", taskId=task["taskId"]), headers=other)
            assert r.json()["error"]["code"] == -32602 and task["taskId"] in r.json()["error"]["message"]
            r = await http.post(hub.url, json=req("tasks/list"), headers=other)
            assert r.json()["result"]["tasks"] == []
            # bad params say what is wrong, not "None"
            for method, params, complaint in (
                ("tasks/get", {}, "params.taskId must be a string"),
                ("tasks/list", {"cursor": 5}, "Invalid cursor"),
                ("logging/setLevel", {}, "params.level is missing"),
            ):
                error = (await http.post(hub.url, json=req(method, **params), headers=other)).json()["error"]
                assert error["code"] == -32602 and complaint in error["message"], error


async def test_tasks_not_advertised_without_an_upstream_that_serves_them() -> None:
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio()}}) as hub, httpx.AsyncClient() as http:
            init = (await http.post(hub.url, json=INIT, headers=HEADERS)).json()
            assert "tasks" not in init["result"]["capabilities"]


async def _status(stream: httpx.Response) -> dict[str, Any]:
    """The next notifications/tasks/status on a session's GET stream."""
    async for line in stream.aiter_lines():
        if line.startswith("data: ") and line[6:].strip():
            note = orjson.loads(line[6:])
            if note.get("method") == "notifications/tasks/status":
                return note["params"]  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


async def test_equal_task_ids_of_two_sessions_connections_stay_each_sessions_own() -> None:
    # isolation "session": a process per session, and both number their tasks task-1
    config = {"mcpServers": {"a": {**stdio("--seq-tasks"), "isolation": "session"}, "b": stdio()}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            one, two = await raw_session(http, hub.url), await raw_session(http, hub.url)
            get = {"accept": "text/event-stream"}
            async with (
                http.stream("GET", hub.url, headers={**one, **get}) as stream_one,
                http.stream("GET", hub.url, headers={**two, **get}) as stream_two,
            ):
                ids = []
                for headers, seconds in ((one, 0.1), (two, 0.2)):
                    call = req("tools/call", name="a__sleep", arguments={"seconds": seconds}, task={"ttl": 60000})
                    created = (await http.post(hub.url, json=call, headers=headers)).json()
                    ids.append(created["result"]["task"]["taskId"])
                assert ids == ["a:task-1", "a:task-1"]  # equal ids, two tasks
                for headers, seconds in ((one, 0.1), (two, 0.2)):
                    got = (await http.post(hub.url, json=req("tasks/get", taskId="a:task-1"), headers=headers)).json()
                    assert got["result"]["taskId"] == "a:task-1", got
                    result = await http.post(hub.url, json=req("tasks/result", taskId="a:task-1"), headers=headers)
                    assert result.json()["result"]["content"][0]["text"] == f"slept {seconds}"
                    listed = await http.post(hub.url, json=req("tasks/list"), headers=headers)
                    assert [t["taskId"] for t in listed.json()["result"]["tasks"]] == ["a:task-1"]  # its own (F3)
                # each is told of its own task's end (before, both were told to the second session)
                assert (await _status(stream_one))["status"] == "completed"
                assert (await _status(stream_two))["status"] == "completed"


async def test_tasks_list_has_the_tasks_of_a_sessions_own_connection() -> None:
    config = {"mcpServers": {"a": {**stdio("--tasks"), "isolation": "session"}, "b": stdio()}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            call = req("tools/call", name="a__sleep", arguments={"seconds": 0}, task={"ttl": 60000})
            task = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]
            listed = await http.post(hub.url, json=req("tasks/list"), headers=headers)
            assert [t["taskId"] for t in listed.json()["result"]["tasks"]] == [task["taskId"]]


async def test_one_session_given_equal_ids_by_two_unprefixed_servers_keeps_both_tasks() -> None:
    # prefixMode never: a's and b's ids are both task-1, unprefixed; lookup is a's alone, getenv b's alone
    config = {
        "mcpServers": {"a": stdio("--seq-tasks", "--header-tool"), "b": stdio("--seq-tasks", "--env-tool")},
        "onemcp": {"prefixMode": "never"},
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            ids = []
            for name, arguments in (("lookup", {"account": "acct-a"}), ("getenv", {"name": "HOME"})):
                call = req("tools/call", name=name, arguments=arguments, task={"ttl": 60000})
                ids.append((await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"])
            assert ids == ["task-1", "task-1~2"]
            result = await http.post(hub.url, json=req("tasks/result", taskId="task-1"), headers=headers)
            assert "acct-a" in result.json()["result"]["content"][0]["text"]
            result = await http.post(hub.url, json=req("tasks/result", taskId="task-1~2"), headers=headers)
            assert "acct-a" not in result.json()["result"]["content"][0]["text"]
            listed = await http.post(hub.url, json=req("tasks/list"), headers=headers)
            assert sorted(t["taskId"] for t in listed.json()["result"]["tasks"]) == ids


async def test_a_2026_07_28_clients_task_param_is_not_passed_on() -> None:
    # tasks/* is not served in 2026-07-28: a task handle would be one it can never follow, so the call runs
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            _, (reply,) = await h.client.modern("tools/call", **tool_call("a__echo", message="hi"), task={"ttl": 60000})
            result = reply["result"]
            assert "task" not in result and result["content"] == [{"type": "text", "text": "hi"}], reply
            assert result["resultType"] == "complete"


async def test_a_task_whose_connection_closed_is_a_clear_error_not_a_hang() -> None:
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            s = await h.session()
            created = await s.ask("tools/call", {**tool_call("a__sleep", seconds=600), "task": {"ttl": 60000}})
            tid = created["result"]["task"]["taskId"]
            conn = h.app.hub.pool.get("a")
            assert conn is not None
            waited: list[dict[str, Any]] = []
            async with anyio.create_task_group() as tg:

                async def result() -> None:
                    waited.append(await s.ask("tasks/result", {"taskId": tid}))

                tg.start_soon(result)
                while not conn.in_flight:  # tasks/result waits upstream for the task's end
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                crashed = await s.ask("tools/call", tool_call("a__crash"))
            assert "error" in crashed
            (pending,) = waited  # the wait ends with the connection
            assert pending["error"] == {"code": -32000, "message": "[a] upstream closed: server stopped"}, pending
            while h.app.hub.pool.get("a") is conn:
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            await h.ready("a")  # restarted: a new connection, which knows nothing of the task
            for method in ("tasks/get", "tasks/result", "tasks/cancel"):
                reply = await s.ask(method, {"taskId": tid})
                error = reply["error"]
                lost = f"[a] task {tid} is lost: the connection it ran on closed (server stopped); call the tool again"
                assert error == {"code": -32000, "message": lost}, (method, error)


async def test_past_max_tasks_the_oldest_is_forgotten_and_its_id_is_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "MAX_TASKS", 2)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            s = await h.session()
            ids = []
            for n in range(3):
                created = await s.ask("tools/call", {**tool_call("a__echo", message=f"m{n}"), "task": {"ttl": 60000}})
                ids.append(created["result"]["task"]["taskId"])
            oldest, *kept = ids
            for method in ("tasks/get", "tasks/result", "tasks/cancel"):
                error = (await s.ask(method, {"taskId": oldest}))["error"]
                assert error == {"code": -32602, "message": f"Task not found: {oldest}"}, (method, error)
            for n, tid in enumerate(kept, 1):
                result = (await s.ask("tasks/result", {"taskId": tid}))["result"]
                assert result["content"] == [{"type": "text", "text": f"m{n}"}], result
            listed = (await s.ask("tasks/list"))["result"]["tasks"]
            assert sorted(t["taskId"] for t in listed) == sorted(kept)


async def test_one_sessions_tasks_never_push_out_anothers_and_an_ended_sessions_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hunt-limits F6: one hub-wide FIFO let a client that started MAX_TASKS tasks make every other
    session's live task 'Task not found' (and its status notifications go nowhere); entries of ended
    sessions stayed until pushed out."""
    monkeypatch.setattr(tasks, "MAX_SESSION_TASKS", 2)
    monkeypatch.setattr(tasks, "MAX_TASKS", 4)
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            router, conn = h.app.hub.tasks, h.app.hub.pool.get("a")
            assert conn is not None

            async def start(s: Any, message: str) -> str:
                created = await s.ask("tools/call", {**tool_call("a__echo", message=message), "task": {"ttl": 60000}})
                return str(created["result"]["task"]["taskId"])

            victim, flooder, other = await h.session(), await h.session(), await h.session()
            kept = await start(victim, "victim")
            flooded = [await start(flooder, f"f{n}") for n in range(5)]  # beyond its bound: its own oldest go
            for tid in flooded[:3]:
                assert (await flooder.ask("tasks/get", {"taskId": tid}))["error"]["message"] == f"Task not found: {tid}"
            theirs = [await start(other, f"o{n}") for n in range(2)]  # 5 in all, over MAX_TASKS: the busiest pays
            assert (await flooder.ask("tasks/get", {"taskId": flooded[3]}))["error"]["code"] == -32602
            for s, tid, text in ((victim, kept, "victim"), (flooder, flooded[4], "f4"), (other, theirs[1], "o1")):
                result = (await s.ask("tasks/result", {"taskId": tid}))["result"]
                assert result["content"] == [{"type": "text", "text": text}], result
            upstream_id = router.resolve(victim.id, kept).upstream_id
            assert router.owner(conn, upstream_id) == (victim.id, kept)
            response, _ = await h.client.request("DELETE", headers=victim.headers())
            assert response.status in (200, 204)
            assert router.owner(conn, upstream_id) is None  # its status notifications have no one to go to
            with pytest.raises(NotFound):
                router.resolve(victim.id, kept)


async def test_a_status_sent_before_the_reply_that_creates_the_task_reaches_its_session() -> None:
    """s28/e F3: a server sends the task's first status ('working') before the reply with its handle;
    the hub knew no owner for it yet and dropped it."""
    config = {"mcpServers": {"a": stdio("--early-status"), "b": stdio()}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            async with http.stream("GET", hub.url, headers={**headers, "accept": "text/event-stream"}) as stream:
                call = req("tools/call", name="a__sleep", arguments={"seconds": 0.1}, task={"ttl": 60000})
                task = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]
                heard = []
                async for line in stream.aiter_lines():
                    if line.startswith("data: ") and line[6:].strip():
                        note = orjson.loads(line[6:])
                        if note.get("method") == "notifications/tasks/status":
                            heard.append((note["params"]["taskId"], note["params"]["status"]))
                            if note["params"]["status"] == "completed":
                                break
                assert heard == [(task["taskId"], "working"), (task["taskId"], "completed")]
            assert not hub.app.hub.tasks._early  # handed over, none left held


def test_held_statuses_are_bounded() -> None:
    router = tasks.TaskRouter(None)  # type: ignore[arg-type]  # holding needs no catalog

    class Conn:
        name = "a"

    conn = Conn()
    for n in range(tasks.EARLY_STATUS + 10):
        note = {"method": "notifications/tasks/status", "params": {"taskId": f"t{n}", "status": "working"}}
        assert router.hold(conn, note)  # type: ignore[arg-type]
    for _ in range(10):
        router.hold(conn, {"params": {"taskId": "t300", "n": 1}})  # type: ignore[arg-type]
    assert len(router._early) == tasks.EARLY_STATUS
    assert len(router._early[(id(conn), "t300")][2]) == tasks.EARLY_PER_TASK
    assert not router.hold(conn, {"params": {}})  # type: ignore[arg-type]


async def test_a_task_a_validating_client_would_refuse_is_an_error_naming_the_server() -> None:
    """2025-11-25's Task (what the TypeScript SDK's tasks API validates; the Python SDK 2.x has none)
    needs a string taskId, createdAt and lastUpdatedAt, a known status and a ttl that is a number or
    null: a handle or a tasks/get or tasks/cancel answer without them was passed on as it came; the
    hub answers -32603 saying which server and what. tasks/list withholds such an entry (logged),
    and reads every page of each server's list (it read the first alone: a task on the second was
    never listed)."""
    config = {"mcpServers": {"a": stdio("--tasks", "--page-size", "1")}}
    answer = "[a] the server answered {} with a result a client cannot read: {}"
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)

            async def ask(method: str, **params: Any) -> dict[str, Any]:
                reply: dict[str, Any] = (await http.post(hub.url, json=req(method, **params), headers=headers)).json()
                return reply

            def task_call(**arguments: Any) -> dict[str, Any]:
                return {"name": "a__whoami", "arguments": arguments, "task": {"ttl": 60000}}

            refused = await ask("tools/call", **task_call(mistyped_handle={"status": "running"}))
            odd = (await ask("tools/call", **task_call(mistyped_task={"ttl": "60s"})))["result"]["task"]
            fine = (await ask("tools/call", **task_call()))["result"]["task"]
            got = {method: await ask(method, taskId=odd["taskId"]) for method in ("tasks/get", "tasks/cancel")}
            listed = await ask("tasks/list")
            fine_got = await ask("tasks/get", taskId=fine["taskId"])
    statuses = "'working', 'input_required', 'completed', 'failed' or 'cancelled'"
    assert refused["error"] == {
        "code": -32603,
        "message": answer.format("tools/call", f"task.status is 'running', not {statuses}"),
    }
    for method, reply in got.items():
        assert reply["error"] == {"code": -32603, "message": answer.format(method, "ttl is not a number or null")}
    assert [t["taskId"] for t in listed["result"]["tasks"]] == [fine["taskId"]]  # on its third page
    GetTaskResult.model_validate(fine_got["result"])  # what the hub passes, a validating client reads
    ListTasksResult.model_validate(listed["result"])


async def _answer_elicitations(stream: Any, s: Any, asked: list[dict[str, Any]]) -> None:
    """Answer each elicitation/create a session's GET stream carries, noting it."""
    while True:
        msg = await stream.message()
        if msg.get("method") == "elicitation/create":
            asked.append(msg)
            await s.post({"jsonrpc": "2.0", "id": msg["id"], "result": {"action": "accept", "content": {"c": "x"}}})


@pytest.mark.parametrize("untagged", [False, True])
async def test_a_tasks_request_after_its_call_returned_never_reaches_another_session(untagged: bool) -> None:
    # the task's call has returned, so no call is in flight: its elicitation went to the only session that
    # could answer, another client's, whose answer became this client's result
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker, other = await h.session(), await h.session(capabilities={"elicitation": {}})
            asked: list[dict[str, Any]] = []
            async with other.listen() as stream, anyio.create_task_group() as tg:
                tg.start_soon(_answer_elicitations, stream, other, asked)
                arguments = {"untagged": True} if untagged else {}
                created = await maker.ask("tools/call", {**tool_call("a__elicit", **arguments), "task": {"ttl": 60000}})
                result = await maker.ask("tasks/result", {"taskId": created["result"]["task"]["taskId"]})
                tg.cancel_scope.cancel()
            assert asked == []
            assert "error" in result, result  # the maker's client could not answer, and no other did


async def test_a_request_naming_its_task_reaches_the_tasks_session_with_the_id_it_knows() -> None:
    # two sessions could answer: the task named in _meta says which (before: "cannot tell which client")
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker = await h.session(capabilities={"elicitation": {}})
            other = await h.session(capabilities={"elicitation": {}})
            mine: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            async with maker.listen() as one, other.listen() as two, anyio.create_task_group() as tg:
                tg.start_soon(_answer_elicitations, one, maker, mine)
                tg.start_soon(_answer_elicitations, two, other, theirs)
                created = await maker.ask("tools/call", {**tool_call("a__elicit"), "task": {"ttl": 60000}})
                tid = created["result"]["task"]["taskId"]
                result = await maker.ask("tasks/result", {"taskId": tid})
                tg.cancel_scope.cancel()
            assert result["result"]["structuredContent"] == {"action": "accept", "content": {"c": "x"}}, result
            assert theirs == [] and len(mine) == 1
            assert mine[0]["params"]["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": tid}


async def test_a_task_of_a_server_the_sessions_view_no_longer_shows_is_not_listed(tmp_path: Path) -> None:
    config = {
        "mcpServers": {"a": {**stdio("--tasks"), "tags": ["x"]}, "b": {**stdio(), "tags": ["y"]}},
        "onemcp": {"searchCache": False},
    }
    (tmp_path / "mcp.json").write_text(orjson.dumps(config).decode())
    presets = tmp_path / "presets.json"
    presets.write_text('{"presets": {"p": {"filter": "x or y"}}}')
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=tmp_path / "mcp.json") as hub, httpx.AsyncClient() as http:
            url = hub.url + "?preset=p"
            r = await http.post(url, json=INIT, headers=HEADERS)
            headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            call = req("tools/call", name="a__sleep", arguments={"seconds": 30}, task={"ttl": 60000})
            tid = (await http.post(url, json=call, headers=headers)).json()["result"]["task"]["taskId"]
            listed = (await http.post(url, json=req("tasks/list"), headers=headers)).json()["result"]["tasks"]
            assert [t["taskId"] for t in listed] == [tid]
            presets.write_text('{"presets": {"p": {"filter": "y"}}}')
            assert hub.app.reloader is not None
            hub.app.reloader.load_presets()  # as the file watcher does
            got = (await http.post(url, json=req("tasks/get", taskId=tid), headers=headers)).json()
            assert got["error"]["message"] == f"Task not found: {tid}"
            listed = (await http.post(url, json=req("tasks/list"), headers=headers)).json()["result"]["tasks"]
            assert listed == []  # as tasks/get says: out of its view


@pytest.mark.parametrize("untagged", [False, True])
async def test_a_task_whose_session_ended_asks_no_other_session(untagged: bool) -> None:
    # the session that made the task ended; the task runs on (its server cannot cancel it), and what it then asks
    # must not reach another client
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--uncancellable-tasks"), "b": fixture()}) as h:
            maker = await h.session()
            other = await h.session(capabilities={"elicitation": {}})
            created = await maker.ask("tools/call", {**tool_call("a__sleep", seconds=600), "task": {"ttl": 60000}})
            conn = h.app.hub.pool.get("a")
            assert conn is not None
            assert (await h.client.request("DELETE", headers=maker.headers()))[0].status == 200
            params: dict[str, Any] = {"message": "m", "requestedSchema": {"type": "object", "properties": {}}}
            if not untagged:
                upstream_id = created["result"]["task"]["taskId"].removeprefix("a:")
                params["_meta"] = {"io.modelcontextprotocol/related-task": {"taskId": upstream_id}}
            ask = {"jsonrpc": "2.0", "id": 99, "method": "elicitation/create", "params": params}
            answers: list[Any] = []
            asked: list[dict[str, Any]] = []
            async with other.listen() as stream, anyio.create_task_group() as tg:

                async def server_asks() -> None:  # as the task's server would, naming no call
                    answers.append(await h.app.hub.reverse.request(conn, ask, None))
                    tg.cancel_scope.cancel()

                async def watch() -> None:
                    while (msg := await stream.message()).get("method") != "elicitation/create":
                        pass
                    asked.append(msg)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                tg.start_soon(server_asks)
            assert asked == []
            assert answers[0]["error"]["code"] == -32603, answers


async def test_a_tasks_request_naming_nothing_is_not_guessed_to_be_another_sessions_call() -> None:
    # stdio: a request naming no call is taken to be the one call in flight; here that call is another
    # session's, and the request is the maker's task's (it names no task): it went to the other client
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker = await h.session()
            other = await h.session(capabilities={"elicitation": {}})
            conn = h.app.hub.pool.get("a")
            assert conn is not None
            seen: list[dict[str, Any]] = []
            async with anyio.create_task_group() as tg:

                async def others_call() -> None:
                    async with other.call("tools/call", tool_call("a__sleep", seconds=600)) as response:
                        seen.append(await response.message())
                        tg.cancel_scope.cancel()

                tg.start_soon(others_call)
                while not conn.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                made = await maker.ask("tools/call", {**tool_call("a__elicit", untagged=True), "task": {"ttl": 60000}})
                result = await maker.ask("tasks/result", {"taskId": made["result"]["task"]["taskId"]})
                tg.cancel_scope.cancel()
            assert seen == [] and "error" in result, (seen, result)


def test_a_task_never_seen_to_end_counts_as_running_only_for_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server need not say a task ended: past its ttl (an hour if none, a day at most) it no longer
    makes the server's untagged requests no one's to guess."""

    class Catalog:
        prefixed = True

    router = tasks.TaskRouter(Catalog())  # type: ignore[arg-type]

    class Conn:
        name = "a"

    conn, now = Conn(), [1000.0]
    monkeypatch.setattr("onemcp.hub.tasks.time.monotonic", lambda: now[0])
    for n, ttl in enumerate([60_000, None, 10**12]):
        router.record(conn, f"s{n}", {"task": {"taskId": f"t{n}", "status": "working", "ttl": ttl}})  # type: ignore[arg-type]
    assert router.running_for(conn) == {"s0", "s1", "s2"}  # type: ignore[arg-type]
    now[0] += 61
    assert router.running_for(conn) == {"s1", "s2"}  # type: ignore[arg-type]
    now[0] += tasks.RUNNING_DEFAULT
    assert router.running_for(conn) == {"s2"}  # type: ignore[arg-type]
    now[0] += tasks.RUNNING_MOST
    assert router.running_for(conn) == set()  # type: ignore[arg-type]


async def _notes_until_done(stream: Any) -> list[dict[str, Any]]:
    """A session's progress and status notifications, up to its task's completed status."""
    heard = []
    while True:
        msg = await stream.message()
        if msg.get("method") in ("notifications/progress", "notifications/tasks/status"):
            heard.append(msg)
            if msg["method"] == "notifications/tasks/status" and msg["params"]["status"] == "completed":
                return heard


async def test_a_tasks_progress_after_its_handle_reaches_its_session_under_the_clients_token() -> None:
    """s31/t F5: the server's progress after the call returned the task handle named the call's (ended) hub
    token: dropped. Now relayed to the task's session alone, with the client's token, until the task ends."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker, other = await h.session(), await h.session()
            async with maker.listen() as mine, other.listen() as theirs:
                arguments = tool_call("a__progress", steps=3, pause=0.05)
                call = {**arguments, "task": {"ttl": 60000}, "_meta": {"progressToken": "tok"}}
                body = maker.body("tools/call", call)
                _, replied = await h.client.request("POST", headers=maker.headers(), body=body)
                tid = replied[-1]["result"]["task"]["taskId"]
                heard = replied[:-1] + await _notes_until_done(mine)  # a step said before the handle: on its POST
                # the other session's own task, after: anything of the maker's sent its way would come first
                await other.ask("tools/call", {**tool_call("a__sleep", seconds=0), "task": {"ttl": 60000}})
                overheard = await _notes_until_done(theirs)
            progress = [msg["params"] for msg in heard if msg["method"] == "notifications/progress"]
            assert sorted((p["progressToken"], p["progress"], p["total"]) for p in progress) == [
                ("tok", 1, 3),
                ("tok", 2, 3),
                ("tok", 3, 3),
            ]
            assert heard[-1]["params"]["taskId"] == tid
            assert [msg["method"] for msg in overheard] == ["notifications/tasks/status"]
            router = h.app.hub.tasks
            assert not router._early and not router._early_progress  # handed over, none left held
            assert not any(router._progress.values())  # the task ended: its token is routed no more


def test_a_tasks_progress_is_routed_by_its_connection_and_token_and_held_until_the_task_is_recorded() -> None:
    class Catalog:
        prefixed = True

    class Conn:
        name = "a"

    router = tasks.TaskRouter(Catalog())  # type: ignore[arg-type]
    conn, other = Conn(), Conn()

    def note(token: object, n: int) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": n}}

    assert router.progress(conn, note(7, 1)) is None  # type: ignore[arg-type]  # before the handle: held
    assert router.progress(conn, note("7", 1)) is None  # type: ignore[arg-type]  # not a hub token: dropped
    assert list(router._early_progress) == [(id(conn), 7)]
    handle = {"task": {"taskId": "t1", "status": "working", "ttl": 60_000}}
    early = router.record(conn, "s1", handle, (7, "tok"))  # type: ignore[arg-type]
    assert early == [{**note("tok", 1)}]  # handed over under the client's token
    assert router.progress(conn, note(7, 2)) == ("s1", note("tok", 2))  # type: ignore[arg-type]
    assert router.progress(other, note(7, 2)) is None  # type: ignore[arg-type]  # another connection's 7: not it
    router.rewrite(conn, {"taskId": "t1", "status": "completed"})  # type: ignore[arg-type]
    assert router.progress(conn, note(7, 3)) is None  # type: ignore[arg-type]  # it ended: routed no more
    assert not router._progress.get(conn)  # type: ignore[call-overload]
    for n in range(tasks.EARLY_STATUS + 10):  # stray progress (calls that ended making no task): bounded
        router.progress(conn, note(100 + n, 1))  # type: ignore[arg-type]
    assert len(router._early_progress) == tasks.EARLY_STATUS


@pytest.mark.parametrize("end", ["delete", "expiry"])
async def test_the_tasks_of_a_session_that_ended_are_cancelled_upstream(end: str) -> None:
    # hunt H (s31): a task went on running upstream after its session ended, though no one could reach it any more
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker = await h.session()
            created = await maker.ask("tools/call", {**tool_call("a__sleep", seconds=600), "task": {"ttl": 60000}})
            done = await maker.ask("tools/call", {**tool_call("a__sleep", seconds=0), "task": {"ttl": 60000}})
            upstream_id = created["result"]["task"]["taskId"].removeprefix("a:")
            finished_id = done["result"]["task"]["taskId"]
            assert (await maker.ask("tasks/result", {"taskId": finished_id}))["result"]  # seen to end: not cancelled
            conn = h.app.hub.pool.get("a")
            assert conn is not None
            if end == "delete":
                assert (await h.client.request("DELETE", headers=maker.headers()))[0].status == 200
            else:  # what the idle expiry does
                assert h.app.hub.sessions.forget(maker.id) is not None
            while (await conn.request("tasks/get", {"taskId": upstream_id}))["status"] != "cancelled":
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (cancelled in the background)
            finished = await conn.request("tasks/get", {"taskId": finished_id.removeprefix("a:")})
            assert finished["status"] == "completed"
            assert not h.app.hub.tasks.running_for(conn)  # its end was seen: no longer held for the session


@pytest.mark.parametrize("how", ["ends later", "its ttl passes", "the server forgot it", "its connection closed"])
async def test_an_ended_sessions_task_is_forgotten_once_nothing_more_can_come_of_it(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s37 h4: a task of an ended session not seen to end stays routed to it (so that what it asks reaches no
    one else); it stayed until MAX_ORPHANS newer ones pushed it out, even once nothing more could come of it:
    its end was said to no session and so never read, its ttl passed, its connection closed, or the server
    answered the hub's tasks/cancel that it knows no such task."""
    monkeypatch.setattr(pool, "BACKOFF_FIRST", 0.0)
    cancellable = how in ("the server forgot it", "its connection closed")
    with anyio.fail_after(DEADLINE):
        flags = "--tasks" if cancellable else "--uncancellable-tasks"
        async with inprocess_hub({"a": fixture(flags), "b": fixture()}) as h:
            maker = await h.session()
            table = TaskTable.of(h.upstreams.current("a"))
            ttl = 1 if how == "its ttl passes" else 60000
            made = await maker.ask("tools/call", {**tool_call("a__hold"), "task": {"ttl": ttl}})
            assert made["result"]["task"]["status"] == "working", made
            (upstream_id,) = table.tasks
            if how == "the server forgot it":  # silently: its ttl ran out there
                table.expire(upstream_id)
            elif how == "its connection closed":
                restarted = h.upstreams.made
                assert "error" in await maker.ask("tools/call", tool_call("a__crash"))
                table.expire(upstream_id)  # (in memory its run outlives the server's end: a process's would not)
                await restarted.wait()
            assert (await h.client.request("DELETE", headers=maker.headers()))[0].status == 200
            router = h.app.hub.tasks
            if how == "ends later":
                table.runners[upstream_id].cancel()  # its status says so
            elif how == "its ttl passes":
                table.expire(upstream_id)
                (orphan,) = router._orphans.values()
                while orphan.until >= time.monotonic():
                    await anyio.sleep(0.001)  # allowed-sleep: polling with a deadline (its 1 ms ttl)
                other = await h.session()  # looked at when a session ends
                assert (await h.client.request("DELETE", headers=other.headers()))[0].status == 200
            while router._orphans:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline (the test's)


async def test_an_ended_sessions_task_stays_routed_when_its_cancel_fails_for_another_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any error answer to the hub's tasks/cancel made it forget the task (s37, the reread): only "no such task"
    (-32602, as a server answers for a task it does not know or that has ended) says nothing more can come of
    it. A failure of the server's own (-32603: busy) leaves the task, which may still run, routed to its ended
    session (what it asks reaches no one else) until it ends, its ttl passes or its connection closes."""
    asked = anyio.Event()

    async def busy(self: TaskTable, call: Any) -> Any:
        asked.set()
        raise JsonRpcError(INTERNAL_ERROR, "the task store is busy")

    monkeypatch.setattr(TaskTable, "cancel", busy)
    caplog.set_level("INFO", logger="onemcp.tasks")
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks"), "b": fixture()}) as h:
            maker = await h.session()
            made = await maker.ask("tools/call", {**tool_call("a__hold"), "task": {"ttl": 60000}})
            assert made["result"]["task"]["status"] == "working", made
            assert (await h.client.request("DELETE", headers=maker.headers()))[0].status == 200
            await asked.wait()
            while "of ended session" not in caplog.text:  # the answer read
                await anyio.sleep(0.01)  # allowed-sleep: polling the log with a deadline (the test's)
            assert "not cancelled" in caplog.text and "the task store is busy" in caplog.text, caplog.text
            assert len(h.app.hub.tasks._orphans) == 1  # still routed to its ended session


async def test_a_revived_sessions_task_from_before_the_restart_is_a_clear_error(tmp_path: Path) -> None:
    # hunt H (s31): after a restart, tasks/get of a task the session made before it answered a bare "Task not found"
    path = tmp_path / "mcp.json"
    config = {"mcpServers": {"a": stdio("--tasks")}}
    path.write_text(orjson.dumps(config).decode())
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            call = req("tools/call", name="sleep", arguments={"seconds": 600}, task={"ttl": 60000})
            task_id = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"]
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=None) as http:
            error = (await http.post(hub.url, json=req("tasks/get", taskId=task_id), headers=headers)).json()["error"]
            assert error["code"] == -32602
            assert error["message"].startswith(f"Task not found: {task_id}") and "restarted" in error["message"], error
            # one it never made is not found, with the same hint (the hub cannot tell them apart)
            error = (await http.post(hub.url, json=req("tasks/get", taskId="nope"), headers=headers)).json()["error"]
            assert "Task not found: nope" in error["message"]


async def test_tasks_list_answers_without_a_server_that_does_not_answer_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that never answers tasks/list held the whole merged list for its `timeout` (60 s by
    default): the hub waits for each one `LIST_WAIT` at most, answers with the others' tasks, and says
    in its log which server was left out (g's L1), and in the result's `_meta` (`onemcp/serversLeftOut`),
    where a client can read it: it was only logged (s33/b)."""
    monkeypatch.setattr(tasks, "LIST_WAIT", 0.3)
    config = {"mcpServers": {"a": stdio("--tasks"), "b": {**stdio("--tasks"), "timeout": 30}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            made = []
            for tool in ("a__sleep", "b__sleep"):
                call = req("tools/call", name=tool, arguments={"seconds": 60}, task={"ttl": 60000})
                made.append((await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"])
            b = hub.app.hub.pool.connections["b"]
            async with anyio.create_task_group() as tg:
                freeze = req("tools/call", rid=2, name="b__freeze", arguments={"seconds": 3})
                tg.start_soon(lambda: http.post(hub.url, json=freeze, headers=headers))  # b stops answering
                while not b.in_flight:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                listed = (await http.post(hub.url, json=req("tasks/list", rid=3), headers=headers)).json()
                tg.cancel_scope.cancel()
    # a's alone: b's is left out (b answers once it thaws, after 3 s: waited for, both were listed)
    assert [t["taskId"] for t in listed["result"]["tasks"]] == [made[0]]
    assert listed["result"]["_meta"] == {"onemcp/serversLeftOut": ["b"]}
    assert "tasks/list: b did not answer within 0.3s: its tasks are left out" in caplog.text


async def test_a_tasks_result_waits_for_the_task_past_the_servers_timeout() -> None:
    """tasks/result blocks until its task ends (a task is how a call outlives a request's timeout): the
    server's `timeout` (1 s here) bounded its silence as for any request, so the wait for a 2 s task
    failed '[a] tasks/result timed out after 1s' (and the hub cancelled it upstream) while the task ran
    on. `maxTotalTimeout` still bounds it."""
    config = {"mcpServers": {"a": {**stdio("--tasks"), "timeout": 1}}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            call = req("tools/call", name="sleep", arguments={"seconds": 2}, task={"ttl": 60000})
            task = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]
            result = await http.post(hub.url, json=req("tasks/result", 2, taskId=task["taskId"]), headers=headers)
    body = result.json()
    assert body.get("result", {}).get("content") == [{"type": "text", "text": "slept 2"}], body


async def test_tasks_list_follows_each_servers_pages_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """tasks/list reads every page of a server's list (following `nextCursor`), at most LIST_PAGES: the
    server pages 2 tasks at a time; the session's 5 tasks are all listed, and a LIST_PAGES of 2 shows 4."""
    config = {"mcpServers": {"a": stdio("--tasks", "--page-size", "2")}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            made = []
            for n in range(5):
                call = req("tools/call", rid=10 + n, name="a__sleep", arguments={"seconds": 60}, task={"ttl": 60000})
                made.append((await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"])
            listed = (await http.post(hub.url, json=req("tasks/list", rid=2), headers=headers)).json()["result"]
            assert sorted(t["taskId"] for t in listed["tasks"]) == sorted(made) and "_meta" not in listed
            monkeypatch.setattr(tasks, "LIST_PAGES", 2)  # a server that pages without end: its first pages
            listed = (await http.post(hub.url, json=req("tasks/list", rid=3), headers=headers)).json()["result"]
            assert len(listed["tasks"]) == 4


def test_held_statuses_are_forgotten_after_early_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status held for a task the hub never records (its creating reply never came) goes after
    EARLY_SECONDS: the next one held drops it."""
    router = tasks.TaskRouter(None)  # type: ignore[arg-type]  # holding needs no catalog
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # a sync test: no event loop reads it meanwhile

    class Conn:
        name = "a"

    conn = Conn()
    assert router.hold(conn, {"params": {"taskId": "old", "status": "working"}})  # type: ignore[arg-type]
    now[0] += tasks.EARLY_SECONDS - 1
    assert router.hold(conn, {"params": {"taskId": "newer", "status": "working"}})  # type: ignore[arg-type]
    assert [key[1] for key in router._early] == ["old", "newer"]
    now[0] += 2  # "old" is past EARLY_SECONDS, "newer" is not
    assert router.hold(conn, {"params": {"taskId": "newest", "status": "working"}})  # type: ignore[arg-type]
    assert [key[1] for key in router._early] == ["newer", "newest"]


async def test_a_revived_session_is_told_its_tasks_from_before_the_restart_are_not_kept(tmp_path: Path) -> None:
    """The task table is in memory: after a restart, a revived session's tasks/* on a task it made before
    answer 'Task not found' saying why and what to do; a new task of the revived session works."""
    config = {"mcpServers": {"a": stdio("--tasks")}}
    path = tmp_path / "mcp.json"
    path.write_text(orjson.dumps(config).decode())
    call = req("tools/call", name="a__sleep", arguments={"seconds": 0.01}, task={"ttl": 60000})
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=None) as http:
            headers = await raw_session(http, hub.url)
            before = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"]
        async with running_hub(config, config_path=path) as hub, httpx.AsyncClient(timeout=None) as http:
            got = (await http.post(hub.url, json=req("tasks/get", rid=2, taskId=before), headers=headers)).json()
            message = got["error"]["message"]
            assert message.startswith(f"Task not found: {before} (this session was resumed after the hub restarted")
            assert message.endswith("call the tool again)")
            after = (await http.post(hub.url, json=call, headers=headers)).json()["result"]["task"]["taskId"]
            got = (await http.post(hub.url, json=req("tasks/get", rid=3, taskId=after), headers=headers)).json()
            assert got["result"]["taskId"] == after


async def test_a_task_handle_with_an_id_too_long_to_keep_is_an_error_and_nothing_is_kept() -> None:
    """h7: the hub keeps each task's id (the server's, and the one its client sees) while the task runs,
    up to 10,000 tasks: a server answering each task-augmented call with a 60 MB id held gigabytes.
    A handle whose id is over 1,024 characters is answered -32603 naming the server, and not kept."""
    with anyio.fail_after(DEADLINE):
        async with inprocess_hub({"a": fixture("--tasks")}) as h:
            s = await h.session()
            call = {**tool_call("whoami", mistyped_handle={"taskId": "x" * 100_000}), "task": {"ttl": 60000}}
            refused = await s.ask("tools/call", call)
            assert h.app.hub.tasks._count == 0
            fine = await s.ask("tools/call", {**tool_call("whoami"), "task": {"ttl": 60000}})
            assert h.app.hub.tasks._count == 1
    why = "task.taskId is 100000 characters long, over the hub's 1024"
    assert refused["error"] == {
        "code": -32603,
        "message": f"[a] the server answered tools/call with a result a client cannot read: {why}",
    }
    assert "taskId" in fine["result"]["task"]
