"""A small blocking HTTP/1.1 client for the command line: one origin, keep-alive, streamed bodies.

Owns bytes on a socket: writing a request, reading the status line and headers, and the body as
it arrives (Content-Length, chunked, or until the server closes). No redirects, proxies,
compression or HTTP/2; interim 1xx responses are skipped. It exists because `http.client` imports
the `email` package and `ssl` (about 20 ms, a fifth of an `onemcp run`); `ssl` is imported here
only for https. What the bytes mean is `rpc`'s.
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator

from onemcp.protocol.headers import sendable

MAX_HEAD_LINE = 65536
MAX_HEADERS = 200


class HubHttpError(Exception):
    """Connecting, sending or reading failed, or the answer was not HTTP/1.1."""


class ConnectionRefused(HubHttpError):
    """Nothing accepted the connection (no server there, or it is not reachable)."""


class Response:
    """Status, headers (lower-case names) and a body read on demand."""

    def __init__(self, conn: Connection, status: int, headers: dict[str, str], body: io.BufferedReader) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._body = body
        self._done = False
        length = headers.get("content-length")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._length = int(length) if length is not None and length.strip().isdigit() and not self._chunked else None
        if status in (204, 304) or (self._length == 0 and not self._chunked):
            self._length = 0

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives; the connection is reusable only once this is exhausted."""
        try:
            if self._chunked:
                yield from self._chunked_body()
            elif self._length is not None:
                left = self._length
                while left:
                    data = self._body.read1(min(left, 65536))
                    if not data:
                        raise HubHttpError("the connection closed in the middle of the body")
                    left -= len(data)
                    yield data
            else:
                while data := self._body.read1(65536):
                    yield data
                self._conn.reusable = False
        except OSError as exc:
            self._conn.close()
            raise HubHttpError(f"reading the body failed: {exc}") from None
        self._done = True
        if self._conn.response is self:
            self._conn.response = None

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """The body line by line (without line ends), for text/event-stream."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r")
        if pending:
            yield pending.rstrip(b"\r")

    def _chunked_body(self) -> Iterator[bytes]:
        while True:
            size_line = self._body.readline(MAX_HEAD_LINE)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HubHttpError(f"bad chunk size line {size_line[:40]!r}") from None
            if size == 0:
                while self._body.readline(MAX_HEAD_LINE).strip():
                    pass  # trailers
                return
            data = self._body.read(size)
            if len(data) < size:
                raise HubHttpError("the connection closed in the middle of a chunk")
            self._body.readline(MAX_HEAD_LINE)
            yield data


class Connection:
    """Requests to one origin over one socket, reconnecting when the server closed it."""

    def __init__(self, host: str, port: int, *, tls: bool = False, timeout: float = 300.0) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.reusable = False
        self.response: Response | None = None
        self._sock: socket.socket | None = None
        self._file: io.BufferedReader | None = None

    def request(self, verb: str, target: str, headers: dict[str, str], body: bytes | None = None) -> Response:
        if self.response is not None:  # the previous body was not read to its end: unusable
            self.close()
        reused = self._sock is not None and self.reusable
        if not reused:
            self.close()
            self._connect()
        try:
            response = self._exchange(verb, target, headers, body)
        except HubHttpError:
            self.close()
            if not reused:
                raise
            self._connect()  # the server closed the kept-alive socket in between: one fresh try
            try:
                response = self._exchange(verb, target, headers, body)
            except HubHttpError:
                self.close()
                raise
        self.response = response
        return response

    def _exchange(self, verb: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        self._send(verb, target, headers, body)
        return self._read_head()

    def close(self) -> None:
        for closable in (self._file, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._file = self._sock = self.response = None
        self.reusable = False

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConnectionRefused(exc.strerror or str(exc) or type(exc).__name__) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            import ssl

            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise HubHttpError(f"TLS with {self.host} failed: {exc}") from None
        self._sock = sock
        self._file = sock.makefile("rb")
        self.reusable = True

    def _send(self, verb: str, target: str, headers: dict[str, str], body: bytes | None) -> None:
        assert self._sock is not None
        host = self.host if ":" not in self.host else f"[{self.host}]"
        lines = [f"{verb} {target} HTTP/1.1", f"host: {host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"content-length: {len(body)}")
        for name, value in (("request target", target), *headers.items()):  # a line break would end the line
            if not sendable(value):  # (the hub's rule for a header value as written)
                raise HubHttpError(f"the {name} holds characters HTTP cannot carry")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self._sock.sendall(head + (body or b""))
        except OSError as exc:
            raise HubHttpError(f"sending failed: {exc}") from None

    def _read_head(self) -> Response:
        assert self._file is not None
        try:
            while True:
                status_line = self._file.readline(MAX_HEAD_LINE)
                if not status_line:
                    raise HubHttpError("the server closed the connection without answering")
                parts = status_line.decode("latin-1").split(None, 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                    raise HubHttpError(f"not an HTTP/1.1 status line: {status_line[:60]!r}")
                headers: dict[str, str] = {}
                for _ in range(MAX_HEADERS):
                    line = self._file.readline(MAX_HEAD_LINE).decode("latin-1").strip()
                    if not line:
                        break
                    name, _, value = line.partition(":")
                    key = name.strip().lower()
                    headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
                status = int(parts[1])
                if 100 <= status < 200:
                    continue  # interim (100 Continue): the real answer follows
                if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
                    self.reusable = False
                return Response(self, status, headers, self._file)
        except OSError as exc:
            raise HubHttpError(f"reading the answer failed: {exc}") from None
