"""The address a hub listens on: taken (bound, not listened on), or why not."""

from __future__ import annotations

import socket
from pathlib import Path

from onemcp.cli.address import exposed_starter, in_use, take, unauthenticated, unbracketed


def test_a_free_address_is_bound_not_listened_on_and_kept_from_children(tmp_path: Path) -> None:
    taken = take("127.0.0.1", 0, tmp_path / "mcp.json")
    assert isinstance(taken, socket.socket)
    with taken:
        assert taken.getsockname()[1] > 0 and not taken.get_inheritable()
        with socket.socket() as probe:  # bound only: nothing accepts yet
            assert probe.connect_ex(taken.getsockname()) != 0


def test_a_busy_port_says_another_program_has_it(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        said = take("127.0.0.1", port, tmp_path / "mcp.json")
    assert said == (
        f"cannot bind 127.0.0.1:{port}: Address already in use; "
        "another program listens there: choose another --port (--port 0 takes a free one)"
    )
    assert not (tmp_path / "mcp.json").exists()


def test_a_mistyped_host_is_named() -> None:
    said = take("no such host", 0, Path("/nonexistent/mcp.json"))
    assert isinstance(said, str) and said.startswith("cannot bind --host 'no such host': not an address"), said


def test_a_bracketed_address_is_the_address() -> None:
    assert unbracketed("[::1]") == "::1" and unbracketed("127.0.0.1") == "127.0.0.1"


def test_no_authentication_is_for_loopback_addresses_only() -> None:
    assert unauthenticated("127.0.0.1", False) is None and unauthenticated("[::1]", False) is None
    assert unauthenticated("0.0.0.0", True) is None  # a hub with auth
    assert unauthenticated("0.0.0.0", False, override="--flag") == (
        "refusing to serve 0.0.0.0 with no authentication: anyone who can reach it could run your tools. "
        "Configure onemcp.auth (apiKeys, jwt or oauth), bind 127.0.0.1, or pass --flag."
    )
    said = unauthenticated("0.0.0.0", False)  # `start` has no such flag: none is suggested
    assert said is not None and said.endswith("Configure onemcp.auth (apiKeys, jwt or oauth) or bind 127.0.0.1.")


def test_the_starter_config_on_an_open_address_is_refused_only_when_it_would_be_written(tmp_path: Path) -> None:
    missing = tmp_path / "mcp.json"
    said = exposed_starter(missing, None, "0.0.0.0", None)
    assert said is not None and said.endswith("the starter one has no authentication: nothing was written.")
    assert exposed_starter(missing, None, "127.0.0.1", None) is None
    assert exposed_starter(missing, str(missing), "0.0.0.0", None) is None  # named: refused as missing instead
    missing.write_text("{}")
    assert exposed_starter(missing, None, "0.0.0.0", None) is None  # its own auth decides


def test_in_use_says_whether_some_process_holds_the_port() -> None:
    """What `start` asks when its hub exited at start: was the port taken since it was checked?"""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert in_use("127.0.0.1", port)
    assert not in_use("127.0.0.1", port)  # let go: free again (SO_REUSEADDR, as `take` binds)
