"""`onemcp serve`: find or create the config, validate it, bind, and run the hub under uvicorn."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Generator, Mapping
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson

from onemcp.app import HubServer, OneMcpApp
from onemcp.auth.principal import ANONYMOUS, InvalidToken, Principal
from onemcp.catalog.views import ViewError
from onemcp.cli import address
from onemcp.cli.daemon import starter_if_missing
from onemcp.config.load import ConfigError, load_config, resolve_path
from onemcp.config.model import HubConfig
from onemcp.config.paths import NAMES, other_configs
from onemcp.config.runtime import LOCK_FILE
from onemcp.http.guard import is_loopback
from onemcp.http.server import raise_fd_limit
from onemcp.observability import logs
from onemcp.observability.redact import REDACTOR
from onemcp.search import deep

audit = logging.getLogger("onemcp.audit")
OPEN_NETWORK_FLAG = address.OPEN_NETWORK_FLAG


def write_runtime(
    config_path: Path,
    url: str,
    *,
    free_port: bool = False,
    open_network: bool = False,
    log_as: tuple[str, str] = ("info", "text"),
) -> Path:
    """Tell local tools (the CLI) where the running hub is: `runtime.json` beside the config, whose path
    it records absolute (a tool in another directory reads it; not resolved: a link stays the one named)
    (`freePort`: --port 0 chose the port, another at every start, so no app's config should keep it;
    `openNetwork`: it serves an open address with no authentication because it was given OPEN_NETWORK_FLAG;
    `logLevel`, `logFormat`: how it logs. `restart` gives the hub it starts those again)."""
    runtime = config_path.parent / "runtime.json"
    doc: dict[str, object] = {"url": url, "pid": os.getpid(), "config": os.path.abspath(config_path)}
    doc.update({"freePort": True} if free_port else {})
    doc.update({"openNetwork": True} if open_network else {})
    doc.update({"logLevel": log_as[0], "logFormat": log_as[1]})
    tmp = runtime.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc))
    tmp.replace(runtime)
    return runtime


def remove_runtime(runtime: Path) -> None:
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        if orjson.loads(runtime.read_bytes()).get("pid") == os.getpid():
            runtime.unlink()


class SaidServer(HubServer):
    """The hub's server for a foreground `serve`: says on stderr (and in the log) that a signal is
    stopping it, and that it stopped, before uvicorn raises the signal again to end the process with it
    (SIGTERM's end printed nothing: no `finally` or line after `run` is reached then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signalled: int | None = None
        self.said_stopped = False
        self.log_file = False  # the log says it too: a file, or JSON records (else stderr's line says it)
        self.quiet = False  # stderr is the log (`start`'s file, or JSON records): the log's own lines say it, once

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.signalled is None:
            self.signalled = sig
            grace = "" if self.grace is None else f" (requests in flight get {self.grace:g} s)"
            if not self.quiet:
                print(f"onemcp: stopping on {_signal_name(sig)}{grace}", file=sys.stderr, flush=True)
            if self.log_file:
                logging.getLogger("onemcp").info("stopping on %s%s", _signal_name(sig), grace)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():  # raises the signal caught again as it exits
            yield
            app = self.config.app
            if self.signalled is not None and not (isinstance(app, OneMcpApp) and app.failed is not None):
                if not self.quiet:
                    print("onemcp: stopped", file=sys.stderr, flush=True)
                self.said_stopped = True


def _same_file(stream: Any, path: Path) -> bool:
    """Is `stream` the file at `path` (`start` sends the hub's stderr to its log file)?"""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, AttributeError):
        return False


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _config(config_flag: str | None) -> tuple[Path, HubConfig] | int:
    """The config to serve (a starter one written when there is none), or the exit code (also for a
    malformed setting in the environment the hub reads)."""
    if problem := deep.env_problem():
        print(f"onemcp: {problem}", file=sys.stderr)
        return 2
    path = resolve_path(config_flag)
    if (refused := starter_if_missing(path, config_flag)) is not None:
        return refused
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"onemcp: invalid config: {exc}", file=sys.stderr)
        return 2
    REDACTOR.use(config)
    return path, config


def hub_lock(path: Path) -> int | None:
    """Hold the config directory's hub lock for this process's life: its fd, or None when another hub has it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.set_inheritable(fd, False)
    os.ftruncate(fd, 0)  # whose lock it is: `onemcp stop` finds the hub by it should runtime.json be lost
    os.write(fd, str(os.getpid()).encode())
    return fd


def serve(
    config_flag: str | None,
    host: str,
    port: int,
    log_level: str,
    log_format: str = "text",
    allow_open_network: bool = False,
    log_file: Path | None = None,
) -> int:
    deep.share_one_arena()  # first: any client may search (?exposure=search), and a thread's arena is for good
    try:
        logs.configure(log_level, log_format, log_file)
    except OSError as exc:  # a directory, a folder it may not create or write in
        print(f"onemcp: --log-file {log_file}: cannot open it: {exc.strerror}", file=sys.stderr)
        return 2
    host = address.unbracketed(host)
    # before the open-network check, which would read a mistyped address as an open one, and before anything
    # is written (the starter config, the lock): a mistyped port leaves no file behind
    sock = address.take(host, port, resolve_path(config_flag))
    if isinstance(sock, str):
        print(f"onemcp: {sock}", file=sys.stderr)
        return 2
    with sock:  # closed on a refusal below (uvicorn closes it after serving)
        return _serve_bound(
            sock, config_flag, host, allow_open_network, log_file, free_port=port == 0, log_as=(log_level, log_format)
        )


def _serve_bound(
    sock: socket.socket,
    config_flag: str | None,
    host: str,
    allow_open_network: bool,
    log_file: Path | None,
    *,
    free_port: bool = False,
    log_as: tuple[str, str] = ("info", "text"),
) -> int:
    """`log_as`: the log's level and format; JSON records: on stderr (no `log_file`) what the hub says there
    goes as records too, so that a collector reading stderr (a container's) finds one record per line."""
    json_log = log_as[1] == "json"
    logged = log_file is not None or json_log  # the log says what the hub says (else stderr's lines only)
    # stderr is the log (`start` sends it to the log file; JSON records on stderr): say it there as records
    quiet = (log_file is None and json_log) or (log_file is not None and _same_file(sys.stderr, log_file))
    said = logging.getLogger("onemcp")
    if not allow_open_network and (
        refused := address.exposed_starter(resolve_path(config_flag), config_flag, host, OPEN_NETWORK_FLAG)
    ):
        print(f"onemcp: {refused}", file=sys.stderr)
        return 2
    loaded = _config(config_flag)
    if isinstance(loaded, int):
        return loaded
    path, config = loaded
    if not allow_open_network and (
        refused := address.unauthenticated(host, config.hub.auth.required, override=OPEN_NETWORK_FLAG)
    ):
        print(f"onemcp: {refused}", file=sys.stderr)  # before the lock: a refusal leaves no hub.lock behind
        return 2
    if hub_lock(path) is None:
        print(f"onemcp: {address.already_running(path)}", file=sys.stderr)
        return 2
    exposed = not is_loopback(host.strip("[]")) and not config.hub.auth.required
    if exposed:
        _warn(quiet, f"WARNING: serving {host} WITHOUT AUTHENTICATION")
    try:
        logs.configure_audit(config.hub.audit)  # opened before anything says it listens (the app opens it again)
    except OSError as exc:
        print(f"onemcp: {path}: onemcp.audit: cannot open {config.hub.audit}: {exc.strerror}", file=sys.stderr)
        return 2
    bound_port = sock.getsockname()[1]
    try:  # (another program bound it too, without listening yet, and listened first)
        sock.listen(2048)
    except OSError as exc:
        print(f"onemcp: {address.refusal(host, bound_port, exc, path)}", file=sys.stderr)
        return 2
    shown = f"[{host}]" if ":" in host else host
    for other in other_configs(path) if path.name in NAMES else ():  # (a file named by the user is theirs)
        _warn(quiet, f"warning: {other} is not read: {path} is the config (remove one of them)")
    if not quiet:  # (the log's "listening" record says it)
        print(f"onemcp: serving {len(config.enabled)} server(s) from {path}", file=sys.stderr)
    print(f"onemcp: listening on http://{shown}:{bound_port}/mcp", flush=True)
    app = OneMcpApp(config, bind_host=host, config_path=path, public_url=f"http://{shown}:{bound_port}/mcp")
    url = f"http://{shown}:{bound_port}/mcp"
    runtime = write_runtime(path, url, free_port=free_port, open_network=exposed, log_as=log_as)
    app.on_shutdown.append(lambda: remove_runtime(runtime))  # SIGTERM never reaches the finally below
    if logged:  # the lines above went to a terminal, or nowhere (`start`, JSON): the log says them too
        said.info("listening on http://%s:%d/mcp (pid %d), serving %s", shown, bound_port, os.getpid(), path)
        app.on_shutdown.append(lambda: said.info("stopped (pid %d)", os.getpid()))
    raise_fd_limit()  # the connection cap is drawn from it
    server = SaidServer(app.server_config(timeout_graceful_shutdown=5))
    server.log_file, server.quiet = logged, quiet
    try:
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the signal after a clean shutdown
            server.run(sockets=[sock])
    finally:
        remove_runtime(runtime)
    if app.failed is not None:
        _warn(quiet, app.failed, logging.ERROR)
        return 1
    if not server.said_stopped and not quiet:
        print("onemcp: stopped", file=sys.stderr)
    return 0


def _warn(quiet: bool, text: str, level: int = logging.WARNING) -> None:
    """A warning `serve` gives before it serves (or why it stopped): a line on stderr, or a record where
    stderr is the log."""
    if quiet:
        logging.getLogger("onemcp").log(level, "%s", text)
    else:
        print(f"onemcp: {text}", file=sys.stderr)


def serve_stdio(
    config_flag: str | None, log_level: str, log_format: str = "text", selectors: Mapping[str, str] | None = None
) -> int:
    """The hub for one client on stdin/stdout (stdout carries only JSON-RPC; logs go to stderr).
    `selectors` (preset, filter, tags, exposure) choose the client's view as /mcp's query string does."""
    from onemcp.catalog import views
    from onemcp.downstream.stdio import StdioServer
    from onemcp.hub import served
    from onemcp.hub.core import Hub
    from onemcp.protocol.stdio import std_streams, until_terminated
    from onemcp.reload import Reloader
    from onemcp.upstream.oauth.registry import UpstreamAuth

    deep.share_one_arena()  # first, as `serve`
    logs.configure(log_level, log_format)
    loaded = _config(config_flag)
    if isinstance(loaded, int):
        return loaded
    path, config = loaded
    principal = anyio.run(stdio_principal, config, path)
    if isinstance(principal, str):
        print(f"onemcp: {principal}", file=sys.stderr)
        return 2
    query, (presets, unread) = urlencode(selectors or {}, safe=",!()"), _presets(path)
    try:  # the same reading (and the same refusals) as the query string of /mcp
        view = views.from_query(query, presets, views.known_tags(config))
        exposure = views.exposure_from_query(query)
    except ViewError as exc:
        why = f" ({unread})" if unread and isinstance(exc, views.UnknownPreset) else ""
        print(f"onemcp: {exc}{why}", file=sys.stderr)
        return 2
    outside = len(served.left_out(config, view, presets))  # one view for the process's life: only what it reaches runs
    reach = f"{len(config.enabled) - outside} of {len(config.enabled)}" if outside else f"{len(config.enabled)}"
    said = ": the others are outside its view, not started" if outside else ""
    print(f"onemcp: serving {reach} server(s) from {path} on stdio{said}", file=sys.stderr)
    signalled: list[int] = []

    async def main() -> None:
        # stored upstream OAuth tokens are used (and refreshed); authorizing needs the HTTP hub's callback
        hub = Hub(config, UpstreamAuth(path.parent, None, config.hub.shared_store))
        served.serve_view(hub, view)
        reloader = Reloader(hub, path, sighup=False)  # SIGHUP ends a stdio session (until_terminated)
        reloader.load_presets()
        reloader.applied = partial(served.follow, hub, view)  # a server tagged into the view starts, one out stops
        streams = std_streams(config.hub.max_body_bytes)  # a line is a message: POST's bound
        server = StdioServer(hub, principal, *streams, reloader=reloader, view=view, exposure=exposure)
        # SIGTERM (how clients end a stdio server) ends the session as EOF does, not the process at once
        code = await until_terminated(server.run, server.stop)
        if code is not None:
            signalled.append(code)

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        return 130  # Ctrl-C, as the shell reports it
    return signalled[0] if signalled else 0


def _presets(path: Path) -> tuple[dict[str, str], str | None]:
    """The presets beside `path` (name -> filter), for the view a stdio hub serves; none, and why, when
    the file cannot be used (the reloader keeps none in use either)."""
    from onemcp.config.presets import PresetError, load_presets, presets_path

    try:
        return {name: entry["filter"] for name, entry in load_presets(presets_path(path)).items()}, None
    except PresetError as exc:
        return {}, str(exc)


async def stdio_principal(config: HubConfig, path: Path) -> Principal | str:
    """Who the stdio client is: the local operator, or, when the config requires auth, the
    principal of `$ONEMCP_TOKEN` (the same credentials and scopes as over HTTP); else why not."""
    from onemcp.auth.gate import Gate
    from onemcp.auth.keys import PREFIX as KEY_PREFIX
    from onemcp.cli.client.rpc import TOKEN_ENV

    gate = Gate(config.hub.auth, path.parent, None)
    if not gate.required:
        return ANONYMOUS
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        return f"this config requires auth (onemcp.auth): set ${TOKEN_ENV} to an API key or token for stdio"
    auth = config.hub.auth
    if not token.startswith(KEY_PREFIX) and auth.public_url is None and not (auth.jwt and auth.jwt.audience):
        # a token is for a resource (RFC 8707), and a hub on stdio has no URL to be one by: it would check
        # the audience against a guess, refusing tokens made for this hub and taking others'
        return (
            f"${TOKEN_ENV} looks like a JWT or OAuth token, which is checked against the resource it was issued "
            "for: set onemcp.auth.publicUrl (the hub's URL) or auth.jwt.audience, or use an API key on stdio"
        )
    try:
        principal = await gate.verify(token)
    except InvalidToken as exc:
        audit.info("auth denied principal=- entry=stdio reason=%s", exc)
        return f"${TOKEN_ENV} was refused: {exc}"
    if not principal.may_enter:
        audit.info("auth denied principal=%s entry=stdio reason=needs scope mcp", principal.id)
        return f"${TOKEN_ENV} was refused: it holds no scope of this hub (mcp, server:, tag:, tool: or admin)"
    return principal
