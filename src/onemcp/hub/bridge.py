"""Bridging the eras' ways of asking a client for input.

A 2026-07-28 upstream asks by answering `resultType: "input_required"` with
`inputRequests` and a `requestState`; a legacy upstream asks with live server->client
requests. Four cases:

* legacy client, modern upstream: the hub puts each input request to the client as a
  request of its own (on the call's stream), then retries the upstream call with the
  answers and the untouched `requestState`, for up to `MAX_ROUNDS` rounds;
* modern client, modern upstream: input-required results pass through untouched;
* modern client, legacy upstream: the hub parks the upstream call (its request stays
  unanswered), answers the client input_required with a signed `requestState`, and the
  client's retry answers the parked request and resumes the call (`Parking`);
* legacy client, legacy upstream: requests are forwarded (see `reverse`).

A legacy upstream may also refuse a call with -32042 (the user must visit URLs first), a code
2026-07-28 forbids: a modern client gets an input_required result asking for those URL visits
instead, and its retry runs the call again (`Parking.ask_urls` / `rerun`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from onemcp.hub.session import ReversePending, Session
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    INTERNAL_ERROR,
    MISSING_CLIENT_CAPABILITY,
    HubError,
    InvalidParams,
    InvalidRequest,
    SessionEnded,
    echo,
)
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.methods import REVERSE_CAPABILITY
from onemcp.upstream.call import CANCELLED, Call
from onemcp.upstream.connection import UpstreamConnection

audit = logging.getLogger("onemcp.audit")
INPUT_REQUIRED = "input_required"
MAX_ROUNDS = 8


def input_required(msg: Message) -> dict[str, Any] | None:
    """The input-required result in a reply, if that is what it is."""
    result = msg.get("result")
    if isinstance(result, dict) and result.get("resultType") == INPUT_REQUIRED:
        return result
    return None


async def ask_for_call(
    session: Session, conn: UpstreamConnection, call: Call, emit: Any, requests: object
) -> dict[str, Any] | None:
    """`ask_client` for the client of `call` (answered input_required), which may cancel its request
    meanwhile: the answers; None when it cancelled (a cancelled request is neither answered nor retried
    upstream); SessionEnded when its session ended. While it is asked, the request's entry in
    `in_flight` is a stand-in that its `notifications/cancelled` finishes (the call itself has its reply)."""
    stand_in = Call(conn.name, call.hub_id, call.downstream_id, call.timeout, origin=session, method=call.method)
    session.in_flight[call.downstream_id] = (conn, stand_in)  # type: ignore[index]
    answers: dict[str, Any] = {}
    failure: HubError | None = None

    async def ask() -> None:
        nonlocal answers, failure
        try:
            answers = await ask_client(session, emit, requests, server=conn.label)
        except HubError as exc:  # raised below, as it came (not inside a task group's ExceptionGroup)
            failure = exc
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await stand_in.result()  # finished only by a cancel or the session's end; else cancelled by `ask`
        tg.cancel_scope.cancel()
    if stand_in.done:
        if await stand_in.result() is CANCELLED:
            return None
        raise SessionEnded("the session ended while this request was in flight (its client was asked for input)")
    if failure is not None:
        raise failure
    return answers


async def ask_client(session: Session, emit: Any, requests: object, *, server: str = "") -> dict[str, Any]:
    """Put each input request to a legacy client as a live request; the answers by key. One the hub stops
    waiting for unanswered (a deadline, the client's cancel) is withdrawn: the client is told (on its
    session's stream, the call's being about to end), so that it stops asking its user or its model."""
    if not isinstance(requests, dict):
        return {}
    answers: dict[str, Any] = {}
    for key, request in requests.items():
        method = request.get("method") if isinstance(request, dict) else None
        needed = REVERSE_CAPABILITY.get(str(method))
        if needed is None:
            raise InvalidRequest(f"the upstream asked for input with {echo(repr(method))}, which onemcp cannot forward")
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
            if not pending.done.is_set() and not session.closed:
                why = f"[{server}] {method} withdrawn: the call it was asked for ended"
                session.post(jsonrpc.notification("notifications/cancelled", {"requestId": rid, "reason": why}))
        reply = pending.reply
        if reply is None and session.closed:
            raise SessionEnded(f"the session ended while this request was in flight (its client was asked {method})")
        if reply is None or not isinstance(reply.get("result"), dict):
            err = reply.get("error") if reply is not None else None
            detail = err.get("message") if isinstance(err, dict) else "no answer"
            raise HubError(f"the client did not fulfil {method}: {echo(detail)}")
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


# --------------------------------------------------------------------------------------------
# A legacy upstream asks a modern client: park the upstream call, answer input_required.

STATE_PREFIX = "onemcp1."
PARK_SECONDS = 600.0  # an elicitation's: a person answers it
ANOTHER_CALL = "requestState belongs to another call: retry the call it was given for"


def park_seconds(method: str, timeout: float) -> float:
    """How long a call parked for `method` waits for its client's retry. An elicitation is a person's to
    answer: PARK_SECONDS. Sampling and roots are the client's own (a model, a list), and the server's
    `timeout` is what a legacy client gets to answer them: that, up to PARK_SECONDS. A round its client
    never retries holds the upstream call (and one of its principal's `maxPendingClientRequestsPerSession`)
    that long."""
    return PARK_SECONDS if method == "elicitation/create" else min(timeout, PARK_SECONDS)


@dataclass(eq=False)
class Parked:
    conn: UpstreamConnection
    call: Call
    key: str  # the input request's key (the hub id of the upstream's request)
    pending: ReversePending
    expires: float
    owner: str  # the key of the principal whose call it is: only it may resume it


class Parking:
    """Upstream calls waiting for a modern client's input, behind an HMAC-signed requestState.

    The state names a parked call and its expiry, signed with a key made at start: a client
    cannot forge or alter it, and it dies with the hub (a restarted hub says so clearly).
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._previous: bytes | None = None  # the key before the replicas' changed: its states still verify
        self._parked: dict[str, Parked] = {}
        self.tag = ""  # this replica's, in the states it signs (`replicas`: another replica resumes it here)

    @property
    def key(self) -> bytes:
        return self._key

    def share_key(self, key: bytes) -> None:
        """Sign with `key`, which every replica has (a state signed by one verifies on all); the states
        signed with the key before still verify (the calls parked with it are answered)."""
        if key != self._key:
            self._previous, self._key = self._key, key

    def _sign(self, body: bytes, key: bytes | None = None) -> str:
        return hmac.new(key or self._key, body, hashlib.sha256).hexdigest()[:32]

    def _signed(self, body: bytes, signature: str) -> bool:
        keys = (self._key, self._previous) if self._previous is not None else (self._key,)
        return any(hmac.compare_digest(signature, self._sign(body, key)) for key in keys)

    def park(self, conn: UpstreamConnection, call: Call, ask: Message, pending: ReversePending, owner: str) -> Message:
        """Keep `call` waiting; the input-required reply that asks the client instead."""
        handle = secrets.token_hex(8)
        expires = time.time() + park_seconds(str(ask.get("method")), conn.config.timeout)
        doc: dict[str, Any] = {"h": handle, "e": int(expires)}
        if self.tag:
            doc["r"] = self.tag
        body = base64.urlsafe_b64encode(orjson.dumps(doc))
        state = STATE_PREFIX + body.decode() + "." + self._sign(body)
        key = str(ask["id"])
        call.parked = True
        self._parked[handle] = Parked(conn, call, key, pending, expires, owner)
        request = {"method": ask["method"], "params": ask.get("params") or {}}
        result = {"resultType": INPUT_REQUIRED, "inputRequests": {key: request}, "requestState": state}
        return {"jsonrpc": "2.0", "id": call.downstream_id, "result": result}

    def ask_urls(self, session: Session, msg: Message) -> Message:
        """A -32042 error (URLs the user must visit first) as a 2026-07-28 client can take it: an
        input_required result asking for each visit, whose retry runs the call again (`rerun`)."""
        error = msg["error"]
        data = error.get("data")
        asked = data.get("elicitations") if isinstance(data, dict) else None
        visits = [
            {"mode": "url", "url": item["url"], "message": str(item.get("message") or error.get("message") or "")}
            for item in (asked if isinstance(asked, list) else [])
            if isinstance(item, dict) and isinstance(item.get("url"), str)
        ]
        if not visits:
            why = f"{error.get('message')} (the server asked for URL elicitations but named no URL)"
            return {"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": INTERNAL_ERROR, "message": why}}
        capability = session.client_capabilities.get("elicitation")
        if not isinstance(capability, dict) or "url" not in capability:
            why = "the server needs the user to open a URL, and this client did not declare URL elicitation"
            needed: dict[str, Any] = {"elicitation": {"url": {}}}
            missing = {"code": MISSING_CLIENT_CAPABILITY, "message": why, "data": {"requiredCapabilities": needed}}
            return {"jsonrpc": "2.0", "id": msg.get("id"), "error": missing}
        keys = [f"url-{n}" for n in range(len(visits))]
        body = base64.urlsafe_b64encode(orjson.dumps({"u": keys, "e": int(time.time() + PARK_SECONDS)}))
        state = STATE_PREFIX + body.decode() + "." + self._sign(body)
        requests = {
            key: {"method": "elicitation/create", "params": visit} for key, visit in zip(keys, visits, strict=True)
        }
        result = {"resultType": INPUT_REQUIRED, "inputRequests": requests, "requestState": state}
        return {"jsonrpc": "2.0", "id": msg.get("id"), "result": result}

    def rerun(self, state: str, answers: object) -> bool:
        """Whether `state` (this hub's) asked for URL visits: then the retry is the call again, as
        if new. InvalidParams when the user did not accept them all, or the state has expired."""
        doc = self._open(state)
        keys = doc.get("u")
        if not isinstance(keys, list):
            return False  # a parked call's
        if time.time() > float(doc.get("e", 0)):
            raise InvalidParams("requestState has expired; call again from the start")
        given = answers if isinstance(answers, dict) else {}
        for key in keys:
            answer = given.get(key)
            action = answer.get("action") if isinstance(answer, dict) else None
            if action != "accept":
                why = "has no answer" if action is None else f"was answered {echo(repr(action))}"
                raise InvalidParams(f"the URL visit {key!r} {why}: the server cannot go on without it")
        return True

    def owns(self, state: object) -> bool:
        """Whether `state` is one this hub (or a replica sharing its key) signed. Another onemcp's
        state has the same prefix: behind this hub it passes through to that upstream untouched,
        like any upstream's own state."""
        if not isinstance(state, str) or not state.startswith(STATE_PREFIX):
            return False
        try:
            self._open(state)
        except InvalidParams:
            return False
        return True

    def _open(self, state: str) -> dict[str, Any]:
        """The signed document in a state (InvalidParams if it was not signed with this hub's key)."""
        body, _, signature = state[len(STATE_PREFIX) :].rpartition(".")
        if not body or not self._signed(body.encode(), signature):
            raise InvalidParams("requestState was not issued by this hub or was altered")
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidParams("requestState is malformed") from None
        if not isinstance(doc, dict):
            raise InvalidParams("requestState is malformed")
        return doc

    def replica(self, state: str) -> str:
        """The replica whose call a (genuine) state resumes: "" for a hub that runs alone."""
        return str(self._open(state).get("r", ""))

    def _mine(self, doc: dict[str, Any], principal: str) -> Parked | None:
        handle = str(doc.get("h"))
        parked = self._parked.get(handle)
        if parked is not None and parked.owner != principal:
            audit.info(
                "auth denied principal=%s entry=mcp-2026 op=resume target=%s reason=requestState of another principal",
                principal.split(" ", 1)[0],
                handle,
            )
            return None  # as if it did not exist; the owner may still resume it
        return parked

    def origin(self, state: str, principal: str) -> Session | None:
        """The session of the call a state resumes, if it is parked here and `principal`'s (for `replicas`)."""
        try:
            parked = self._mine(self._open(state), principal)
        except InvalidParams:
            return None
        origin = parked.call.origin if parked is not None else None
        return origin if isinstance(origin, Session) else None

    def resume(
        self, state: str, method: str, answers: object, principal: str, target: tuple[str, str, str] | None = None
    ) -> Parked:
        """Hand the client's answer to the waiting upstream; the parked call, to drive on. `target`: what
        the retry names, as routed (server, param, upstream value): it must be the parked call's. A
        retry that names another call leaves the state usable; an expired one ends the parked call."""
        doc = self._open(state)
        parked = self._mine(doc, principal)
        if parked is None:
            raise InvalidParams("requestState has expired (or was already used); call again from the start")
        if time.time() > float(doc.get("e", 0)):
            self._parked.pop(str(doc.get("h")), None)
            self._abandon(parked, "the client came back after its requestState expired")
            raise InvalidParams("requestState has expired (or was already used); call again from the start")
        if parked.call.method != method:
            raise InvalidParams(f"requestState belongs to a {parked.call.method} call, not {method}")
        if target is not None:
            server, param, value = target
            sent = parked.call.request.get("params")
            if isinstance(sent, dict) and param.startswith("ref."):  # a completion's: inside its ref
                ref = sent.get("ref")
                sent, param = (ref if isinstance(ref, dict) else {}), param.removeprefix("ref.")
            if server != parked.call.server or not isinstance(sent, dict) or sent.get(param) != value:
                raise InvalidParams(ANOTHER_CALL)
        self._parked.pop(str(doc.get("h")), None)
        answer = answers.get(parked.key) if isinstance(answers, dict) else None
        if not isinstance(answer, dict):
            self._abandon(parked, "the client sent no answer for the input request")
            raise InvalidParams(f"inputResponses has no answer for {parked.key!r}")
        parked.call.parked = False
        parked.pending.reply = {"jsonrpc": "2.0", "result": answer}
        parked.pending.done.set()
        return parked

    def _abandon(self, parked: Parked, why: str) -> None:
        parked.pending.reply = {"jsonrpc": "2.0", "error": {"code": -32603, "message": why}}
        parked.pending.done.set()
        parked.conn.abandon(parked.call, why)

    def expire(self) -> int:
        now = time.time()
        stale = [h for h, p in self._parked.items() if p.expires < now]
        for handle in stale:
            self._abandon(self._parked.pop(handle), "the client did not come back with its input in time")
        return len(stale)
