"""Secrets kept out of every text the hub shows: log lines, /health, the admin API, client errors.

Secrets are the values the config hands to upstreams (env and header values, of servers and of the
template instances rendered for clients), anything shaped like a credential (a bearer token, an API
key or token parameter, a password in a URL), and control characters that would let one log line
pass for several. `REDACTOR` is the process's one instance: the log handlers filter through it, and
the upstream transports scrub what they say about a failure (a stderr line, a URL) with it before
any of that reaches a client or an operator. Does not decide what a surface shows; only how.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from onemcp.config.model import HubConfig
from onemcp.protocol.errors import echo

TOKEN = re.compile(
    # `token=`/`api_key:` as a parameter, not the tail of a variable's name ("env.GITHUB_TOKEN: environment
    # variable ... is not set" names what is missing; the values themselves are masked by `secrets`);
    # `access_token=`, `client_secret=`, `password=` as query or form parameters; a bearer value (not
    # the word "token" of "no bearer token")
    r"(?i)(authorization:\s*(?:bearer\s+|basic\s+)?|bearer\s+(?!token\b)|(?<![A-Za-z0-9_])token[=:]\s*"
    r"|(?<![A-Za-z0-9_])api[_-]?key[=:]\s*"
    r"|(?<![A-Za-z0-9])[A-Za-z0-9]*_?(?:token|secret|password|passwd|apikey|api_key|signature|sig)=)"
    r"([^\s,;\"'&]+)"
)
# the password of a URL's userinfo, up to its last "@" (a password may hold one; "#", "?" and "/" end
# the authority, so "jwt:https://idp:8443#alice@corp" is no URL password), or a userinfo that is a
# long token alone (https://ghp_...@github.com)
# a text holds none of these: TOKEN cannot match it
TOKEN_WORDS = ("authorization", "bearer", "token", "api_key", "api-key", "apikey", "secret", "passw", "sig")
URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@#?]*:)([^/\s#?]*)(@)")
URL_TOKEN = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)([^/\s:@#?]{16,})(@)")
# a credential as a JSON field ("access_token": "...", "clientSecret": "...": an OAuth token endpoint's
# answer, a server's dump of its settings), which TOKEN's `name=` and `name: value` do not reach; not the
# tokens that name a place in a protocol exchange (MCP's `progressToken`, an API's `nextPageToken`)
JSON_SECRET = re.compile(
    r'(?i)("(?!(?:progress|next_?page|page|continuation|sync|resume)[_-]?token")'
    r'[a-z0-9_-]*(?:token|secret|password|passwd|apikey|api_key|api-key)"\s*:\s*")((?:[^"\\]|\\.)*)(")'
)
# a JWT anywhere (its header and claims are base64url JSON: "eyJ"), and the hub's own credentials: an
# API key keeps its id (omk_<id>_***, as `onemcp auth key list` names it), an OAuth token or code its kind
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
HUB_CREDENTIAL = re.compile(r"\b(omk_[A-Za-z0-9]+_|om(?:at|rt|ac)_)[A-Za-z0-9_-]{16,}")
HUB_PREFIXES = ("omk_", "omat_", "omrt_", "omac_")  # auth.keys.PREFIX, auth.server.grants' (above this layer)
# C0 and C1 controls (ESC, CSI, OSC: terminal codes), DEL, and the format characters that reorder or
# hide text on screen (bidi marks, overrides and isolates, zero-width characters and joiners, the byte
# order mark, and the tag characters a model reads but a person does not see)
_FORMAT = "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f"
CONTROL = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{_FORMAT}]")
CONTROL_BUT_NEWLINE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMAT}]")
# an env or header name whose value is a credential (a rendered template value elsewhere may be a
# client's name or a path, not to be masked in every line)
SECRET_NAME = re.compile(r"(?i)token|secret|passw|key|auth|credential|cookie|session|private|signature")
MIN_SECRET = 6  # shorter values (ports, flags) would mask too much
SHOWN_MAX = 2000  # characters of a text shown outside the log: an upstream's failure, a line of its stderr
LOG_MAX = 16 * 1024  # characters of a log record's message (what a client or an upstream sent, within it)
MAX_SECRETS = 10_000  # values kept from rendered template instances and principals (the newest)
# who did what: an audit line's principal, server and tool fields are never masked by a value someone
# chose for themselves (names the hub's config and its upstreams give, never a user's secret)
_WHO = re.compile(r"((?:^|(?<=\s))(?:principal|server|tool)=\S+)")
# From this many secrets a text is read once, MIN_SECRET characters at a time, for the secrets starting
# there (~10 us for a log line, whatever their number), rather than searched for each secret in turn
# (~0.04 us a secret on a log line: 8 us with 200, 79 us with 2,000). Below it the search in turn wins:
# on a log line up to about 250 secrets, on a 50 KB traceback up to about 700.
BY_PREFIX = 300


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group(0))[1:-1]


def one_line(text: str) -> str:
    """`text` with its control characters escaped (`\\n`, `\\r`, `\\x1b`): one line, no terminal codes."""
    return CONTROL.sub(_escaped, text)


def printable(text: str) -> str:
    """`text` with its control and format characters escaped but its new lines kept: text from an
    upstream, as a terminal or a model should read it (no terminal codes, nothing reordered)."""
    return CONTROL_BUT_NEWLINE.sub(_escaped, text)


def traceback_text(text: str) -> str:
    """A logged exception's text as the log shows it: its control characters escaped but its new lines
    kept, and each of its lines indented, so that no line of it passes for a record of its own (an
    exception's message may carry what a client or an upstream sent: `ValueError: x\n2026-... INFO ...`)."""
    return "\n".join("  " + line for line in printable(text).split("\n"))


def display_url(url: str) -> str:
    """A URL as shown outside the config: scheme, host, port and path; no user, password or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(a URL that does not parse)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _key_shaped(text: str) -> bool:
    """As long as a token-shaped userinfo (URL_TOKEN), of letters and digits both."""
    return len(text) >= 16 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def url_keys(url: str) -> set[str]:
    """The parts of a configured URL that look like keys, as written: a path segment or a query value
    as long as a token-shaped userinfo (URL_TOKEN), of letters and digits both (a hosted server's
    key in its path, https://host/mcp/sk-ak-0Xo1.../sse, or a UUID; not /mcp/v1/servers/github)."""
    path, _, query = url.partition("?")
    pieces = [*path.split("://", 1)[-1].split("/")[1:], *(p.partition("=")[2] for p in query.split("#")[0].split("&"))]
    return {p for p in pieces if _key_shaped(p)}


ARG_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a word that is no path, file, package, version or URL


def arg_keys(args: list[str]) -> set[str]:
    """The arguments of a configured command that are credentials: the value of an option whose name
    says so (`--api-key X`, `--token=X`: SECRET_NAME, as for a template's rendered values), or a word
    shaped like a key (`sk-proj-...`, `AKIA...`; not `@scope/server`, `/home/x`, `pkg==1.2`)."""
    found: set[str] = set()
    for before, arg in zip(["", *args], args, strict=False):
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and eq and SECRET_NAME.search(name):
            found.add(value)
        else:
            named = before.startswith("-") and "=" not in before and SECRET_NAME.search(before) is not None
            if (named and not arg.startswith("-")) or (ARG_KEY.fullmatch(arg) and _key_shaped(arg)):
                found.add(arg)
    return found


def _literal(value: str) -> bool:
    return len(value) >= MIN_SECRET and "{{" not in value and "{%" not in value


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._configured: set[str] = set()
        self._rendered: dict[str, None] = {}  # in the order added (the oldest go first past MAX_SECRETS)
        self._owned: dict[str, frozenset[str]] = {}  # a principal's current own values (the last it used first)
        self._owned_all: frozenset[str] = frozenset()  # all of those (none also the config's or an instance's)
        # every secret, longest first, and (from BY_PREFIX of them) their first MIN_SECRET characters ->
        # those secrets: one value, replaced whole, so a scrub on another thread sees both or neither
        self._known: tuple[list[str], dict[str, list[str]]] = ([], {})

    @property
    def secrets(self) -> list[str]:
        return self._known[0]

    def use(self, config: HubConfig) -> None:
        """The secrets of this config: its servers' and templates' env and header values (a template's
        written ones; what it renders for a client comes through `add`), their upstream OAuth client
        secrets and private keys, what ${VAR}s put in their URLs, and the keys written in URLs and args."""
        entries = [*config.servers.values(), *config.templates.values()]
        self._configured = {v for s in entries for v in [*s.env.values(), *s.headers.values()] if _literal(v)}
        oauth = [s.oauth for s in entries if not isinstance(s.oauth, bool)]  # the hub's client credentials upstream
        self._configured.update(v for o in oauth for v in (o.client_secret, o.private_key) if v and _literal(v))
        for value in config.url_secrets:  # a ${VAR} in a URL (a key in its path), or a whole URL as it is shown
            self._configured.update(v for v in (value, display_url(value) if "://" in value else "") if _literal(v))
        urls = [u for s in entries for u in [s.url, *(s.replicas if isinstance(s.replicas, list) else ())] if u]
        self._configured.update(k for url in urls for k in url_keys(url) if _literal(k))
        self._configured.update(k for s in entries for k in arg_keys(s.args) if _literal(k))
        self._update()

    def add(self, values: Iterable[str], owner: str | None = None) -> None:
        """More secrets: a template instance's rendered env and header values (the newest MAX_SECRETS of
        them: the oldest are forgotten first), or with `owner`, a principal's own values, which replace
        that principal's before (so one who changes its values again and again holds only its current ones)."""
        if owner is not None:
            mine = frozenset(v for v in values if _literal(v) and v not in self._configured)
            if self._owned.get(owner) == mine:
                self._owned[owner] = self._owned.pop(owner)  # in use: the last to be forgotten
                return
            self._owned.pop(owner, None)
            if mine:
                self._owned[owner] = mine
            while sum(len(s) for s in self._owned.values()) > MAX_SECRETS:
                del self._owned[next(iter(self._owned))]
            self._update()
            return
        fresh = [v for v in dict.fromkeys(values) if _literal(v) and v not in self._configured]
        if not fresh or all(v in self._rendered for v in fresh):
            return
        for value in fresh:
            self._rendered.pop(value, None)
            self._rendered[value] = None
        while len(self._rendered) > MAX_SECRETS:
            del self._rendered[next(iter(self._rendered))]
        self._update()

    def _update(self) -> None:
        owned = {v for values in self._owned.values() for v in values}
        self._owned_all = frozenset(owned - self._configured - self._rendered.keys())
        secrets = sorted(self._configured | self._rendered.keys() | owned, key=len, reverse=True)
        prefixes: dict[str, list[str]] = {}
        if len(secrets) >= BY_PREFIX:
            for secret in secrets:  # longest first, as replaced
                prefixes.setdefault(secret[:MIN_SECRET], []).append(secret)
        self._known = (secrets, prefixes)

    def _present(self, text: str) -> list[str]:
        """The secrets that may occur in `text`, longest first (every one, or those starting somewhere)."""
        secrets, prefixes = self._known
        if not prefixes:
            return secrets
        found = {s for i in range(len(text) - MIN_SECRET + 1) for s in prefixes.get(text[i : i + MIN_SECRET], ())}
        return sorted(found, key=len, reverse=True) if found else []

    def scrub(self, text: str) -> str:
        """`text` without the known secrets and credential-shaped values (each becomes ***). A principal's
        own values are not masked inside an audit line's `principal=`, `server=` or `tool=` field: no
        one can hide who did what by choosing a value for themselves."""
        chosen: list[str] = []
        for secret in self._present(text):
            if secret in text:
                if secret in self._owned_all and ("principal=" in text or "server=" in text or "tool=" in text):
                    chosen.append(secret)
                else:
                    text = text.replace(secret, "***")
        if chosen:
            parts = _WHO.split(text)
            for i in range(0, len(parts), 2):  # the odd parts are the principal fields
                for secret in chosen:
                    parts[i] = parts[i].replace(secret, "***")
            text = "".join(parts)
        lower = text.lower()  # the patterns run only where one could match (an audit line per call: ~1 us)
        if any(word in lower for word in TOKEN_WORDS):
            text = TOKEN.sub(r"\1***", JSON_SECRET.sub(r"\1***\3", text))
        if "eyJ" in text:
            text = JWT.sub("***", text)
        if any(prefix in text for prefix in HUB_PREFIXES):
            text = HUB_CREDENTIAL.sub(r"\1***", text)
        if "://" in text:
            text = URL_TOKEN.sub(r"\1***\3", URL_PASSWORD.sub(r"\1***\3", text))
        return text

    def shown(self, text: str, limit: int = SHOWN_MAX) -> str:
        """`text` as a surface outside the log shows it: scrubbed, on one line, and its first `limit`
        characters (an upstream's 200 KB error message was /health's lastError, and every client's error)."""
        return echo(one_line(self.scrub(text)), limit)  # cut once scrubbed: no secret's start is left behind

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.shown(message, LOG_MAX)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and not getattr(record, "traceback_shown", False):  # once, through two handlers too
            record.exc_text = traceback_text(self.scrub(record.exc_text))
            record.traceback_shown = True
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


REDACTOR = Redactor()
