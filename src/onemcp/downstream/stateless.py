"""A 2026-07-28 ("modern") request answered, whatever wire it came on: the era's core.

Owns what POST /mcp (`modern.py`) and `serve --transport stdio` (`stdio.py`) do alike with a
stateless request once their entry point has admitted it: telling it from the legacy era where
no header says so (stdio), checking its `_meta` envelope and params, the one-request `Session` it
runs in (under the `Access` its entry point decided), `server/discover`, complete lists, the
related messages its reply may bring (progress and logs only), and `resultType` / `ttlMs` /
`cacheScope` and the hub's `serverInfo` on every result. Not the wire: headers and HTTP statuses
are `modern.py`'s, lines are `stdio.py`'s, and each serves `subscriptions/listen` over `listen.py`.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from onemcp.auth.access import Access
from onemcp.downstream.exchange import answer
from onemcp.hub.core import Hub
from onemcp.hub.forward import Emit
from onemcp.hub.listeners import Listener
from onemcp.hub.session import Session, check_client_state
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import UNSUPPORTED_VERSION, HubError, InvalidParams, MethodNotFound, ProtocolError, echo
from onemcp.protocol.jsonrpc import Message, RequestId
from onemcp.protocol.meta import CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL, PROTOCOL_VERSION, SERVER_INFO
from onemcp.protocol.methods import KIND_BY_METHOD, LOG_LEVELS
from onemcp.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, era_of

MODERN_METHODS = frozenset(
    {
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "subscriptions/listen",
    }
)
CACHED = frozenset({*KIND_BY_METHOD, "resources/read"})
TTL_MS = 0
CACHE_SCOPE = "private"  # what a client sees may depend on who it is (views, auth)
RELATED = frozenset({"notifications/progress", "notifications/message"})  # all a modern reply may bring first


class UnsupportedVersion(ProtocolError):
    code = UNSUPPORTED_VERSION

    def __init__(self, requested: str) -> None:
        super().__init__(
            f"Unsupported protocol version: {echo(requested)}",
            data={"supported": [*MODERN_VERSIONS, *LEGACY_VERSIONS], "requested": echo(requested)},
        )


def supported_error(requested: str, rid: Any = None) -> Message:
    return jsonrpc.error(rid, UnsupportedVersion(requested).to_error())


def claims_modern(msg: Message) -> bool:
    """Is this request of the 2026-07-28 era, where no header says so (stdio)?

    It is when its `params._meta` names a protocol version that is not a legacy one: the key is
    reserved for the envelope, so a legacy client never sends it (a half-built or unknown one is
    then refused in the era's terms). `server/discover` exists only in that era; `initialize` is
    the legacy handshake whatever it carries.
    """
    method = msg.get("method")
    if method == "initialize":
        return False
    if method == "server/discover":
        return True
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or PROTOCOL_VERSION not in meta:
        return False
    version = meta[PROTOCOL_VERSION]
    return not (isinstance(version, str) and era_of(version) == "legacy")


def envelope(params: object) -> dict[str, Any]:
    """The request's `_meta`, checked to carry the envelope (InvalidParams says what is missing)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(meta, dict):
        raise InvalidParams(f"params._meta must be an object carrying {PROTOCOL_VERSION}")
    if not isinstance(meta.get(PROTOCOL_VERSION), str) or not isinstance(meta.get(CLIENT_CAPABILITIES), dict):
        raise InvalidParams(f"params._meta needs {PROTOCOL_VERSION} and {CLIENT_CAPABILITIES}")
    return meta


def check_version(meta: dict[str, Any]) -> None:
    """A version the envelope names that this era does not serve (UnsupportedVersion, with the list)."""
    version = meta[PROTOCOL_VERSION]
    if version not in MODERN_VERSIONS:
        raise UnsupportedVersion(version)


def check_method(method: object) -> None:
    """Legacy-only and unknown methods do not exist in this era (MethodNotFound)."""
    if method not in MODERN_METHODS:
        raise MethodNotFound(f"Method not found: {echo(method)}")


def check_params(params: dict[str, Any]) -> None:
    """What the hub may have to read itself: `inputResponses` (a legacy upstream never sees them)
    and the log level (InvalidParams)."""
    responses = params.get("inputResponses", {})
    if not isinstance(responses, dict) or not all(isinstance(r, dict) for r in responses.values()):
        raise InvalidParams("params.inputResponses must map each input request's key to an object")
    level = params["_meta"].get(LOG_LEVEL)
    if level is not None and level not in LOG_LEVELS:
        raise InvalidParams(f"{LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")


def scoped(emit: Emit) -> Emit:
    """`emit`, passing on only what a modern reply may carry before it: progress and logs."""

    async def related(msg: Message) -> None:
        if msg.get("method") in RELATED:
            await emit(msg)

    return related


class ModernRequests:
    """The hub's answers to admitted 2026-07-28 requests, for an entry point whose sessions are `prefix`-N."""

    def __init__(self, hub: Hub, prefix: str) -> None:
        self.hub = hub
        self._prefix = prefix
        self._ids = itertools.count(1)
        info = orjson.dumps(hub.server_info())
        self._list_suffix = (
            f',"resultType":"complete","ttlMs":{TTL_MS},"cacheScope":"{CACHE_SCOPE}","_meta":{{"{SERVER_INFO}":'.encode()
            + info
            + b"}}"
        )

    def session(self, access: Access, meta: dict[str, Any]) -> Session:
        """The one-request session of a request whose envelope is `meta` (checked), bound to the template
        instances its context renders (HubError: one does not render)."""
        info = meta.get(CLIENT_INFO)
        session = Session(
            access=access,
            id=f"{self._prefix}-{next(self._ids)}",
            transport="modern",
            protocol_version=meta[PROTOCOL_VERSION],
            client_capabilities=meta[CLIENT_CAPABILITIES],
            client_info=info if isinstance(info, dict) else {},
            initialized=True,
            log_level=meta.get(LOG_LEVEL),
            ephemeral=True,
        )
        self.hub.bind_templates(session)
        return session

    async def discover(self, session: Session) -> dict[str, Any]:
        await self.hub.dispatcher.until_started()  # its capabilities rest on the upstreams tried, as lists do
        await self.hub.instances.ready(session.access.reach.instances)  # ... and on its template instances
        view = self.hub.events.views.of(session)  # its principal's own connections' lists, if any
        await self.hub.exposure.ready_to_count([(session.access, view)])  # its instructions may rest on a count
        caps = self.hub.capabilities(session.access)
        caps.pop("tasks", None)  # an extension in 2026-07-28, not served to modern clients yet
        return {
            "resultType": "complete",
            "supportedVersions": [*MODERN_VERSIONS, *LEGACY_VERSIONS],
            "capabilities": caps,
            "instructions": self.hub.instructions(session.access, view),
            "ttlMs": TTL_MS,
            "cacheScope": CACHE_SCOPE,
            "_meta": {SERVER_INFO: self.hub.server_info()},
        }

    async def local(self, session: Session, rid: RequestId, method: str, params: dict[str, Any]) -> Message | bytes:
        """The reply to `server/discover` or a list, which the hub answers itself."""
        if method == "server/discover":
            return jsonrpc.result(rid, await self.discover(session))
        kind = KIND_BY_METHOD[method]
        if params.get("cursor") is not None:
            err = {"code": InvalidParams.code, "message": "Invalid cursor: this hub returns complete lists in one page"}
            self.hub.metrics.answered_error(method, InvalidParams.code)
            return jsonrpc.error(rid, err)
        try:
            body = await self.hub.list_result(kind, session)
        except HubError as exc:  # a template instance it needs may not start (maxInstances): a JSON-RPC error
            self.hub.metrics.answered_error(method, exc.code)
            return jsonrpc.error(rid, exc.to_error())
        return jsonrpc.splice_result(rid, body[:-1] + self._list_suffix)

    @staticmethod
    def is_local(method: str) -> bool:
        return method == "server/discover" or method in KIND_BY_METHOD

    async def routed(self, session: Session, msg: Message, emit: Emit, *, bounded: bool = True) -> Message:
        """The reply to a routed request (a call, a read, a prompt, a completion), in the era's shape;
        its progress and logs go to `emit` first. Cancelling the caller cancels it upstream too."""
        reply = await answer(self.hub, session, msg, scoped(emit), bounded=bounded)
        if reply is None:
            reply = jsonrpc.error(msg["id"], {"code": -32800, "message": "Request cancelled"})
        if isinstance(reply, bytes):
            reply = jsonrpc.loads(reply)
        assert isinstance(reply, dict)
        return self.decorate(str(msg.get("method")), reply)

    def decorate(self, method: str, reply: Message) -> Message:
        result = reply.get("result")
        if isinstance(result, dict):
            result.setdefault("resultType", "complete")
            meta = result.get("_meta")
            result["_meta"] = {**(meta if isinstance(meta, dict) else {}), SERVER_INFO: self.hub.server_info()}
            if result["resultType"] == "input_required":  # interim: not cacheable, no hints (caching.mdx)
                result.pop("ttlMs", None)
                result.pop("cacheScope", None)
            elif method in CACHED:
                ttl = result.get("ttlMs")  # an upstream's own, when valid: the content is theirs
                valid = isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 0
                result["ttlMs"] = ttl if valid else TTL_MS
                result["cacheScope"] = CACHE_SCOPE  # never public: what one requester may read, another may not
        return reply

    async def listener(self, session: Session, rid: RequestId, params: dict[str, Any]) -> Listener:
        """The hub's side of a `subscriptions/listen` (InvalidParams: it asks for nothing), once the upstreams
        and template instances its subscriptions are on were started, as for `server/discover` (a URI of an
        instance not running yet was not honoured)."""
        wanted = params.get("notifications")
        if not isinstance(wanted, dict):
            raise InvalidParams("subscriptions/listen needs params.notifications")
        # held as long as the stream is open, as a legacy session holds what its initialize declared
        check_client_state(session.client_capabilities, session.client_info, "the clientCapabilities and clientInfo")
        await self.hub.dispatcher.until_started()
        await self.hub.instances.ready(session.access.reach.instances)
        await self.hub.remember_lists(session)
        return Listener.create(
            rid, wanted, session, self.hub.can_subscribe, self.hub.limits.max_subscriptions_per_session
        )
