"""HTTP/1.1 over a raw socket, for tests that must send what no HTTP client would."""

from __future__ import annotations

import anyio
from anyio.abc import SocketStream


async def read_head(stream: SocketStream) -> bytes:
    """Bytes up to the end of the response head (or until the hub closes the connection)."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
        pass
    return data


async def read_response(stream: SocketStream) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length."""
    data = await read_head(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += await stream.receive()
    return status_of(head), body


async def raw_exchange(port: int, request: bytes, *, eof: bool = False) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        if eof:
            await stream.send_eof()
        return await read_head(stream)


def status_of(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0]
    assert line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), head[:200]
    return int(line.split()[1])
