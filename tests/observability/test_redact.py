"""Redaction: config secrets, credential-shaped values and control characters, in the log and on every
surface outside it (client errors, /health, the admin API, the event stream)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio
import httpx
import orjson
import pytest
from mcp import Client

from onemcp.config.model import HubConfig
from onemcp.observability import redact as redact_module
from onemcp.observability.events import EventBus
from onemcp.observability.redact import REDACTOR, SECRET_NAME, Redactor, display_url, one_line, printable
from support.hub import running_hub


def test_credentials_in_urls_and_parameters_are_masked() -> None:
    scrub = Redactor().scrub
    line = "POST http://alice:hunter2pass@127.0.0.1:9/mcp?access_token=argsecret-B&x=1 failed; client_secret=s3cr3tval"
    clean = scrub(line)
    assert "hunter2pass" not in clean and "argsecret-B" not in clean and "s3cr3tval" not in clean
    assert "http://alice:***@127.0.0.1:9/mcp?access_token=***&x=1" in clean
    assert scrub("auth denied reason=no bearer token") == "auth denied reason=no bearer token"
    assert scrub("Authorization: Bearer abc.def") == "Authorization: Bearer ***"


def test_jwts_json_credential_fields_and_the_hub_s_own_credentials_are_masked() -> None:
    """Shapes an upstream's error body or a server's stderr carries with no `token=` or `Bearer` before
    them: they reached /health's lastError, clients' errors and the log as they were."""
    scrub = Redactor().scrub
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    assert scrub(f"HTTP 401 Unauthorized: invalid_token: {jwt}") == "HTTP 401 Unauthorized: invalid_token: ***"
    answer = '{"access_token": "at-0123456789", "refreshToken": "rt-\\"0123456789", "clientSecret": "cs-0123456789"}'
    assert scrub(answer) == '{"access_token": "***", "refreshToken": "***", "clientSecret": "***"}'
    key, token = "omk_0123456789ab_AbCdEfGhIjKlMnOpQrSt-_Uv", "omrt_AbCdEfGhIjKlMnOpQrStUvWx"
    assert scrub(f"echoed {key} and {token}") == "echoed omk_0123456789ab_*** and omrt_***"
    kept = '{"token_type": "Bearer", "tokenCount": 5, "max_tokens": "100"} principal=key:0123456789ab tool=get_token'
    kept += ' {"progressToken": "p-0123456789", "nextPageToken": "n-0123456789", "page_token": "c-0123456789"}'
    assert scrub(kept) == kept  # what names a credential without being one stays readable


def test_a_variable_in_a_server_url_is_a_secret() -> None:
    """A key kept in the environment and put in a URL's path (`${KEY}`, as hosted servers want it) was
    shown in clear in the upstream's failure: /health and the admin API's lastError, the log, clients'
    errors. A whole URL from a variable is masked as the hub shows it (without user or query) too."""
    from onemcp.config.load import parse_config

    doc = {
        "mcpServers": {
            "zap": {"url": "https://mcp.example/s/${ZAP_KEY}/sse", "replicas": ["https://b.example/$B_KEY/mcp"]},
            "whole": {"url": "${WHOLE_URL}"},
            "plain": {"url": "https://${HOST}/mcp/${SHORT}"},
        }
    }
    env = {
        "ZAP_KEY": "sk-ak-0Xo1vJgC7bWcO4PfGq",
        "B_KEY": "b-key-0123456789",
        "WHOLE_URL": "https://u:pw@Other.example/t/abcdef0123/mcp?x=1",
        "HOST": "docs.example",
        "SHORT": "v1",
    }
    redactor = Redactor()
    redactor.use(parse_config(orjson.dumps(doc), source="mcp.json", env=env))
    assert redactor.shown("POST https://mcp.example/s/sk-ak-0Xo1vJgC7bWcO4PfGq/sse failed") == (
        "POST https://mcp.example/s/***/sse failed"
    )
    assert redactor.shown("GET https://b.example/b-key-0123456789/mcp failed") == "GET https://b.example/***/mcp failed"
    assert redactor.shown(f"POST {display_url(env['WHOLE_URL'])} failed: 503") == "POST *** failed: 503"
    # any variable's value is, as in env and headers, but one too short to be a secret (a version)
    assert redactor.shown("POST https://docs.example/mcp/v1 failed") == "POST https://***/mcp/v1 failed"


def test_a_key_written_in_a_server_url_is_a_secret() -> None:
    """A hosted server's key written in its URL's path (or a query value the credential patterns do not
    name) was shown in clear in its failure, as the ${VAR} one was; a path of words stays readable."""
    servers = {
        "zap": {"url": "https://actions.zapier.example/mcp/sk-ak-0Xo1vJgC7bWcO4PfGqbf4qmk8wE2Hk1i/sse"},
        "pd": {
            "url": "https://pd.example/550e8400-e29b-41d4-a716-446655440000/gmail",
            "replicas": ["https://b.example/mcp"],
        },
        "q": {"url": "https://q.example/mcp?key=abcdEFGH12345678&profile=default"},
        "plain": {"url": "https://docs.example/mcp/v1/servers/github-2025"},
    }
    redactor = Redactor()
    redactor.use(HubConfig.model_validate({"mcpServers": servers}))
    assert redactor.shown(
        "POST https://actions.zapier.example/mcp/sk-ak-0Xo1vJgC7bWcO4PfGqbf4qmk8wE2Hk1i/sse failed"
    ) == ("POST https://actions.zapier.example/mcp/***/sse failed")
    assert redactor.shown("GET https://pd.example/550e8400-e29b-41d4-a716-446655440000/gmail") == (
        "GET https://pd.example/***/gmail"
    )
    assert redactor.shown("POST https://q.example/mcp?key=abcdEFGH12345678&profile=default failed") == (
        "POST https://q.example/mcp?key=***&profile=default failed"
    )
    assert redactor.shown("POST https://docs.example/mcp/v1/servers/github-2025 failed") == (
        "POST https://docs.example/mcp/v1/servers/github-2025 failed"
    )


def test_a_credential_in_a_server_s_arguments_is_a_secret() -> None:
    """`"args": ["--access-key", "AKIA..."]`: a server that says its arguments on stderr (or whose error
    quotes its key) showed the key in /health, the admin API's stderrTail, the log and clients' errors.
    An option naming a secret, or a word shaped like a key, is masked; packages, paths and versions stay."""
    args = ["-y", "@scope/server-fs", "/home/u/projects2024", "--access-key", "AKIALITERALARG12345678",
            "--token=ghp_abc123", "--port", "8080", "mcp-server-git==0.6.2", "sk-proj-abcdef1234567890XYZ"]  # fmt: skip
    redactor = Redactor()
    redactor.use(HubConfig.model_validate({"mcpServers": {"s": {"command": "npx", "args": args}}}))
    line = "started with " + " ".join(args)
    assert redactor.shown(line) == (
        "started with -y @scope/server-fs /home/u/projects2024 --access-key *** --token=*** --port 8080"
        " mcp-server-git==0.6.2 ***"
    )


def test_an_upstream_oauth_client_secret_is_a_secret() -> None:
    """The hub's own client secret and private key with an upstream's authorization server are masked
    like env and header values (an error body the server echoes them in reaches /health and the log)."""
    oauth = {"clientId": "hub", "clientSecret": "cs-0123456789abcdef", "issuer": "https://as.example"}
    redactor = Redactor()
    redactor.use(HubConfig.model_validate({"mcpServers": {"s": {"url": "https://s.example/mcp", "oauth": oauth}}}))
    assert redactor.shown("token endpoint: HTTP 400: bad client cs-0123456789abcdef") == (
        "token endpoint: HTTP 400: bad client ***"
    )


def test_control_characters_are_escaped_onto_one_line() -> None:
    assert (
        one_line("job 1\r2026 WARNING forged\n\x1b[8mhidden\tok") == "job 1\\r2026 WARNING forged\\n\\x1b[8mhidden\tok"
    )
    assert Redactor().shown("a\nb") == "a\\nb"


def test_template_values_and_rendered_instances_are_secrets() -> None:
    config = HubConfig.model_validate(
        {
            "mcpTemplates": {
                "tp": {"command": "x", "env": {"KEY": "tplsecret-literal-7777", "DIR": "{{ project.path }}/data"}}
            }
        }
    )
    redactor = Redactor()
    redactor.use(config)
    assert redactor.scrub("key tplsecret-literal-7777") == "key ***"
    assert "{{ project.path }}/data" not in redactor.secrets  # a template is not a value
    redactor.add(["rendered-9999-value", "short"])
    assert redactor.scrub("rendered-9999-value and short") == "*** and short"
    redactor.use(config)  # a reload keeps what instances rendered
    assert redactor.scrub("rendered-9999-value") == "***"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://carol:pw99@host:8080/mcp?token=t777", "http://host:8080/mcp"),
        ("https://[::1]/sse#frag", "https://[::1]/sse"),
        ("http://h:99999/x", "(a URL that does not parse)"),
    ],
)
def test_display_url_has_no_user_password_or_query(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_the_event_stream_log_lines_are_scrubbed() -> None:
    bus = EventBus()
    REDACTOR.add(["evsecret-12345"])
    with bus.watch() as events:
        logging.getLogger("onemcp.test").warning("stderr: key evsecret-12345\r\x1b[2K forged")
        seen: list[dict[str, Any]] = []
        while True:
            try:
                seen.append(events.receive_nowait())
            except anyio.WouldBlock:
                break
    messages = [e["message"] for e in seen if e.get("kind") == "log"]
    assert messages == ["stderr: key ***\\r\\x1b[2K forged"]


@pytest.mark.anyio
async def test_secrets_in_a_failing_upstream_reach_no_client_and_no_report() -> None:
    leak = "import os, sys; sys.stderr.write('cannot use key ' + os.environ['FAILSEC'] + '\\n'); sys.exit(1)"
    servers = {
        "bad": {"command": sys.executable, "args": ["-c", leak], "env": {"FAILSEC": "failsecret-CCCC3333"}},
        "old": {"url": "http://eve:ssepass123@127.0.0.1:9/sse?token=ssetoken999", "type": "sse"},
    }
    secrets = ("failsecret-CCCC3333", "ssepass123", "ssetoken999")
    with anyio.fail_after(60):
        async with running_hub({"mcpServers": servers}) as hub:
            pool = hub.app.hub.pool
            while "cannot use key" not in (said := pool.connections["bad"].last_error or ""):
                await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline (the server fails, is restarted)
            assert "cannot use key ***" in said  # its stderr, as /health, the API and clients would get it
            while "sse failed" not in (said := pool.connections["old"].last_error or ""):
                await anyio.sleep(0.02)  # allowed-sleep: polling with a deadline
            assert "GET http://127.0.0.1:9/sse failed" in said
            async with Client(hub.url, mode="legacy", cache=None) as client:
                errors = []
                for name in ("bad__x", "old__x"):
                    with pytest.raises(Exception) as caught:
                        await client.call_tool(name, {})
                    errors.append(str(caught.value))
            async with httpx.AsyncClient() as http:
                health = (await http.get(f"{hub.base}/health")).text
                servers_api = (await http.get(f"{hub.base}/api/v1/servers")).text
    assert "[bad] server is" in errors[0] and "[old] server is" in errors[1], errors
    for text in (*errors, health, servers_api):
        assert not any(secret in text for secret in secrets), text


def test_a_log_line_cannot_pass_for_two() -> None:
    """A client's path (percent-decoded) or an upstream's stderr with a newline and a forged audit line."""
    import io

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(Redactor())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test-redact-forging")
    logger.handlers[:], logger.propagate = [handler], False
    forged = "/health\n2026-12-05 INFO onemcp.audit: call tool=delete_everything outcome=ok\x1b[2K"
    logger.warning("auth denied path=%s", forged)
    assert out.getvalue().count("\n") == 1 and "\\n2026-12-05 INFO onemcp.audit" in out.getvalue()


def test_a_logged_exception_cannot_pass_for_a_record_or_repaint_the_terminal() -> None:
    """An exception whose message carries what a client or upstream sent, logged with its traceback: every
    line of it is indented under its record, and its terminal codes and carriage returns are escaped (once,
    however many handlers filter the record)."""
    import io

    redactor = Redactor()
    outs = [io.StringIO(), io.StringIO()]
    logger = logging.getLogger("test-redact-forged-traceback")
    logger.handlers[:], logger.propagate = [logging.StreamHandler(out) for out in outs], False
    for handler in logger.handlers:
        handler.addFilter(redactor)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    try:
        raise ValueError("bad\x1b[2J\r\nINFO onemcp.audit: call tool=delete_everything outcome=ok")
    except ValueError:
        logger.exception("internal error while answering %s", "tools/call")
    for out in outs:
        text = out.getvalue()
        records = [line for line in text.splitlines() if not line.startswith("  ")]
        assert records == ["ERROR test-redact-forged-traceback: internal error while answering tools/call"]
        assert "\x1b" not in text and "\r" not in text
        assert "\n  Traceback (most recent call last):\n    File " in text
        forged = "INFO onemcp.audit: call tool=delete_everything outcome=ok"
        assert text.endswith(f"\n  ValueError: bad\\x1b[2J\\r\n  {forged}\n")


def test_c1_controls_and_bidi_characters_are_escaped_and_printable_keeps_lines() -> None:
    hostile = "a\x9b2J\x9d52;c;x\x9c b\u202eevil\u200b c\ufeff"
    assert one_line(hostile) == "a\\x9b2J\\x9d52;c;x\\x9c b\\u202eevil\\u200b c\\ufeff"
    assert printable("line one\nline two\x1b[8m\r") == "line one\nline two\\x1b[8m\\r"


def test_secret_names_are_credentials_not_paths_or_client_names() -> None:
    for name in ("GITHUB_TOKEN", "X-Api-Key", "Authorization", "DB_PASSWORD", "client_secret", "Cookie"):
        assert SECRET_NAME.search(name), name
    for name in ("CLIENT_NAME", "PROJECT_DIR", "MEMORY_FILE_PATH", "LOG_LEVEL", "Accept"):
        assert not SECRET_NAME.search(name), name


def test_url_credentials_up_to_the_last_at_and_tokens_as_users_and_not_principals() -> None:
    scrub = Redactor().scrub
    assert scrub("postgres://user:p@ss@host/db") == "postgres://user:***@host/db"
    assert scrub("https://ghp_abcdefghijklmnop1234@github.com/x") == "https://***@github.com/x"
    audit = "call principal=jwt:https://idp:8443#alice@corp.com tool=x"
    assert scrub(audit) == audit  # who called stays readable


def test_past_the_cap_the_oldest_rendered_secrets_give_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact_module, "MAX_SECRETS", 2)
    redactor = Redactor()
    redactor.add(["first-secret", "second-secret"])
    redactor.add(["third-secret"])
    assert redactor.scrub("first-secret second-secret third-secret") == "first-secret *** ***"


@pytest.mark.parametrize("count", [3, 400])
def test_many_secrets_are_found_where_they_start_and_mask_as_few_do(count: int) -> None:
    """From BY_PREFIX secrets the text is read once for the secrets starting in it: the same result
    as looking for each (nested and overlapping secrets, one at the very end, one cut short)."""
    values = [f"value-{i:04d}-{'abcdefgh'[i % 8] * (i % 5)}" for i in range(count)]
    values += ["nested-secret-long", "nested-secret", "tail00"]
    redactor = Redactor()
    redactor.add(values)
    assert bool(redactor._known[1]) == (len(redactor.secrets) >= redact_module.BY_PREFIX)
    text = f"a {values[1]} b nested-secret-long c {values[-4]} d nested-secre e value-0 f tail00"
    expected = text
    for secret in sorted(values, key=len, reverse=True):  # each in turn, longest first
        expected = expected.replace(secret, "***")
    assert redactor.scrub(text) == expected
    assert "nested-secre e value-0 f" in expected and expected.endswith("***")


def test_a_principals_own_values_replace_its_last_and_never_hide_who_did_it() -> None:
    redactor = Redactor()
    redactor.add(["alice-first-value-0001"], owner="key:aaaaaaaaaaaa")
    redactor.add(["bob-own-value-00000002"], owner="key:bbbbbbbbbbbb")
    assert redactor.scrub("x alice-first-value-0001 bob-own-value-00000002") == "x *** ***"
    redactor.add(["alice-second-value-002"], owner="key:aaaaaaaaaaaa")  # she changed hers: only the new one
    assert redactor.scrub("alice-first-value-0001 alice-second-value-002") == "alice-first-value-0001 ***"
    assert "bob-own-value-00000002" in redactor.secrets  # bob's stay
    # a value chosen to be someone's id masks everything but the audit line's principal field
    redactor.add(["key:bbbbbbbbbbbb"], owner="key:aaaaaaaaaaaa")
    line = "auth denied principal=key:bbbbbbbbbbbb entry=mcp target=key:bbbbbbbbbbbb"
    assert redactor.scrub(line) == "auth denied principal=key:bbbbbbbbbbbb entry=mcp target=***"
    # nor what was done: a value chosen to be a tool's name leaves the audit line's server and tool
    redactor.add(["create_pull_request"], owner="key:aaaaaaaaaaaa")
    line = "call principal=key:bbbbbbbbbbbb server=github tool=create_pull_request outcome=ok arg=create_pull_request"
    assert redactor.scrub(line) == line.removesuffix("create_pull_request") + "***"
    redactor.add([], owner="key:aaaaaaaaaaaa")  # all of hers deleted: none of hers is masked any more
    assert redactor.scrub("key:bbbbbbbbbbbb") == "key:bbbbbbbbbbbb"


def test_a_configured_secret_holding_principal_is_masked_whole() -> None:
    jdbc = "jdbc:hive2://h:10000/db;principal=hive/_HOST@EX.COM;ssl=true;trustStorePassword=hunter2hunter2"
    redactor = Redactor()
    redactor.use(HubConfig.model_validate({"mcpServers": {"hive": {"command": "x", "env": {"URL": jdbc}}}}))
    assert redactor.scrub(f"connect {jdbc} failed") == "connect *** failed"
    redactor.add(["chosen-value-0123456789"], owner="key:aaaaaaaaaaaa")
    shown = redactor.scrub(f"stderr: {jdbc} principal=chosen-value-0123456789 and chosen-value-0123456789")
    assert shown == "stderr: *** principal=chosen-value-0123456789 and ***"


def test_what_is_shown_and_logged_is_cut_once_scrubbed() -> None:
    """An upstream's 200 KB failure is shown by its first SHOWN_MAX characters, a log record's message by
    its first LOG_MAX; the cut comes after the scrub, so no secret's start is left at the edge."""
    import io

    redactor = Redactor()
    secret = "Bearer sk-live-abcdef0123456789"
    text = "x" * (redact_module.SHOWN_MAX - 10) + f" {secret} " + "y" * 300_000
    shown = redactor.shown(text)
    assert shown.startswith("x" * 100) and shown.endswith(f"... ({len(text) - len(secret) + 10} characters)")
    assert "sk-live" not in shown and len(shown) < redact_module.SHOWN_MAX + 40
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(redactor)
    logger = logging.getLogger("test-redact-cut")
    logger.handlers[:], logger.propagate = [handler], False
    logger.warning("upstream said: %s", text)
    assert len(out.getvalue()) < redact_module.LOG_MAX + 60 and "sk-live" not in out.getvalue()
