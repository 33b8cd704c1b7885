"""A stand-in Redis that holds its answers: a slow Redis, made on demand, for the tests that check a call
to Redis never stalls the event loop.

Boundary: test support. `held_redis` listens on a free loopback port (threads of the test process, no
child process) and speaks just enough RESP for redis-py: the connection's setup commands (HELLO, CLIENT, PING)
are answered at once; any other command marks `received` and is answered only once `release`
is set (or after HOLD_LIMIT, so a failing test never hangs), with the reply `answers` gives for its
name (+OK by default). A caller blocked on it on the event loop would keep the loop from setting
`release`: the test sets it from the loop, after the loop did other work.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import BinaryIO

HOLD_LIMIT = 30.0  # seconds an answer is held at most (the test failed if it gets that far)
# the connection's setup, answered at once: no RESP3 here (redis-py then speaks RESP2), the rest agreed to
SETUP = {"HELLO": b"-ERR unknown command 'HELLO'\r\n", "CLIENT": b"+OK\r\n", "PING": b"+PONG\r\n"}


@dataclass
class HeldRedis:
    url: str
    answers: dict[str, bytes]
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    commands: list[str] = field(default_factory=list)  # every held command's name, in order


def _command(reader: BinaryIO) -> list[bytes] | None:
    """One RESP array of bulk strings (a command), or None at the end of the connection."""
    header = reader.readline()
    if not header.startswith(b"*"):
        return None
    parts = []
    for _ in range(int(header[1:])):
        size = int(reader.readline()[1:])
        parts.append(reader.read(size + 2)[:size])
    return parts


def _serve(conn: socket.socket, stub: HeldRedis) -> None:
    with conn, conn.makefile("rb") as reader:
        while (command := _command(reader)) is not None:
            name = command[0].decode().upper()
            if name not in SETUP:
                stub.commands.append(name)
                stub.received.set()
                stub.release.wait(HOLD_LIMIT)
            with suppress(OSError):
                conn.sendall(SETUP.get(name) or stub.answers.get(name, b"+OK\r\n"))


@contextmanager
def held_redis(answers: dict[str, bytes] | None = None) -> Iterator[HeldRedis]:
    """A held stand-in Redis (see the module's docstring); yields it, its `url` to connect to."""
    listener = socket.create_server(("127.0.0.1", 0))
    stub = HeldRedis(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", answers or {})

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=_serve, args=(conn, stub), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield stub
    finally:
        stub.release.set()
        listener.close()
        acceptor.join(5)
