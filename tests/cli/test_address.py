"""The address a hub listens on: taken (bound, not listened on), or why not."""

from __future__ import annotations

import socket
from pathlib import Path

from onemcp.cli.address import take, unbracketed


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
