"""The mcp.json schema: the `mcpServers` shape other clients use, plus the hub's own settings.

Owns validation only (types, required fields, name rules); reading files, ${VAR}
substitution and error formatting live in `load`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from onemcp.config import filters, jinja, redis_link, values
from onemcp.config.auth_settings import AuthSettings
from onemcp.config.base import RequestSeconds, Seconds
from onemcp.config.base import StrictModel as _Model
from onemcp.config.upstream_settings import Probe as Probe
from onemcp.config.upstream_settings import Sandbox as Sandbox
from onemcp.config.upstream_settings import UpstreamOAuth as UpstreamOAuth
from onemcp.protocol.names import DEFAULT_SEPARATOR, PrefixMode, separator_problem, server_name_problem

Exposure = Literal["full", "search", "auto"]
PinMode = Literal["withhold", "report", "off"]
EXPOSURES: tuple[Exposure, ...] = ("full", "search", "auto")


class ServerConfig(_Model):
    """One upstream: a stdio command or an HTTP URL."""

    # What only shapes what clients see of the server: changed, it applies without a restart.
    VIEW_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"tags", "disabled_tools", "enabled_tools", "tool_aliases", "tool_descriptions", "instructions"}
        | {"pin_tool_definitions"}
    )

    # What applies to the next requests of a running connection: changed, it applies without a restart too.
    REQUEST_FIELDS: ClassVar[frozenset[str]] = frozenset({"timeout", "max_total_timeout", "max_messages_per_second"})

    def same_connection(self, other: ServerConfig) -> bool:
        """Would a connection made for `other` be the one made for this? (View and request fields aside.)"""
        aside = set(self.VIEW_FIELDS | self.REQUEST_FIELDS)
        return self.model_dump(exclude=aside) == other.model_dump(exclude=aside)

    def request_settings(self) -> dict[str, Any]:
        """The values of `REQUEST_FIELDS`, to give a running connection (`model_copy(update=...)`)."""
        return {field: getattr(self, field) for field in self.REQUEST_FIELDS}

    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    type: Literal["stdio", "http", "streamable-http", "streamableHttp", "sse"] | None = None
    headers: dict[str, str] = {}
    # OAuth for a protected HTTP upstream: on by default (used when the server answers 401);
    # false turns it off, an object pre-registers a client or fixes the scopes.
    oauth: bool | UpstreamOAuth = True
    # More of the same server: further URLs (HTTP), or how many processes of the command to run (stdio).
    # Calls are balanced over the healthy ones, a session sticks to one, a failing one is ejected
    # (breaker, supervisor, `probe`) and taken back once healthy.
    replicas: list[str] | int = []
    balance: Literal["round-robin", "least-in-flight", "random", "weighted-random", "consistent-hash"] = "round-robin"
    weights: list[float] = []  # one per member (the url or command first, then each replica): share of calls
    # consistent-hash: what a call is hashed by: its "session", its "principal", or "argument:<name>" of a tool call
    hash_key: str = Field("session", alias="hashKey", pattern=r"^(session|principal|argument:.+)$")
    probe: Probe | None = None  # HTTP: active health probes of each URL
    disabled: bool = False
    tags: list[str] = []
    # Tool rules (hot-reloadable): hide some, show only some, rename, re-describe.
    disabled_tools: list[str] = Field([], alias="disabledTools")
    enabled_tools: list[str] | None = Field(None, alias="enabledTools")
    tool_aliases: dict[str, str] = Field({}, alias="toolAliases")  # upstream name -> shown name
    tool_descriptions: dict[str, str] = Field({}, alias="toolDescriptions")
    instructions: str | None = None  # replaces the server's own instructions in the hub's
    sandbox: Sandbox | None = None  # stdio: memory, CPU, files, processes, user, bubblewrap
    # This server's tool definitions changed since approved: withheld, reported, or not checked (default: the hub's).
    pin_tool_definitions: PinMode | None = Field(None, alias="pinToolDefinitions")
    timeout: RequestSeconds = Field(60.0, description="deadline for each request to this server (at most 3600)")
    # `timeout` is how long the server may say nothing about a request: each progress notification,
    # log line or question it sends about a call starts it again, up to this long since the call was sent.
    max_total_timeout: Seconds = Field(
        3600.0,
        alias="maxTotalTimeout",
        description="the longest a call may run while the server keeps reporting progress (seconds)",
    )
    # "session": each downstream session gets its own upstream connection (started on its
    # first call, closed with it), so server->client requests and logs are never ambiguous.
    # "auto": shared until the server asks a client something (sampling, elicitation, roots);
    # from then on each session that can be asked gets its own. "shared": never.
    isolation: Literal["auto", "shared", "session"] = "auto"
    # Which protocol era to speak: "auto" probes server/discover (2026-07-28) first and
    # falls back to the initialize handshake; "legacy" / "modern" skip the probe.
    protocol: Literal["auto", "legacy", "modern"] = "auto"
    startup_timeout: Seconds = Field(30.0, alias="startupTimeout")
    # An upstream idle this long is pinged; one that does not answer within `timeout` is recycled.
    ping_interval: Seconds | None = Field(30.0, alias="pingInterval")
    # Circuit breaker: this many consecutive failures open it for `breakerCooldown` seconds, then
    # one probe call decides. A failure is a call that timed out or lost its connection while the
    # server answered nothing else and no ping either: a server that still answers is not failing,
    # whatever one client's calls do to it.
    breaker_threshold: int = Field(5, alias="breakerThreshold", ge=1)
    breaker_cooldown: Seconds = Field(30.0, alias="breakerCooldown")
    # the largest message accepted from this server (default: onemcp.limits.maxResponseBytes)
    max_response_bytes: int | None = Field(None, alias="maxResponseBytes", ge=1024)
    # the messages a second it may send that are not replies to the hub (default: onemcp.limits.maxMessagesPerSecond)
    max_messages_per_second: int | None = Field(None, alias="maxMessagesPerSecond", ge=1, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if url is not None and (problem := cls._url_problem(url)):
            raise ValueError(problem)
        return url

    @field_validator("replicas")
    @classmethod
    def _http_urls(cls, urls: list[str] | int) -> list[str] | int:
        if isinstance(urls, int):
            if not 1 <= urls <= 64:
                raise ValueError("a number of processes from 1 to 64 (stdio), or a list of URLs (HTTP)")
            return urls
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} must start with http:// or https://")
            if problem := cls._url_problem(url):
                raise ValueError(f"{url!r}: {problem}")
        return urls

    @classmethod
    def _url_problem(cls, url: str) -> str | None:
        """Why an http(s) URL does not parse (None: it does)."""
        return values.url_problem(url)

    @field_validator("command")
    @classmethod
    def _command_named(cls, command: str | None) -> str | None:
        if command is not None and not command.strip():
            raise ValueError("must name a program (it is empty)")
        return command

    @field_validator("env", "headers")
    @classmethod
    def _sendable(cls, pairs: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        """A name or value the process or the HTTP client would refuse at connect time (a ValueError there)."""
        check = values.env_problem if info.field_name == "env" else values.header_problem
        if problem := next(filter(None, (check(k, v, cls._rendered_later(v)) for k, v in pairs.items())), None):
            raise ValueError(problem)
        return pairs

    @field_validator("cwd")
    @classmethod
    def _cwd_named(cls, cwd: str | None) -> str | None:
        if cwd is not None and not cwd.strip():  # the spawn failed with a misleading "command not found"
            raise ValueError("is empty: leave it out to run in the hub's working directory")
        return cwd

    @field_validator("tags")
    @classmethod
    def _tags_ok(cls, tags: list[str]) -> list[str]:
        bad = [t for t in tags if not cls._rendered_later(t) and not filters.is_tag(t)]
        if bad:
            raise ValueError(f"no filter could name {', '.join(map(repr, bad))} ({filters.TAG_RULE})")
        return tags

    @field_validator("tool_aliases")
    @classmethod
    def _aliases_distinct(cls, aliases: dict[str, str]) -> dict[str, str]:
        """Two tools shown by one name would hide one of them; an empty name shows none."""
        if blank := [tool for tool, shown in aliases.items() if not shown.strip()]:
            raise ValueError(f"{blank[0]!r} is shown as an empty name")
        seen: dict[str, str] = {}
        for tool, shown in aliases.items():
            if (other := seen.setdefault(shown, tool)) != tool:
                raise ValueError(f"{other!r} and {tool!r} are both shown as {shown!r}: one would hide the other")
        return aliases

    @classmethod
    def _rendered_later(cls, text: str) -> bool:
        """Is `text` a template, checked once rendered? (Only in an `mcpTemplates` entry.)"""
        return False

    @property
    def members(self) -> int:
        """How many connections serve this server: its URL and each replica URL, or N processes."""
        if isinstance(self.replicas, int):
            return self.replicas
        return 1 + len(self.replicas) if self.url is not None else 1

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if self.command is None and self.url is None:
            raise ValueError("needs either 'command' (stdio) or 'url' (HTTP)")
        if self.command is not None and self.url is not None:
            raise ValueError("has both 'command' and 'url'; pick one")
        if isinstance(self.replicas, list) and self.replicas and self.url is None:
            raise ValueError("'replicas' of a stdio server is a number of processes; URLs are for an HTTP 'url'")
        if isinstance(self.replicas, int) and self.command is None:
            raise ValueError("'replicas' of an HTTP server is a list of URLs; a number is for a stdio 'command'")
        if self.weights and len(self.weights) != self.members:
            raise ValueError(f"'weights' needs one weight per member ({self.members}: the server, then each replica)")
        if any(w <= 0 for w in self.weights):
            raise ValueError("'weights' must be positive")
        if self.hash_key != "session" and self.balance != "consistent-hash":  # (not what is set: templates re-validate)
            raise ValueError(f'\'hashKey\' applies with "balance": "consistent-hash", not {self.balance!r}')
        if self.probe is not None and self.url is None:
            raise ValueError("'probe' is for HTTP servers (a 'url')")
        if self.sandbox is not None and self.command is None:
            raise ValueError("'sandbox' is for stdio servers (a 'command'); an HTTP server runs elsewhere")
        if self.url is not None:
            if self.type == "stdio":
                raise ValueError("'type' is 'stdio' but a 'url' is given")
            if stray := [key for key in ("args", "env", "cwd") if getattr(self, key)]:
                raise ValueError(f"{', '.join(map(repr, stray))}: for a stdio 'command'; an HTTP server runs elsewhere")
        elif self.headers or isinstance(self.oauth, UpstreamOAuth):
            raise ValueError("'headers' and 'oauth' are for HTTP servers (a 'url'); a stdio server gets 'env'")
        elif self.type not in (None, "stdio"):
            raise ValueError(f"'type' is {self.type!r} but no 'url' is given")
        return self

    @property
    def transport(self) -> Literal["stdio", "http", "sse"]:
        if self.command is not None:
            return "stdio"
        return "sse" if self.type == "sse" else "http"


class TemplateOptions(_Model):
    """How instances of a template server are made and kept (the `template` key of an `mcpTemplates` entry)."""

    # true: sessions whose context renders the same config share one instance; false: one per session
    shareable: bool = True
    max_instances: int | None = Field(None, alias="maxInstances", ge=1)  # of this template, at once
    # an instance no session has used for this long is stopped
    idle_timeout: Seconds = Field(300.0, alias="idleTimeout")


class ServerTemplate(ServerConfig):
    """An `mcpTemplates` entry: a server whose string fields are rendered from a client's context.

    Validated here with its template text as it stands (so a `url` must start with http:// or
    https:// before any `{{ }}`); `config.templates` renders it into a `ServerConfig` per context.
    """

    disabled: bool | str = False  # type: ignore[assignment]  # a template may decide it: "{{ project.environment == 'prod' }}"
    template: TemplateOptions = Field(default_factory=TemplateOptions)

    # The fields rendered from a context (every other field is taken as written).
    RENDERED: ClassVar[tuple[str, ...]] = ("command", "args", "env", "cwd", "url", "headers", "disabled", "tags")

    @field_validator("disabled")
    @classmethod
    def _disabled_decided(cls, value: bool | str) -> bool | str:
        """A boolean, or a template that renders one: a plain word ("fasle") would disable it unsaid."""
        if isinstance(value, str) and not jinja.is_template(value):
            word = value.strip().lower()  # "${OFF}" reaches here as the variable's text
            if word in ("true", "1", "yes", "on"):
                return True
            if word in ("", "false", "0", "no", "off", "none"):
                return False
            raise ValueError(f"expected true or false, or a template ({{{{ ... }}}}) that renders one, not {value!r}")
        return value

    @classmethod
    def _rendered_later(cls, text: str) -> bool:
        return jinja.is_template(text)

    @model_validator(mode="after")
    def _only_rendered_fields_templated(self) -> ServerTemplate:
        """A template in another field would reach the server (or clients) as written, braces and all."""
        if found := jinja.first_template(self.model_dump(by_alias=True, exclude={*self.RENDERED, "template"})):
            raise ValueError(f"{found}: only {', '.join(self.RENDERED)} are rendered; this would be used as written")
        return self

    @classmethod
    def _url_problem(cls, url: str) -> str | None:
        return None if jinja.is_template(url) else values.url_problem(url)

    def texts(self) -> list[tuple[str, str]]:
        """(field path, text) of every rendered string, e.g. ("args[2]", "{{ project.path }}")."""
        out: list[tuple[str, str]] = []
        for field in self.RENDERED:
            value = getattr(self, field)
            if isinstance(value, str):
                out.append((field, value))
            elif isinstance(value, list):
                out.extend((f"{field}[{i}]", v) for i, v in enumerate(value))
            elif isinstance(value, dict):
                out.extend((f"{field}.{k}", v) for k, v in value.items())
        return out


MiB = 1024 * 1024
MAX_RESPONSE_BYTES = 64 * MiB  # the default of onemcp.limits.maxResponseBytes
MAX_LIST_ITEM_BYTES = MiB  # the default of onemcp.limits.maxListItemBytes
# the default of onemcp.limits.maxMessagesPerSecond: server-everything's busiest second is about 280 messages
MAX_MESSAGES_PER_SECOND = 1000


class Limits(_Model):
    """What the hub holds on someone else's behalf, bounded (the `onemcp.limits` key of mcp.json).

    Each limit has a clear error when reached and counts in `onemcp_limit_hits{limit=...}`;
    docs/server-behaviour.md ("Limits") has the table.
    """

    # HTTP, before authentication: the request line and headers of one request (431 beyond)
    max_header_bytes: int = Field(64 * 1024, alias="maxHeaderBytes", ge=1024, le=16 * MiB)
    max_header_count: int = Field(100, alias="maxHeaderCount", ge=8, le=10_000)
    # a request whose headers have not all arrived this long after its first byte is ended (408);
    # one whose body has not all arrived this long after its headers gets 408
    header_timeout: Seconds = Field(10.0, alias="headerTimeout")
    body_timeout: Seconds = Field(30.0, alias="bodyTimeout")
    # a response the client has taken nothing of this long, while more waits to be written, ends (its
    # connection is closed): what a client that never reads makes the hub hold is held this long at most
    send_timeout: Seconds = Field(60.0, alias="sendTimeout")
    # reply bytes written to clients and not yet taken, all connections together; beyond, the connection
    # holding the most is closed (what a slow reader makes the hub hold, bounded in bytes as well as time)
    max_unsent_bytes: int = Field(256 * MiB, alias="maxUnsentBytes", ge=MiB)
    # open client connections; beyond, a new one gets 503 and is closed at once
    # (unset: a third of the file descriptors the process may open, at most 10,000)
    max_connections: int | None = Field(None, alias="maxConnections", ge=1)
    # sessions (2025-11-25 era and older, all entries): a new one beyond gets 503 (hub-wide) or
    # 429 (per principal); existing sessions are never evicted to make room
    max_sessions: int = Field(10_000, alias="maxSessions", ge=1)
    max_sessions_per_principal: int = Field(1_000, alias="maxSessionsPerPrincipal", ge=1)
    # open requests of one principal (one API key, one OAuth client; all anonymous clients are one), all
    # MCP entries and the admin API together (unset: a quarter of maxConnections, at least 16), and of
    # them its streams (GET streams, /sse, 2026-07-28 listens, the admin event stream); beyond, 429
    max_requests_per_principal: int | None = Field(None, alias="maxRequestsPerPrincipal", ge=1)
    max_streams_per_principal: int = Field(100, alias="maxStreamsPerPrincipal", ge=1)
    # resource subscriptions of one session (or one 2026-07-28 listen stream); beyond, subscribing fails
    max_subscriptions_per_session: int = Field(1000, alias="maxSubscriptionsPerSession", ge=1)
    # concurrently open GET streams of one session (409 beyond)
    max_streams_per_session: int = Field(4, alias="maxStreamsPerSession", ge=1, le=1000)
    # messages queued for one session's stream (newest dropped beyond, counted and logged at most
    # once per `logInterval`)
    max_queued_messages: int = Field(1024, alias="maxQueuedMessages", ge=16, le=1_000_000)
    # server->client requests (sampling, elicitation, roots) waiting for a client's answer: per
    # upstream connection and per session; beyond, the upstream gets an error at once
    max_pending_client_requests: int = Field(256, alias="maxPendingClientRequests", ge=1)
    max_pending_client_requests_per_session: int = Field(32, alias="maxPendingClientRequestsPerSession", ge=1)
    # ... and their bytes (serialised): one client's (a session's; a 2026-07-28 caller's principal's), and all
    # clients' together, past which only a client holding more than its share (this over the clients holding any)
    # is refused, and past twice this everyone is; one request alone is always held (up to maxResponseBytes)
    max_pending_client_request_bytes_per_session: int = Field(
        16 * MiB, alias="maxPendingClientRequestBytesPerSession", ge=1024
    )
    max_pending_client_request_bytes: int = Field(256 * MiB, alias="maxPendingClientRequestBytes", ge=1024)
    # one upstream message (an HTTP body, one SSE event, one stdio line); a server may set its own
    max_response_bytes: int = Field(MAX_RESPONSE_BYTES, alias="maxResponseBytes", ge=1024)
    # one entry of an upstream's list (a tool, prompt, resource or resource template, serialised): a larger one is
    # withheld from every list (said in /health and the log) and a call to it refused; every list reply carries
    # each entry it shows, so one 50 MB tool made each client's tools/list 50 MB (the largest tool of the 136
    # servers of bench/toolsearch/data is 22 KB, of its training servers 49 KB)
    max_list_item_bytes: int = Field(MAX_LIST_ITEM_BYTES, alias="maxListItemBytes", ge=1024)
    # notifications and requests one upstream connection may send a second (as many at once); beyond, the hub
    # stops reading it until the excess is paid for (replies to the hub's requests are not counted); a server
    # may set its own
    max_messages_per_second: int = Field(MAX_MESSAGES_PER_SECOND, alias="maxMessagesPerSecond", ge=1, le=1_000_000)
    # a server's own connections (one per client session that can be asked, `isolation`, or per
    # principal with its own credentials): each may be a process; beyond, the stalest idle one closes,
    # else the call is refused
    max_own_connections: int = Field(256, alias="maxOwnConnections", ge=1, le=100_000)
    # ... of one principal, per server: beyond, that principal's stalest idle one closes (none idle: allowed,
    # `maxOwnConnections` still bounds); one-shot clients that never end their sessions left one each
    max_own_connections_per_principal: int = Field(16, alias="maxOwnConnectionsPerPrincipal", ge=1, le=100_000)
    # running template server instances, all templates together; beyond, a new context is refused
    max_template_instances: int = Field(64, alias="maxTemplateInstances", ge=1, le=10_000)
    # warnings about the same limit are written at most once per this many seconds (with a count)
    log_interval: Seconds = Field(10.0, alias="logInterval")


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # a sessionStore naming a Redis


class HubSettings(_Model):
    """The hub's own knobs (the `onemcp` key of mcp.json)."""

    separator: str = DEFAULT_SEPARATOR
    prefix_mode: PrefixMode = Field(PrefixMode.CONDITIONAL, alias="prefixMode")
    max_body_bytes: int = Field(4 * 1024 * 1024, alias="maxBodyBytes", gt=0)
    session_idle_timeout: Seconds = Field(1800.0, alias="sessionIdleTimeout")
    # How long a client waits to reconnect a dropped SSE stream (the `retry:` of each stream's first event).
    # The SDKs try twice, this long apart: long enough to carry them over `onemcp restart` (2-10 s).
    stream_retry: float = Field(5.0, alias="streamRetry", ge=0.1, le=60)
    # A list asked for while upstreams are still starting waits (at most this long) until each was
    # tried, so a client that connects at once does not get an empty list (0: never wait).
    first_list_wait: float = Field(5.0, alias="firstListWait", ge=0, le=300)
    allowed_origins: list[str] = Field([], alias="allowedOrigins")
    allowed_hosts: list[str] = Field([], alias="allowedHosts")
    # The hub's instructions: a template with {count}, {naming}, {summary}, {servers}
    # (inline, or a file; a relative path is relative to mcp.json). Default: built in.
    instructions: str | None = None
    instructions_file: str | None = Field(None, alias="instructionsFile")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # Tool results larger than this (bytes of text) are cut, with a marker saying so.
    max_result_bytes: int | None = Field(None, alias="maxResultBytes", gt=0)
    audit: str | None = None  # where audit lines go: a file path, or "-" for the log
    limits: Limits = Field(default_factory=Limits)
    # How tools are shown: every definition (`full`), three meta-tools to search, read and call them
    # (`search`), or search once a view's full list is above `searchBudget` tokens (`auto`).
    exposure: Exposure = "auto"
    search_budget: int = Field(20_000, alias="searchBudget", gt=0)
    # The search index's cache of tool embeddings: a directory, false for none (default: the user's cache dir).
    search_cache: str | Literal[False] | None = Field(None, alias="searchCache")
    # Where legacy sessions are kept so they survive a restart: "sqlite" (sessions.db beside mcp.json, the
    # default), "off", or a Redis URL (redis://host:6379/0) that replicas of this hub share.
    session_store: str = Field("sqlite", alias="sessionStore")
    # A tool whose definition changed since it was first seen or last approved (pins.db beside mcp.json):
    # withheld from clients until an operator approves it (`onemcp mcp approve`), only reported, or not checked.
    pin_tool_definitions: PinMode = Field("withhold", alias="pinToolDefinitions")

    @property
    def shared_store(self) -> str | None:
        """The Redis URL replicas share, when the session store is one (else None)."""
        return self.session_store if self.session_store.startswith(REDIS_SCHEMES) else None

    @field_validator("instructions")
    @classmethod
    def _template_ok(cls, value: str | None) -> str | None:
        if value is not None and (problem := values.template_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("allowed_origins", "allowed_hosts")
    @classmethod
    def _matchable(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        check = values.origin_problem if info.field_name == "allowed_origins" else values.host_problem
        if problem := next(filter(None, map(check, entries)), None):
            raise ValueError(problem)  # it would never match: what it was meant to let in gets 403 / 421
        return entries

    @field_validator("search_cache")
    @classmethod
    def _cache_named(cls, value: str | Literal[False] | None) -> str | Literal[False] | None:
        if value is not None and value is not False and not value.strip():
            raise ValueError("must be a directory, or false for none (leave it out for the default)")
        return value

    @field_validator("session_store")
    @classmethod
    def _store_ok(cls, value: str) -> str:
        if value not in ("sqlite", "off") and not value.startswith(REDIS_SCHEMES):
            raise ValueError('must be "sqlite", "off" or a Redis URL (redis://host:6379/0)')
        if value.startswith(("redis://", "rediss://")) and (problem := values.url_problem(value)):
            raise ValueError(f"{problem} (redis://host:6379/0; the client would guess localhost)")
        if value.startswith(REDIS_SCHEMES) and (problem := redis_link.url_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _separator_ok(self) -> HubSettings:
        problem = separator_problem(self.separator)
        if problem:
            raise ValueError(problem)
        if self.instructions is not None and self.instructions_file is not None:
            raise ValueError("'instructions' and 'instructionsFile' both set: the file would win; keep one")
        return self


class HubConfig(_Model):
    servers: dict[str, ServerConfig] = Field(default_factory=dict, alias="mcpServers")
    templates: dict[str, ServerTemplate] = Field(default_factory=dict, alias="mcpTemplates")
    hub: HubSettings = Field(default_factory=HubSettings, alias="onemcp")
    # the values ${VAR}s filled into servers' and templates' URLs (`config.load`): secrets, as env and
    # header values are (a key in a URL's path), masked wherever the hub shows a URL
    _url_secrets: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @property
    def url_secrets(self) -> frozenset[str]:
        return self._url_secrets

    def keep_url_secrets(self, values: frozenset[str]) -> None:
        """Set by `config.load` once the document is validated (what its ${VAR}s were is gone by then)."""
        self._url_secrets = values

    @model_validator(mode="after")
    def _names_ok(self) -> HubConfig:
        for name in self.servers:
            problem = server_name_problem(name, self.hub.separator)
            if problem:
                raise ValueError(f"mcpServers.{name}: server name {name!r} {problem}")
        for name in self.templates:
            problem = server_name_problem(name, self.hub.separator)
            if problem:
                raise ValueError(f"mcpTemplates.{name}: template name {name!r} {problem}")
            if name in self.servers:
                raise ValueError(f"mcpTemplates.{name}: {name!r} is also a server in mcpServers; names are shared")
        for i, quota in enumerate(self.hub.auth.quotas):
            if (server := quota.tool.partition("/")[0]) not in {*self.servers, *self.templates, "*"}:
                raise ValueError(f"onemcp.auth.quotas.{i}.tool: no server or template is named {server!r}")
        return self

    @model_validator(mode="after")
    def _templates_parse(self) -> HubConfig:
        for name, template in self.templates.items():
            for path, text in template.texts():
                try:
                    jinja.compiled(text)
                except jinja.SyntaxProblem as exc:
                    raise ValueError(f"mcpTemplates.{name}.{path}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _response_limits(self) -> HubConfig:
        """Each server's transport sees its own config only: give it the hub's default limits."""
        limits = self.hub.limits
        for entries in (self.servers, self.templates):
            for name, entry in entries.items():
                update = {
                    field: getattr(limits, field)
                    for field in ("max_response_bytes", "max_messages_per_second")
                    if getattr(entry, field) is None
                }
                if update:
                    entries[name] = entry.model_copy(update=update)  # type: ignore[assignment]
        return self

    @property
    def enabled(self) -> dict[str, ServerConfig]:
        return {name: s for name, s in self.servers.items() if not s.disabled}
