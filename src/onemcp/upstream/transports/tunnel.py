"""The forward proxy an upstream's HTTP connections go through, from the environment, and its tunnel.

Owns: which proxy (if any) serves an upstream URL, read as curl, httpx and the SDK's client read it:
`HTTPS_PROXY` for an `https` upstream, `HTTP_PROXY` for an `http` one (lower case too), `NO_PROXY`
(host names, domain suffixes, `*`) to go direct; a loopback upstream (localhost, 127.0.0.0/8, ::1)
always goes direct, as in Go's ProxyFromEnvironment. An `http` upstream's requests go to the proxy in
absolute form; an `https` one's go through a `CONNECT` tunnel (opened here, before TLS). Only `http://`
proxies, with optional user:password (sent as Basic `Proxy-Authorization`). Does not own the HTTP
exchange (h1.py).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from onemcp.observability.redact import display_url

CONNECT_HEAD_MAX = 16 * 1024  # of the proxy's answer to CONNECT


class ProxyError(ValueError):
    """The proxy in the environment cannot be used (its URL), said with the variable's name."""


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header's value

    @property
    def origin(self) -> str:
        return f"{self.host}:{self.port}"


def proxy_for(scheme: str, host: str) -> Proxy | None:
    """The proxy the environment gives for `scheme://host`, or None (go direct)."""
    if _loopback(host):
        return None
    found = urllib.request.getproxies_environment()
    url = found.get(scheme)
    if not url or _bypassed(host, found.get("no", "")):
        return None
    name = f"{scheme.upper()}_PROXY"
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = parts.port or 80
    except ValueError:
        raise ProxyError(f"{name} is not a URL: {display_url(url)}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ProxyError(f"{name} must be an http:// proxy (the hub speaks plain HTTP to it): {display_url(url)}")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(parts.hostname, port, authorization)


def _bypassed(host: str, no_proxy: str) -> bool:
    """Is `host` one that NO_PROXY names (itself, or a domain it is under; `*`: every host)?"""
    host = host.lower().strip("[]")
    for entry in no_proxy.split(","):
        name = entry.strip().lower()
        if name.startswith("[") and "]" in name:
            name = name[1 : name.index("]")]
        elif name.count(":") == 1:
            name = name.partition(":")[0]  # a port: any port
        name = name.lstrip("*").lstrip(".")
        if entry.strip() == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


def _loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def open_tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connected socket to `host:port` through `proxy` (its CONNECT answered 2xx), ready for TLS.

    Raises OSError (ConnectionError) saying what the proxy answered; the caller bounds the time."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    if not infos:
        raise ConnectionError(f"the proxy {proxy.origin} does not resolve")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        name = host if ":" in host else host.encode("idna").decode()
        authority = f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
        if proxy.authorization is not None:
            head += f"proxy-authorization: {proxy.authorization}\r\n"
        await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:  # nothing follows the head before our TLS hello: no overread
            data = await loop.sock_recv(sock, 1)
            if not data or len(answer) >= CONNECT_HEAD_MAX:
                raise ConnectionError(f"the proxy {proxy.origin} closed the tunnel before answering CONNECT")
            answer += data
        status = answer.split(b"\r\n", 1)[0].decode("latin-1")
        code = status.split(" ", 2)[1] if status.count(" ") >= 1 else ""
        if not (code.isdigit() and 200 <= int(code) < 300):
            raise ConnectionError(f"the proxy {proxy.origin} refused CONNECT {authority}: {status.strip()}")
    except BaseException:
        sock.close()
        raise
    return sock
