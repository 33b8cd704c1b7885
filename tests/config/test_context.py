"""Template contexts on the wire: the project of a directory, the header, its signature and its age."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from onemcp.config.context import (
    HEADER,
    MAX_HEADER,
    SIGNATURE_HEADER,
    ContextError,
    decode,
    encode,
    ensure_secret,
    local_signer,
    project,
    secret_path,
)


def test_the_project_of_a_git_checkout(tmp_path: Path) -> None:
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/feature/x\n")
    (git / "refs" / "heads" / "feature").mkdir()
    (git / "refs" / "heads" / "feature" / "x").write_text("abc123" * 6 + "abcd\n")
    (git / "config").write_text('[core]\n\tbare = false\n[remote "origin"]\n\turl = git@example.com:me/repo.git\n')
    inner = tmp_path / "repo" / "src"
    inner.mkdir()
    (tmp_path / "repo" / ".onemcprc").write_text(json.dumps({"environment": "staging", "context": {"db": "orders"}}))
    found = project(inner)
    assert found["path"] == str((tmp_path / "repo").resolve()) and found["name"] == "repo"  # the rc file's folder
    commit = "abc123" * 6 + "abcd"
    assert found["git"] == {"branch": "feature/x", "commit": commit, "remote": "git@example.com:me/repo.git"}
    assert found["environment"] == "staging" and found["custom"] == {"db": "orders"}


def test_a_plain_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_ENV", "dev")
    found = project(tmp_path)
    assert found == {"path": str(tmp_path.resolve()), "name": tmp_path.name, "environment": "dev", "custom": {}}


def test_signed_round_trip_and_refusals() -> None:
    secret = b"k" * 64
    headers = encode({"project": {"path": "/p"}}, secret)
    context, signed = decode(headers[HEADER], headers[SIGNATURE_HEADER], secret)
    assert signed and context == {"project": {"path": "/p"}}
    context, signed = decode(headers[HEADER], None, secret)
    assert not signed  # unsigned: the caller decides whether that is enough
    with pytest.raises(ContextError, match="does not verify"):
        decode(headers[HEADER], headers[SIGNATURE_HEADER], b"x" * 64)
    with pytest.raises(ContextError, match="does not verify"):
        decode(headers[HEADER], headers[SIGNATURE_HEADER], None)  # a hub without a key verifies nothing
    old = encode({"project": {}}, secret, now=time.time() - 3600)
    with pytest.raises(ContextError, match="stale"):
        decode(old[HEADER], old[SIGNATURE_HEADER], secret)


@pytest.mark.parametrize("value", ["!!!", "bnVsbA", "W10", "x" * (MAX_HEADER + 1)])
def test_malformed_headers(value: str) -> None:
    with pytest.raises(ContextError):
        decode(value, None, None)


def test_the_secret_is_made_once_and_owner_only(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    first = ensure_secret(config)
    assert ensure_secret(config) == first and len(first) >= 32
    assert stat.S_IMODE(secret_path(config).stat().st_mode) == 0o600
    signer = local_signer(config, tmp_path)
    assert signer is not None and signer.secret == first
    assert SIGNATURE_HEADER in signer.headers()
    assert local_signer(tmp_path / "elsewhere" / "mcp.json", tmp_path) is None  # no key: no context sent
    assert local_signer(None, tmp_path) is None


@pytest.mark.parametrize(
    "head",
    [
        "ref: refs/heads/../../../../secret\n",  # a path out of .git: its content would become the commit
        "ref: refs/heads/--upload-pack=touch x\nsecond line {{ 7*7 }}\n",
        "ref: refs/heads/-x\n",
    ],
)
def test_a_crafted_head_gives_no_git_context(tmp_path: Path, head: str) -> None:
    git = tmp_path / "repo" / ".git"
    git.mkdir(parents=True)
    (tmp_path / "secret").write_text("the contents of a private file\n")
    (git / "HEAD").write_text(head)
    assert "git" not in project(tmp_path / "repo") or project(tmp_path / "repo")["git"] == {}


def test_a_commit_that_is_not_a_commit_id_is_left_out(tmp_path: Path) -> None:
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("not a commit; rm -rf ~\n")
    assert project(tmp_path / "repo")["git"] == {"branch": "main"}


@pytest.mark.parametrize("branch", ["feat/\u00fcmlaut", "fix(ui)", "JIRA-1#2", "a,b", "release/v1.2"])
def test_a_branch_git_would_write_is_the_branch(tmp_path: Path, branch: str) -> None:
    git = tmp_path / "repo" / ".git"
    git.mkdir(parents=True)
    (git / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    assert project(tmp_path / "repo")["git"] == {"branch": branch}


def test_a_signature_is_good_for_ten_minutes() -> None:
    """server-behaviour.md: a signature older than 10 minutes is stale (and one made in the future past a
    minute's clock skew is not taken either)."""
    secret = b"k" * 64
    for age, good in ((540, True), (660, False), (-30, True), (-90, False)):
        headers = encode({"project": {}}, secret, now=time.time() - age)
        if good:
            assert decode(headers[HEADER], headers[SIGNATURE_HEADER], secret)[1] is True, age
        else:
            with pytest.raises(ContextError, match="stale"):
                decode(headers[HEADER], headers[SIGNATURE_HEADER], secret)
