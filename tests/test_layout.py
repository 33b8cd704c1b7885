"""The tests mirror the package: each module under src/onemcp has its test file, or says below which test covers it.

The mirror of `src/onemcp/<path>/<module>.py` is `tests/<path>/test_<module>.py`. pytest imports test files by
their base name (tests/ holds no `__init__.py`), so base names must be unique across tests/: where two packages
have a module of the same name, the mirror may carry its package's name too (`src/onemcp/protocol/sse.py` ->
`tests/protocol/test_protocol_sse.py`). A module tested through another way in (end to end, over the wire, as
part of a bigger unit) is listed in `COVERED_ELSEWHERE` with that test and why. `__init__.py` files hold no code.
No module is longer than MAX_MODULE_LINES.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "onemcp"
TESTS = ROOT / "tests"

# module (relative to src/onemcp) -> (the test that covers it, relative to the repository; why there)
COVERED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "__main__.py": ("tests/cli/test_serve.py", "`python -m onemcp` is how the subprocess tests start the CLI"),
    "app.py": ("tests/downstream/test_streamable_wire.py", "routes, Host/Origin checks, admission, over raw HTTP"),
    # auth/
    "auth/access.py": ("tests/auth/test_access_matrix.py", "the one access decision, entry x credential x scope x op"),
    "auth/principal.py": ("tests/auth/test_gate.py", "who a request is, as the gate admits it"),
    "auth/server/directory.py": ("tests/auth/server/test_server_app.py", "client lookup and authentication"),
    "auth/server/consent.py": ("tests/auth/server/test_server_app.py", "the consent page and its operator key"),
    "auth/server/grants.py": ("tests/auth/server/test_server_app.py", "PKCE codes, token rotation, reuse, revocation"),
    "auth/server/store.py": ("tests/auth/server/test_server_app.py", "the state behind the grants"),
    "auth/server/shared.py": (
        "tests/auth/server/test_server_app.py",
        "every server test runs over SQLite and over Redis; two servers on one Redis honour each other",
    ),
    # catalog/
    "catalog/reach.py": ("tests/catalog/test_views.py", "what a view and a principal's scopes let a requester see"),
    # cli/: each command end to end, in-process or as a subprocess
    "cli/agent.py": ("tests/cli/test_agent_cli.py", "`instructions`, `inspect`, `run`, `cli-setup` against a real hub"),
    "cli/app.py": ("tests/cli/test_app_commands.py", "`onemcp app ...`"),
    "cli/inventory.py": ("tests/cli/test_agent_cli.py", "the tools by server that `inspect` and `run` read, real hubs"),
    "admin/errors.py": ("tests/admin/test_api.py", "the API's error, answered by every route"),
    "admin/routing.py": ("tests/admin/test_api.py", "routes and requests: every endpoint, every caller"),
    "cli/auth.py": ("tests/cli/test_auth_cli.py", "`onemcp auth key ...`"),
    "cli/my_secrets.py": ("tests/downstream/test_my_secrets.py", "`auth secret mine` against the endpoint it calls"),
    "cli/pins.py": ("tests/test_pinned_tools.py", "`onemcp mcp pins` and `approve` with no hub running, end to end"),
    "cli/client/http1.py": ("tests/cli/test_agent_cli.py", "the CLI's HTTP client, under the agent commands"),
    "cli/client/rpc.py": ("tests/cli/test_agent_cli.py", "the CLI's JSON-RPC client, under the agent commands"),
    "cli/main.py": ("tests/cli/test_mcp_commands.py", "parsing and hand-off, under every command test"),
    "cli/mcp.py": ("tests/cli/test_mcp_commands.py", "`onemcp mcp ...`"),
    "cli/playbook.py": ("tests/cli/test_agent_cli.py", "the playbook `cli-setup` writes"),
    "cli/preset.py": ("tests/cli/test_preset_cli.py", "`onemcp preset ...`"),
    "cli/proxy_modern.py": ("tests/cli/test_proxy.py", "the proxy's 2026-07-28 path, through the SDK's stdio client"),
    "cli/terminal.py": ("tests/cli/test_agent_cli.py", "hostile upstream text, printed by inspect/run/instructions"),
    "cli/upstream_login.py": ("tests/upstream/oauth/test_oauth_upstream.py", "`onemcp upstream login/list/logout`"),
    # config/
    "config/auth_settings.py": ("tests/config/test_load.py", "JWT, roles, quotas and scopes as a config loads them"),
    "config/base.py": ("tests/config/test_load.py", "unknown keys, true and NaN for numbers, through every model"),
    "config/files.py": ("tests/config/test_edit.py", "atomic replace and backups, under every config edit"),
    "config/filters.py": ("tests/catalog/test_views.py", "the filter language, through the views it selects"),
    "config/model.py": ("tests/config/test_load.py", "the schema, through loading and its error paths"),
    "config/paths.py": ("tests/config/test_load.py", "where mcp.json is looked for"),
    "config/presets.py": ("tests/cli/test_preset_cli.py", "presets.json, written there, honoured by a hub"),
    "config/values.py": ("tests/config/test_load.py", "finite numbers and URLs, through loading a config"),
    "config/upstream_settings.py": ("tests/config/test_load.py", "oauth, probe and sandbox, as a config loads them"),
    "config/runtime.py": ("tests/cli/test_target.py", "runtime.json, as a client command finds its hub"),
    # search/
    "search/embed.py": ("tests/search/test_index.py", "the shipped model, through the index that uses it"),
    "search/lexical.py": ("tests/search/test_index.py", "BM25, through the index (and the lexical-only bench)"),
    "search/text.py": ("tests/search/test_index.py", "what of a tool is searched, through the index"),
    # demo/: the demo server is also the test suite's fixture upstream
    "demo/__main__.py": ("tests/test_fixture_upstream.py", "`python -m onemcp.demo` with the official SDK client"),
    "demo/kit.py": ("tests/test_fixture_upstream.py", "the demo/fixture servers, with the official SDK client"),
    "demo/memory.py": ("tests/upstream/transports/test_transports_memory.py", "the server side of in-memory upstreams"),
    "demo/peer.py": ("tests/test_fixture_upstream.py", "the demo/fixture servers, with the official SDK client"),
    "demo/server.py": ("tests/test_fixture_upstream.py", "the demo server, with the official SDK client"),
    "demo/stdio.py": ("tests/test_fixture_upstream.py", "the demo/fixture servers over stdio"),
    "demo/wire.py": ("tests/test_fixture_upstream.py", "the demo/fixture servers' JSON-RPC basics"),
    # downstream/: each front door over its wire
    "downstream/exchange.py": ("tests/test_hub_e2e.py", "the error boundary: unknown tools, errors, deadlines"),
    "downstream/health.py": ("tests/downstream/test_streamable_wire.py", "/health, /health/live, /health/ready"),
    "downstream/listen.py": ("tests/downstream/test_modern.py", "subscriptions/listen on the wire"),
    "downstream/stdio.py": ("tests/downstream/test_stdio_serve.py", "`serve --transport stdio`, SDK stdio client"),
    "downstream/streamable.py": ("tests/downstream/test_streamable_wire.py", "the /mcp wire as raw HTTP sees it"),
    "downstream/upstream_auth.py": ("tests/upstream/oauth/test_oauth_upstream.py", "the /oauth/upstream endpoints"),
    "downstream/user_link.py": ("tests/upstream/oauth/test_oauth_per_user.py", "a user's sign-in for their own link"),
    # http/
    "http/routes.py": ("tests/upstream/oauth/test_oauth_upstream.py", "route names only: the callback uses them"),
    # hub/: in process over in-memory upstreams (tests/hub/), and end to end
    "hub/announcements.py": ("tests/hub/test_hub_list_changed.py", "list_changed only to whose visible list changed"),
    "hub/bridge.py": ("tests/test_bridging.py", "the four era combinations and input requests between them"),
    "hub/core.py": ("tests/hub/test_hub_routing.py", "the Hub's front, built in process over in-memory upstreams"),
    "hub/dispatch.py": ("tests/hub/test_hub_routing.py", "routing by name and URI, unknown names, upstream errors"),
    "hub/events.py": ("tests/hub/test_hub_supervision.py", "a connection's state and lists reaching the catalog"),
    "hub/forward.py": ("tests/hub/test_hub_rewriting.py", "ids, progress and results of a forwarded call"),
    "hub/listeners.py": ("tests/downstream/test_modern.py", "listen streams: tagged list_changed, the graceful end"),
    "hub/stopping.py": ("tests/cli/test_shutdown.py", "the end of the shutdown grace: each request and stream"),
    "hub/revival.py": ("tests/test_session_survival.py", "a saved session revived after a restart, for its owner only"),
    "hub/state.py": ("tests/downstream/test_streamable_wire.py", "what /health reports of the running hub"),
    "hub/tasks.py": ("tests/test_tasks.py", "task-augmented calls and tasks/* through the hub"),
    # integrations/
    # observability/
    "observability/limits.py": ("tests/hub/test_session.py", "limit counters and rate-limited warnings under floods"),
    # protocol/: vocabulary, exercised by every test of the wire
    "protocol/errors.py": ("tests/protocol/test_jsonrpc.py", "the error tree's JSON-RPC codes, with the envelope"),
    "protocol/headers.py": ("tests/downstream/test_modern.py", "the 2026-07-28 request headers, checked on the wire"),
    "protocol/meta.py": ("tests/downstream/test_modern.py", "constants: the 2026-07-28 `_meta` keys on the wire"),
    "protocol/methods.py": ("tests/auth/test_access_matrix.py", "constants: the method vocabulary, against the routes"),
    "protocol/stdio.py": ("tests/downstream/test_stdio_serve.py", "this process's stdin/stdout, in stdio subprocesses"),
    "protocol/versions.py": ("tests/downstream/test_streamable_wire.py", "negotiation and the version header"),
    # upstream/
    "upstream/era.py": ("tests/test_bridging.py", "the envelope and headers of each era, in all four combinations"),
    "upstream/lists.py": ("tests/upstream/test_floods.py", "paging and its bounds: an endless list is cut"),
    "upstream/replies.py": ("tests/test_reverse_limits.py", "refusals of a flood of client requests are written by it"),
    "upstream/feed.py": ("tests/test_bridging.py", "opened for each modern upstream there; nothing asserts on it yet"),
    "upstream/isolation.py": ("tests/test_reverse_path.py", "isolation session/auto: whose requests go where"),
    "upstream/oauth/client.py": ("tests/upstream/oauth/test_oauth_credential.py", "one credential's life"),
    "upstream/oauth/dpop.py": ("tests/upstream/oauth/test_oauth_credential.py", "DPoP proofs of a credential"),
    "upstream/oauth/flow.py": ("tests/upstream/oauth/test_oauth_discovery.py", "the OAuth client steps"),
    "upstream/oauth/http.py": ("tests/upstream/oauth/test_oauth_discovery.py", "the OAuth client's HTTP requests"),
    "upstream/oauth/registry.py": ("tests/upstream/oauth/test_oauth_credential.py", "the hub's credential per server"),
    "upstream/pool.py": ("tests/upstream/test_replicas.py", "slots, replicas, balancing"),
    "upstream/transports/base.py": ("tests/upstream/transports/test_transports_memory.py", "the Transport contract"),
    "upstream/transports/factory.py": ("tests/hub/test_hub_routing.py", "built with an in-memory factory"),
}


def modules() -> list[str]:
    return sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if p.name != "__init__.py")


def mirrors(module: str) -> list[Path]:
    """Where the mirrored test of `module` may be: test_<module>.py, or test_<package>_<module>.py."""
    path = Path(module)
    names = [f"test_{path.stem}.py"]
    if path.parent.parts:
        names.append(f"test_{path.parent.name}_{path.stem}.py")
    return [TESTS / path.parent / name for name in names]


def mirrored(module: str) -> bool:
    return any(p.is_file() for p in mirrors(module))


def test_every_module_has_a_mirrored_test_or_says_where_it_is_covered() -> None:
    missing = [m for m in modules() if not mirrored(m) and m not in COVERED_ELSEWHERE]
    wanted = "\n".join(f"  src/onemcp/{m}: {mirrors(m)[0].relative_to(ROOT)}" for m in missing)
    assert not missing, f"modules without a test: write it, or list the module in COVERED_ELSEWHERE\n{wanted}"


def test_covered_elsewhere_lists_only_modules_that_exist_without_a_mirror() -> None:
    known = set(modules())
    gone = [m for m in COVERED_ELSEWHERE if m not in known]
    assert not gone, f"COVERED_ELSEWHERE names modules that no longer exist: {gone}"
    redundant = [m for m in COVERED_ELSEWHERE if mirrored(m)]
    assert not redundant, f"these modules have a mirrored test now: remove them from COVERED_ELSEWHERE: {redundant}"


def test_covered_elsewhere_points_at_tests_that_exist() -> None:
    absent = {m: test for m, (test, _) in COVERED_ELSEWHERE.items() if not (ROOT / test).is_file()}
    assert not absent, f"COVERED_ELSEWHERE points at test files that do not exist: {absent}"
    unexplained = [m for m, (_, why) in COVERED_ELSEWHERE.items() if not why.strip()]
    assert not unexplained, f"say why these modules are covered where they are: {unexplained}"


def test_test_file_names_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "npm" not in p.relative_to(TESTS).parts)
    twice = sorted(name for name, n in names.items() if n > 1)
    assert not twice, f"pytest imports test files by base name; these are not unique: {twice}"


MAX_MODULE_LINES = 600  # style.md: past ~600 lines a module is usually two concepts; move one out first


def test_no_module_is_two_concepts_long() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py")}
    too_long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"over {MAX_MODULE_LINES} lines (split a concept out): {too_long}"
