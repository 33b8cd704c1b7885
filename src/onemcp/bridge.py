"""Bridging the eras' ways of asking a client for input.

A 2026-07-28 upstream asks by answering `resultType: "input_required"` with
`inputRequests` and a `requestState`; a legacy client can only be asked with live
server->client requests. For a legacy client the hub puts each input request to the
client as a request of its own (on the call's stream), then retries the upstream call
with the answers and the untouched `requestState`, for up to `MAX_ROUNDS` rounds.
A modern client gets input-required results passed through untouched.
"""

from __future__ import annotations

from typing import Any

from onemcp.downstream.session import ReversePending, Session
from onemcp.protocol.errors import HubError, InvalidRequest
from onemcp.protocol.jsonrpc import Message
from onemcp.reverse import REVERSE_CAPABILITY
from onemcp.upstream.call import Call

INPUT_REQUIRED = "input_required"
MAX_ROUNDS = 8


def input_required(msg: Message) -> dict[str, Any] | None:
    """The input-required result in a reply, if that is what it is."""
    result = msg.get("result")
    if isinstance(result, dict) and result.get("resultType") == INPUT_REQUIRED:
        return result
    return None


async def ask_client(session: Session, emit: Any, requests: object) -> dict[str, Any]:
    """Put each input request to a legacy client as a live request; the answers by key."""
    if not isinstance(requests, dict):
        return {}
    answers: dict[str, Any] = {}
    for key, request in requests.items():
        method = request.get("method") if isinstance(request, dict) else None
        needed = REVERSE_CAPABILITY.get(str(method))
        if needed is None:
            raise InvalidRequest(f"the upstream asked for input with {method!r}, which onemcp cannot forward")
        if needed not in session.client_capabilities:
            raise InvalidRequest(
                f"the upstream needs {method}, but this client did not declare the {needed!r} capability"
            )
        rid = session.new_reverse_id()
        pending = ReversePending()
        session.reverse[rid] = pending
        try:
            params = request.get("params")
            await emit(
                {"jsonrpc": "2.0", "id": rid, "method": method, "params": params if isinstance(params, dict) else {}}
            )
            await pending.done.wait()
        finally:
            session.reverse.pop(rid, None)
        reply = pending.reply
        if reply is None or not isinstance(reply.get("result"), dict):
            err = reply.get("error") if reply is not None else None
            detail = err.get("message") if isinstance(err, dict) else "no answer"
            raise HubError(f"the client did not fulfil {method}: {detail}")
        answers[key] = reply["result"]
    return answers


def retry_request(call: Call, result: dict[str, Any], answers: dict[str, Any]) -> Message:
    """The original request again, with the answers and the upstream's requestState."""
    params = dict(call.request.get("params") or {})
    meta = dict(params.get("_meta") or {})
    if call.progress_token is not None:
        meta["progressToken"] = call.progress_token  # begin() maps it again
    else:
        meta.pop("progressToken", None)
    if meta:
        params["_meta"] = meta
    params["inputResponses"] = answers
    if "requestState" in result:
        params["requestState"] = result["requestState"]
    else:
        params.pop("requestState", None)
    return {"jsonrpc": "2.0", "id": call.downstream_id, "method": call.method, "params": params}
