"""Which hub and view a client command uses: flags, then `.onemcprc`, then runtime.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from onemcp.cli.serve import hub_lock
from onemcp.cli.target import (
    BadTarget,
    Endpoint,
    TargetError,
    no_hub_for,
    read_rc,
    resolve,
    view_of,
    with_exposure,
    with_view,
)
from onemcp.config.context import find_rc


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(directory))
    return directory


def write_runtime(config_dir: Path, url: str, pid: int | None = None) -> None:
    doc = {"url": url, "pid": os.getpid() if pid is None else pid, "config": str(config_dir / "mcp.json")}
    (config_dir / "runtime.json").write_text(json.dumps(doc))


def test_with_view_replaces_selectors_and_escapes_plus() -> None:
    url = with_view("http://h:1/mcp?tags=old&keep=1", {"filter": "a+b,(c and !d)"})
    assert parse_qs(urlsplit(url).query) == {"keep": ["1"], "filter": ["a+b,(c and !d)"]}
    assert "%2B" in url
    assert with_view("http://h:1/mcp", {}) == "http://h:1/mcp"
    assert view_of(url) == {"filter": "a+b,(c and !d)"}


def test_rc_file_is_found_walking_up_and_validated(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    rc = tmp_path / ".onemcprc"
    rc.write_text(json.dumps({"tags": ["x", "y"], "url": "http://h:1/mcp", "environment": "ci", "context": {"a": 1}}))
    assert find_rc(tmp_path / "a" / "b") == rc
    assert read_rc(rc) == {"url": "http://h:1/mcp", "tags": "x,y"}
    for bad, why in [("[]", "expected a JSON object"), ('{"preset": ""}', "non-empty string"),
                     ('{"preset": "a", "filter": "b"}', "at most one"), ("{", "cannot read"),
                     ('{"other": 1}', "unknown key 'other'")]:  # fmt: skip
        rc.write_text(bad)
        with pytest.raises(TargetError, match=why):
            read_rc(rc)


def test_precedence_flag_then_rc_then_runtime(config_dir: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(TargetError, match="no hub is running"):
        resolve(cwd=project)
    assert resolve(cwd=project, default_url="http://d:1/mcp")[::2] == ("http://d:1/mcp", "default")
    write_runtime(config_dir, "http://127.0.0.1:5/mcp")
    target = resolve(cwd=project)
    assert target.url == "http://127.0.0.1:5/mcp" and target.config == config_dir / "mcp.json"
    assert target.source == "runtime"
    (project / ".onemcprc").write_text(json.dumps({"url": "http://127.0.0.1:2/mcp", "preset": "dev"}))
    assert resolve(cwd=project)[::2] == ("http://127.0.0.1:2/mcp?preset=dev", "rc")
    assert resolve(cwd=project, url="http://127.0.0.1:3/mcp").source == "flag"
    assert resolve(cwd=project, view={"tags": "a", "preset": None}).url == "http://127.0.0.1:2/mcp?tags=a"
    assert resolve(cwd=project, url="http://flag:3/mcp").url == "http://flag:3/mcp?preset=dev"
    for elsewhere in ("http://rc:2/mcp", "https://attacker.example/mcp"):  # a cloned repository's file
        (project / ".onemcprc").write_text(json.dumps({"url": elsewhere}))
        with pytest.raises(TargetError, match="not on this machine"):
            resolve(cwd=project)  # the user's $ONEMCP_TOKEN would go there
        assert resolve(cwd=project, url=elsewhere).url == elsewhere  # named by the user: fine
    with pytest.raises(TargetError, match="must start with http"):
        resolve(cwd=project, url="ftp://x")


def test_a_view_flag_and_a_hub_url_choosing_another_view_are_refused(config_dir: Path, tmp_path: Path) -> None:
    """`--url .../mcp?tags=x --tags y` silently became tags=y: two views given, which was meant is a guess."""
    url = "http://127.0.0.1:3/mcp?tags=x"
    with pytest.raises(BadTarget, match=r"--tags=y and the hub URL's tags=x choose two views: give one"):
        resolve(cwd=tmp_path, url=url, view={"tags": "y"})
    with pytest.raises(BadTarget, match=r"--preset=dev and the hub URL's tags=x choose two views"):
        resolve(cwd=tmp_path, url=url, view={"preset": "dev"})
    assert resolve(cwd=tmp_path, url=url, view={"tags": "x"}).url == url  # the same view twice: one
    assert resolve(cwd=tmp_path, url=url).url == url
    (tmp_path / ".onemcprc").write_text(json.dumps({"preset": "dev"}))
    with pytest.raises(BadTarget, match=r"\.onemcprc: preset=dev and the hub URL's tags=x choose two views"):
        resolve(cwd=tmp_path, url=url)


def test_a_runtime_file_of_an_exited_hub_is_no_hub(config_dir: Path, tmp_path: Path) -> None:
    write_runtime(config_dir, "http://127.0.0.1:5/mcp", pid=2**22 + 12345)  # above the default pid_max
    with pytest.raises(TargetError, match="which has exited"):
        resolve(cwd=tmp_path)


def test_an_rc_url_that_does_not_parse_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".onemcprc").write_text(json.dumps({"url": "http://[::1"}))
    with pytest.raises(TargetError, match="does not parse"):
        resolve(cwd=tmp_path)


def test_an_endpoint_from_runtime_json_follows_the_hub_to_its_new_address(config_dir: Path) -> None:
    """A proxy outlives hub restarts: where runtime.json gave the URL, it is read again (the view kept)."""
    config = config_dir / "mcp.json"
    endpoint = Endpoint("http://127.0.0.1:5/mcp?preset=dev&exposure=search", config)
    assert not endpoint.moved()  # no runtime.json (between a stop and a start): the last address is kept
    lock = hub_lock(config)
    assert lock is not None
    try:
        write_runtime(config_dir, "http://127.0.0.1:5/mcp")
        assert not endpoint.moved()
        write_runtime(config_dir, "http://127.0.0.1:6/mcp")
        assert endpoint.moved() and endpoint.url == "http://127.0.0.1:6/mcp?preset=dev&exposure=search"
        assert not endpoint.moved()
        fixed = Endpoint("http://127.0.0.1:5/mcp")  # named by --url or .onemcprc: never moves
        assert not fixed.moved() and fixed.url == "http://127.0.0.1:5/mcp"
    finally:
        os.close(lock)
    write_runtime(config_dir, "http://127.0.0.1:7/mcp")  # a file no hub holds the lock for: not followed
    assert not endpoint.moved() and endpoint.url.startswith("http://127.0.0.1:6/")


@pytest.mark.parametrize("url", ["http://[::1/mcp", "http://127.0.0.1:99999/mcp", "ftp://127.0.0.1:6/mcp"])
def test_an_endpoint_keeps_its_address_when_runtime_json_names_a_malformed_url(config_dir: Path, url: str) -> None:
    """A hand-edited runtime.json: the proxy keeps the last address (urlsplit raised inside the proxy's task group)."""
    endpoint = Endpoint("http://127.0.0.1:5/mcp?preset=dev", config_dir / "mcp.json")
    lock = hub_lock(config_dir / "mcp.json")
    assert lock is not None
    try:
        write_runtime(config_dir, url)
        assert not endpoint.moved() and endpoint.url == "http://127.0.0.1:5/mcp?preset=dev"
    finally:
        os.close(lock)


def test_an_exposure_in_the_hub_url_is_checked_not_dropped() -> None:
    """`inspect --url 'http://h/mcp?exposure=serach' --search q` had dropped the typo unseen (the CLI asks
    for its own exposure); `proxy --url '...?exposure=search' --exposure full` had taken the flag's."""
    base = "http://127.0.0.1:3050/mcp"
    assert parse_qs(urlsplit(with_exposure(f"{base}?exposure=full&tags=a", "search")).query) == {
        "tags": ["a"],
        "exposure": ["search"],
    }
    assert with_exposure(f"{base}?exposure=serach", None) == f"{base}?exposure=serach"  # the hub says no
    with pytest.raises(BadTarget, match="exposure 'serach'; expected one of full, search, auto"):
        with_exposure(f"{base}?exposure=serach", "search")
    with pytest.raises(BadTarget, match="--exposure full and the hub URL's exposure=search disagree"):
        with_exposure(f"{base}?exposure=search", "full", flag=True)
    assert with_exposure(f"{base}?exposure=search", "search", flag=True).endswith("?exposure=search")


def test_an_endpoint_with_no_hub_yet_takes_the_first_address_its_directory_gives(config_dir: Path) -> None:
    """With no hub of the directory running, the default URL is a placeholder (never reached: it may be another
    directory's hub); the first runtime.json gives the address, even the very one the placeholder named."""
    config = config_dir / "mcp.json"
    waiting = no_hub_for(config, "http://127.0.0.1:3050/mcp")
    assert waiting.startswith(f"no hub is running for {config} (start one with `onemcp serve` or `onemcp start`);")
    assert "does not try http://127.0.0.1:3050/mcp, which may be another config directory's hub" in waiting
    endpoint = Endpoint("http://127.0.0.1:3050/mcp?tags=dev", config, waiting=waiting)
    assert not endpoint.moved() and endpoint.waiting == waiting
    lock = hub_lock(config)
    assert lock is not None
    try:
        assert no_hub_for(config, "http://d:1/mcp").startswith(
            f"the hub of {config_dir} (pid {os.getpid()}) does not say where it listens (its runtime.json is missing)"
        )
        write_runtime(config_dir, "http://127.0.0.1:3050/mcp")
        assert endpoint.moved() and endpoint.waiting is None and endpoint.url == "http://127.0.0.1:3050/mcp?tags=dev"
    finally:
        os.close(lock)
