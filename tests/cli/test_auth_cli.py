"""`onemcp auth key ...` and the refusal to serve a network address without authentication."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.auth.principal import InvalidToken
from onemcp.cli.main import main


def test_empty_key_and_secret_listings_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """h4: `auth key list` and `auth secret list` with nothing stored printed nothing at all (exit 0), where
    `mcp list`, `preset list` and `auth upstream list` say there is none: they now say so, and how to make one."""
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    assert main(["auth", "key", "list"]) == 0
    assert capsys.readouterr().out == "no API keys (`onemcp auth key create --name N` makes one)\n"
    assert main(["auth", "secret", "list"]) == 0
    said = "no ${user:NAME} values stored (`onemcp auth secret set PRINCIPAL NAME` stores one)\n"
    assert capsys.readouterr().out == said


@pytest.mark.parametrize(("line", "stored"), [("tok-en\r\n", "tok-en"), ("tok en", "tok en"), ("tøken\n", "tøken")])
def test_secret_set_takes_one_line_without_its_ending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, stored: str
) -> None:
    # a value piped from a file written on Windows ended in "\r", kept in the value: a token that never worked
    from onemcp.upstream.user_secrets import UserSecrets

    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(line))
    assert main(["auth", "secret", "set", "key:abc", "GH_TOKEN"]) == 0
    store = UserSecrets(tmp_path)
    try:
        assert store.values("key:abc") == {"GH_TOKEN": stored}
    finally:
        store.close()


@pytest.mark.parametrize("line", ["to\rken\n", "tok\ten", "tok\x00en", "tok\x1b[2Jen"])
def test_secret_set_refuses_a_control_character(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(line))
    assert main(["auth", "secret", "set", "key:abc", "GH_TOKEN"]) == 2
    assert "control character" in capsys.readouterr().err
    assert not (tmp_path / "user-secrets.db").exists()


@pytest.mark.parametrize("name", ["TRACKER_TOKEN", "GH_TOKEN"])
def test_secret_set_refuses_non_ascii_for_a_name_that_fills_a_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """An HTTP header carries ASCII only: a non-ASCII value stored for one could only fail its user's calls.
    An env value may hold it (GH_TOKEN goes into a process's environment only)."""
    from onemcp.upstream.user_secrets import UserSecrets

    servers = {
        "tracker": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${user:TRACKER_TOKEN}"}},
        "gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "${user:GH_TOKEN}"}},
    }
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("t\u00f8ken\n"))
    header = name == "TRACKER_TOKEN"
    assert main(["auth", "secret", "set", "key:abc", name]) == (2 if header else 0)
    err = capsys.readouterr().err
    assert ("fills tracker's Authorization header: it takes ASCII characters only" in err) == header
    store = UserSecrets(tmp_path)
    try:
        assert store.values("key:abc") == ({} if header else {name: "t\u00f8ken"})
    finally:
        store.close()


def test_key_create_list_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    assert main(["auth", "key", "create", "--name", "ci", "--scope", "server:git", "--expires", "2d"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("omk_")
    store = KeyStore(tmp_path / "keys.db")
    principal = anyio.run(store.verify, key)
    assert principal is not None and principal.scopes == frozenset({"server:git"}) and principal.expires
    assert main(["auth", "key", "list"]) == 0
    listing = capsys.readouterr().out
    secret = key.split("_", 2)[2]  # omk_<id>_<secret>; the secret is url-safe base64 and may hold "_" itself
    assert "ci" in listing and "active" in listing and secret not in listing  # never the secret
    key_id = key.split("_")[1]
    assert main(["auth", "key", "revoke", key_id]) == 0
    with pytest.raises(InvalidToken):
        anyio.run(store.verify, key)
    assert main(["auth", "key", "revoke", key_id]) == 1
    assert main(["auth", "key", "create", "--expires", "soon"]) == 2
    for never_usable in ("0s", "99999999999999999w", "101000d"):  # already expired, or past any date
        assert main(["auth", "key", "create", "--expires", never_usable]) == 2
    assert main(["auth", "key", "list"]) == 0  # and the listing still reads every key


def test_key_scopes_and_roles_are_checked_when_the_key_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    roles = {"viewer": {"scopes": ["operator"]}, "dev": {"inherits": ["viewer"], "scopes": ["mcp"]}}
    (tmp_path / "mcp.json").write_text(json.dumps({"onemcp": {"auth": {"apiKeys": True, "roles": roles}}}))
    assert main(["auth", "key", "create", "--role", "dev", "--scope", "tag:ci"]) == 0
    key = capsys.readouterr().out.strip()
    principal = anyio.run(KeyStore(tmp_path / "keys.db").verify, key)
    assert principal is not None and principal.scopes == frozenset({"role:dev", "tag:ci"})  # the gate expands it
    assert main(["auth", "key", "create", "--role", "admin"]) == 2
    assert "--role 'admin': no such role in onemcp.auth.roles (roles: viewer, dev)" in capsys.readouterr().err
    assert main(["auth", "key", "create", "--scope", "server"]) == 2  # a typo of server:<name>
    assert "--scope unknown scope 'server'" in capsys.readouterr().err
    assert len(KeyStore(tmp_path / "keys.db").list()) == 1  # nothing made by the refused ones


def test_a_scope_naming_nothing_in_the_config_is_said_when_the_key_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Made (the server may come later), but not silently: a typo would make a key that sees nothing."""
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    servers = {"git": {"command": "git-mcp", "tags": ["code"]}}
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": servers, "onemcp": {"auth": {"apiKeys": True}}}))
    assert (
        main(["auth", "key", "create", "--scope", "server:git", "--scope", "tool:git/log", "--scope", "tag:code"]) == 0
    )
    assert "warning" not in capsys.readouterr().err
    assert (
        main(["auth", "key", "create", "--scope", "server:gti", "--scope", "tool:gti/log", "--scope", "tag:cod"]) == 0
    )
    said = capsys.readouterr().err
    assert "--scope server:gti: no server 'gti' in the config yet" in said
    assert "--scope tool:gti/log: no server 'gti'" in said and "--scope tag:cod: no tag of any server 'cod'" in said
    assert len(KeyStore(tmp_path / "keys.db").list()) == 2


@pytest.mark.parametrize(
    "hub", [None, {}, {"auth": {"jwt": {"jwksUrl": "https://idp.example/jwks.json", "issuer": "https://idp.example"}}}]
)
def test_a_key_made_for_a_hub_that_asks_for_none_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], hub: dict[str, object] | None
) -> None:
    """Made (the operator may turn keys on next), but not silently: with no `auth.apiKeys` (no config yet,
    none, or JWT only) the hub asks no client for it, and a key must not read as protection."""
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    if hub is not None:
        (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {}, "onemcp": hub}))
    assert main(["auth", "key", "create"]) == 0
    said = capsys.readouterr().err
    assert "does not turn API keys on, so the hub asks no client for this key" in said, said
    assert '"onemcp": {"auth": {"apiKeys": true}}' in said and "onemcp restart" in said
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {}, "onemcp": {"auth": {"apiKeys": True}}}))
    assert main(["auth", "key", "create"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert len(KeyStore(tmp_path / "keys.db").list()) == 2


def test_serving_a_network_address_without_auth_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"mcpServers": {}}')
    done = subprocess.run(
        [sys.executable, "-m", "onemcp", "serve", "--config", str(config), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no authentication" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["create", "--name", "ci"], ["list"], ["revoke", "0123456789ab"]])
def test_a_key_command_whose_redis_cannot_be_reached_says_so_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Trial s39-h16: "onemcp: cannot use the API key store (Redis) cannot be reached: Error 111 ..." (two
    sentences run together: the CLI's "cannot use" before the store's own "cannot be reached")."""
    with socket.socket() as free:  # a port nobody listens on: refused at once
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    doc = {"mcpServers": {}, "onemcp": {"sessionStore": f"redis://127.0.0.1:{port}/0", "auth": {"apiKeys": True}}}
    (tmp_path / "mcp.json").write_text(json.dumps(doc))
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    assert main(["auth", "key", *argv]) == 1
    said = capsys.readouterr().err
    refused = f"Error 111 connecting to 127.0.0.1:{port}. Connection refused."
    assert said == f"onemcp: cannot use the API key store (Redis): {refused}\n", said
