"""DNS-rebinding guard: which Origin and Host headers reach the hub."""

from __future__ import annotations

import logging

import pytest

from onemcp.config.values import origin_of
from onemcp.http.guard import Guard, is_loopback


def loopback_guard(origins: list[str] | None = None, hosts: list[str] | None = None) -> Guard:
    return Guard("127.0.0.1", origins or [], hosts or [])


# ------------------------------------------------------------------------ origin
def test_missing_origin_is_allowed() -> None:
    assert loopback_guard().origin_ok(None)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost",
        "http://localhost:3000",
        "https://localhost:3000/",
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://[::1]:3000",
        "HTTP://LOCALHOST:3000",
    ],
)
def test_loopback_origins_are_allowed(origin: str) -> None:
    assert loopback_guard().origin_ok(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://localhost.evil.example",
        "http://evil.example:3050",
        "null",
        "file://",
        "chrome-extension://abcdef",
        "ftp://localhost",
        "",
    ],
)
def test_foreign_origins_are_rejected(origin: str) -> None:
    assert not loopback_guard().origin_ok(origin)


def test_hostname_that_merely_starts_with_127_is_not_loopback_origin() -> None:
    assert not loopback_guard().origin_ok("http://127.0.0.1.evil.example:3050")


def test_allowed_origins_are_exact_and_case_insensitive() -> None:
    guard = loopback_guard(origins=["https://App.Example/"])
    assert guard.origin_ok("https://app.example")
    assert guard.origin_ok("https://app.example/")
    assert not guard.origin_ok("https://app.example:8443")
    assert not guard.origin_ok("http://app.example")
    assert not guard.origin_ok("https://other.example")


def test_wildcard_origin_allows_everything() -> None:
    guard = loopback_guard(origins=["*"])
    assert guard.origin_ok("https://anything.example")
    assert guard.origin_ok("null")


def test_origin_is_checked_even_on_non_loopback_bind() -> None:
    guard = Guard("0.0.0.0", [], [])
    assert not guard.origin_ok("https://evil.example")
    assert guard.origin_ok("http://localhost:3000")


# -------------------------------------------------------------------------- host
@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:3050",
        "LOCALHOST:3050",
        "127.0.0.1",
        "127.0.0.1:3050",
        "127.5.6.7:1",
        "[::1]",
        "[::1]:3050",
        "::1",
    ],
)
def test_loopback_hosts_are_allowed_on_loopback_bind(host: str) -> None:
    assert loopback_guard().host_ok(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:3050", "10.0.0.5:3050", "[::2]:3050", "", None])
def test_foreign_or_missing_hosts_are_rejected_on_loopback_bind(host: str | None) -> None:
    assert not loopback_guard().host_ok(host)


def test_hostname_that_merely_starts_with_127_is_not_loopback_host() -> None:
    assert not loopback_guard().host_ok("127.attacker.example:3050")


@pytest.mark.parametrize("bind", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"])
def test_loopback_binds_check_the_host(bind: str) -> None:
    guard = Guard(bind, [], [])
    assert guard.check_host
    assert not guard.host_ok("evil.example")


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.168.1.10", "hub.internal"])
def test_non_loopback_bind_disables_host_check(bind: str) -> None:
    guard = Guard(bind, [], [])
    assert not guard.check_host
    assert guard.host_ok("evil.example")
    assert guard.host_ok("hub.internal:3050")
    assert guard.host_ok(None)


def test_allowed_hosts_with_and_without_port() -> None:
    guard = loopback_guard(hosts=["Hub.Local", "proxy.example:8443"])
    assert guard.host_ok("hub.local")
    assert guard.host_ok("hub.local:3050")
    assert guard.host_ok("proxy.example:8443")
    assert not guard.host_ok("proxy.example:9999")
    assert not guard.host_ok("other.local")


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert is_loopback("localhost")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("")


def test_the_hubs_own_public_origin_is_allowed() -> None:
    """A browser on the hub's own pages (console, a user's pages) behind its public name sends that
    origin on every change: allowed without listing it; another origin, scheme or port is not."""
    guard = Guard("0.0.0.0", [], [], "https://Hub.Example/prefix/mcp")
    assert guard.origin_ok("https://hub.example")
    assert not guard.origin_ok("http://hub.example")
    assert not guard.origin_ok("https://hub.example:8443")
    assert not guard.origin_ok("https://evil.example")
    assert not Guard("0.0.0.0", [], []).origin_ok("https://hub.example")


@pytest.mark.parametrize(
    ("public", "origin"),
    [
        ("https://hub.example:443/mcp", "https://hub.example"),
        ("http://hub.example:80", "http://hub.example"),
        ("http://hub.example:8080/x", "http://hub.example:8080"),
        ("https://user:pw@hub.example/mcp", "https://hub.example"),
        ("https://[2001:db8::1]:8443/mcp", "https://[2001:db8::1]:8443"),
        ("https://bücher.example/mcp", "https://xn--bcher-kva.example"),
    ],
)
def test_the_public_origin_is_what_browsers_send(public: str, origin: str) -> None:
    assert origin_of(public) == origin
    assert Guard("0.0.0.0", [], [], public).origin_ok(origin)


@pytest.mark.parametrize("public", ["ftp://hub.example", "hub.example", "https://", "http://[::1"])
def test_a_public_url_that_is_no_web_origin_allows_nothing_more(public: str) -> None:
    assert origin_of(public) is None


def test_a_refused_host_is_named_with_the_setting_that_allows_it(caplog: pytest.LogCaptureFixture) -> None:
    """Trial s39-h16: behind nginx with a name not in allowedHosts every request got 421 "Invalid Host
    header" and the log said nothing: the refusal names the host (cut, control characters shown as ?)
    and `allowedHosts`, and the log warns once per host."""
    guard = loopback_guard(hosts=["hub.internal:3050"])
    with caplog.at_level(logging.WARNING, logger="onemcp.http.guard"):
        for _ in range(3):
            assert not guard.host_ok("hub.internal:8443")
        assert guard.host_refusal("hub.internal:8443") == (
            "Invalid Host header 'hub.internal:8443': a hub bound to loopback serves another host name only when "
            'it is listed in onemcp.allowedHosts (add "hub.internal:8443" there)'
        )
        odd = guard.host_refusal("evil\x1b[31m" + "x" * 300)
        assert odd.startswith("Invalid Host header 'evil?[31mxxx") and len(odd) < 400, odd
        assert guard.host_refusal(None).startswith("Invalid Host header (none was sent)")
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "refused Host 'hub.internal:8443' (421): a hub bound to loopback serves another host name only when "
        'it is listed in onemcp.allowedHosts (add "hub.internal:8443" there)'
    ], warned


def test_a_host_checked_for_a_probe_is_not_logged_and_still_warned_of_when_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`host_allowed` (the probes, answered either way) judges as `host_ok` without a warning; a verdict
    it remembered first must not keep `host_ok` from warning once of the host it refuses."""
    guard = loopback_guard()
    with caplog.at_level(logging.WARNING, logger="onemcp.http.guard"):
        assert not guard.host_allowed("evil.example") and guard.host_allowed("127.0.0.1:9")
        assert caplog.records == []
        assert not guard.host_ok("evil.example") and not guard.host_ok("evil.example")
    assert [r.getMessage()[:30] for r in caplog.records] == ["refused Host 'evil.example' (4"]


# ------------------------------------------------------------------------ Sec-Fetch-Site
@pytest.mark.parametrize(
    ("origin", "site", "blind"),
    [
        (None, "cross-site", True),  # <img src=".../sse"> on another site
        (None, " Cross-Site ", True),
        ("https://app.example", "cross-site", False),  # judged by its Origin
        (None, "same-site", False),
        (None, "same-origin", False),
        (None, "none", False),  # typed in the address bar
        (None, None, False),  # not a browser
    ],
)
def test_a_cross_site_request_without_origin_is_told_apart(origin: str | None, site: str | None, blind: bool) -> None:
    assert Guard.blind_cross_site(origin, site) is blind
