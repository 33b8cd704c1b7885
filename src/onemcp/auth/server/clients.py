"""Who may ask the built-in authorization server for codes: client metadata, checked, and fetched.

Owns the client rules: which redirect URIs a client may register and how a requested one is
matched, RFC 7591 registration metadata validation, and Client ID Metadata Documents (a
client_id that is an https URL naming a JSON document the server fetches, bounded in time and
size, never following redirects, only from a host that resolves to public addresses, and from the
address checked, not resolving the name again). Does not own the lookup (`lookup`), storage (`store`)
or the HTTP endpoints (`app`).

Errors: `ClientMetadataError(error, description)`; `error` is an RFC 7591 §3.2.2 code
(`invalid_redirect_uri`, `invalid_client_metadata`), used verbatim in replies.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson

from onemcp.auth.server.lookup import FETCHES, Slot, addresses
from onemcp.http.fetch import FetchFailed, fetch
from onemcp.protocol.errors import echo

AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
GRANT_TYPES = ("authorization_code", "refresh_token")
LOOPBACK_IPS = ("127.0.0.1", "::1")
LOOPBACK_HOSTS = (*LOOPBACK_IPS, "localhost")
MAX_URI = 2000
MAX_REDIRECT_URIS = 20
MAX_TEXT = 500  # client_name and other free text
TEXT_FIELDS = ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version")
METADATA_LIMIT = 16 * 1024  # bytes of a client metadata document
METADATA_TIMEOUT = 5.0  # seconds for the whole fetch

log = logging.getLogger("onemcp.auth")


class ClientMetadataError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


# ---------------------------------------------------------------- redirect URIs
def redirect_uri_problem(uri: object) -> str | None:
    """Why `uri` may not be registered as a redirect URI; None when it may.

    https anywhere, or http on a loopback host (native apps, RFC 8252 §7.3); no fragment, no
    credentials. Private-use schemes (`myapp:/cb`) are refused.
    """
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        return "redirect URIs must be non-empty strings"
    if any(c <= " " or c in '\\"<>\x7f' for c in uri):
        return f"{uri!r} has spaces, control characters or characters a URL may not hold"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return f"{uri!r} is not a valid URL"
    if "#" in uri:
        return f"{uri!r} has a fragment"
    if "@" in parts.netloc:
        return f"{uri!r} carries credentials"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host in LOOPBACK_HOSTS:
        return None
    return f"{uri!r} must be https, or http on a loopback address"


def redirects_at_once(uri: str) -> bool:
    """May an authorization error go back to `uri` without the person's say (RFC 9700 §4.11.2)? Only to a
    loopback one, on the person's own machine: any page may register a client with an https URI of its
    own choosing (no credential needed), and a redirect there at once would make the hub an open redirector."""
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def redirect_uri_matches(registered: list[str], requested: str) -> bool:
    """Exact string match, except that a loopback IP redirect URI may name any port (RFC 8252 §7.3)."""
    if requested in registered:
        return True
    if redirect_uri_problem(requested) is not None:
        return False  # `http://evil.test\@127.0.0.1:9/cb`: a browser goes to evil.test, urlsplit to 127.0.0.1
    try:
        want = urlsplit(requested)
        if want.scheme != "http" or want.hostname not in LOOPBACK_IPS or "#" in requested:
            return False
        _ = want.port
        for uri in registered:
            have = urlsplit(uri)
            if (have.scheme, have.hostname, have.path, have.query) == ("http", want.hostname, want.path, want.query):
                return True
    except ValueError:
        return False
    return False


# ------------------------------------------------------------------ registration
def registration_metadata(doc: object) -> dict[str, Any]:
    """The client metadata to keep from an RFC 7591 registration request (defaults filled in)."""
    if not isinstance(doc, dict):
        raise ClientMetadataError("invalid_client_metadata", "the body must be a JSON object")
    uris = doc.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise ClientMetadataError("invalid_redirect_uri", "redirect_uris is required (a non-empty list)")
    if len(uris) > MAX_REDIRECT_URIS:
        raise ClientMetadataError("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect_uris")
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem is not None:
            raise ClientMetadataError("invalid_redirect_uri", problem)
    # RFC 7591 §2 defaults to client_secret_basic; MCP clients that want none say so.
    method = doc.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ClientMetadataError(
            "invalid_client_metadata", f"token_endpoint_auth_method must be one of {AUTH_METHODS}"
        )
    kept: dict[str, Any] = {"redirect_uris": list(uris), "token_endpoint_auth_method": method}
    kept.update(_common_fields(doc))
    return kept


def _common_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """grant_types, response_types, scope and the display fields, checked."""
    # The RFC's default is authorization_code alone; MCP clients expect refresh tokens, as the SDKs assume.
    grants = doc.get("grant_types", list(GRANT_TYPES))
    if not isinstance(grants, list) or "authorization_code" not in grants or not set(grants) <= set(GRANT_TYPES):
        raise ClientMetadataError(
            "invalid_client_metadata", f"grant_types must include authorization_code, within {GRANT_TYPES}"
        )
    responses = doc.get("response_types", ["code"])
    if responses != ["code"]:
        raise ClientMetadataError("invalid_client_metadata", 'response_types must be ["code"]')
    kept: dict[str, Any] = {"grant_types": list(dict.fromkeys(grants)), "response_types": ["code"]}
    scope = doc.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or len(scope) > MAX_TEXT:
            raise ClientMetadataError("invalid_client_metadata", "scope must be a space-separated string")
        kept["scope"] = scope
    app_type = doc.get("application_type")
    if app_type is not None:
        if app_type not in ("native", "web"):
            raise ClientMetadataError("invalid_client_metadata", 'application_type must be "native" or "web"')
        kept["application_type"] = app_type
    for name in TEXT_FIELDS:
        value = doc.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise ClientMetadataError("invalid_client_metadata", f"{name} must be a string of at most {MAX_TEXT}")
        kept[name] = value
    return kept


# ----------------------------------------------------- client metadata documents
def is_metadata_url(client_id: str, *, allow_insecure_loopback: bool = False) -> bool:
    """Does this client_id name a metadata document (rather than a registered client)?"""
    return client_id.startswith("https://") or (
        allow_insecure_loopback and client_id.startswith(("http://127.0.0.1:", "http://127.0.0.1/"))
    )


_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


def metadata_url_problem(url: str, *, allow_insecure_loopback: bool) -> str | None:
    """Why the server will not fetch `url` as a client metadata document; None when it will."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        return "client_id is not a valid URL"
    if parts.fragment or "#" in url or "@" in parts.netloc:
        return "a client_id URL has no fragment and no credentials"
    if parts.path in ("", "/") or any(seg in (".", "..") for seg in parts.path.split("/")):
        return "a client_id URL needs a path (without dot segments)"
    if parts.scheme == "http" and allow_insecure_loopback and host == "127.0.0.1":
        return None
    if parts.scheme != "https" or not host:
        return "a client_id URL must be https"
    if host == "localhost" or host.endswith(".localhost"):
        return "a client_id URL may not name this machine"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.fullmatch(host):  # 2130706433, 0x7f000001, 127.1, 0177.0.0.1: an IPv4 written otherwise
            return "a client_id URL names its host by name or as a dotted IPv4 address"
        return None
    if not address.is_global:  # no fetching of private addresses by IP (names are not resolved here)
        return "a client_id URL may not name a private address"
    return None


def is_public(address: str) -> bool:
    """May a metadata document be fetched from `address`? Only from one on the internet at large."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_global
    except ValueError:
        return False


async def public_address(host: str, port: int, slot: Slot, within: float) -> str | None:
    """The address to fetch from when the name `host` resolves, within `within` seconds, and only to public
    addresses (the first the resolver gives); None otherwise. The fetch connects there, not resolving the
    name again: a name that answers a public address now and an internal one a moment later stays outside."""
    found = await addresses(host, port, slot, within)
    return found[0] if found and all(is_public(a) for a in found) else None


async def fetch_metadata_document(url: str, *, allow_insecure_loopback: bool = False) -> dict[str, Any]:
    """Fetch and check the document at `url`; the client metadata to keep (token method always none)."""
    problem = metadata_url_problem(url, allow_insecure_loopback=allow_insecure_loopback)
    if problem is not None:
        raise ClientMetadataError("invalid_client", problem)
    slot = FETCHES.take()
    if slot is None:  # anyone may ask for fetches: a few at a time, hub-wide, each lookup until it returns
        raise ClientMetadataError(
            "invalid_client",
            f"this server is fetching as many client metadata documents as it will at once ({FETCHES.cap});"
            " try again shortly",
        )
    try:
        body = await _fetched(url, slot)
    finally:
        slot.release()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ClientMetadataError("invalid_client", f"{echo(url)} is not JSON") from None
    return document_metadata(url, doc)


async def _fetched(url: str, slot: Slot) -> bytes:
    shown = echo(url)  # the client_id: the caller's text, of any length
    parts = urlsplit(url)
    host = parts.hostname or ""
    began = anyio.current_time()  # METADATA_TIMEOUT bounds the resolution and the fetch together
    address: str | None = host
    if not _is_address(host):
        try:
            name = httpx.URL(url).raw_host.decode("ascii")  # as the fetch names it (Host, TLS)
        except httpx.InvalidURL:  # no DNS name, as IDNA writes one: `a\u200db.example`
            name = ""
        address = await public_address(name, parts.port or 443, slot, METADATA_TIMEOUT) if name else None
    if address is None:
        # anyone may name one (a link to /oauth/authorize): not into this hub's own network, and no
        # telling an internal name from one that does not exist
        raise ClientMetadataError("invalid_client", f"{shown} is not fetched: its host resolves to no public address")
    try:
        headers = {"accept": "application/json"}
        within = max(METADATA_TIMEOUT - (anyio.current_time() - began), 0.001)
        return await fetch(
            url, within=within, limit=METADATA_LIMIT, headers=headers, follow_redirects=False, connect_to=address
        )
    except FetchFailed as exc:
        if exc.kind == "transport":  # refused, reset, TLS: which one is the hub's business, not the caller's
            log.info("client metadata document %s could not be fetched: %s", shown, exc)
            why = "could not be fetched"
        elif exc.kind == "timeout":
            why = f"did not answer in {METADATA_TIMEOUT:g}s"
        else:
            why = {"status": "answered", "too_large": "is"}[exc.kind] + f" {echo(exc)}"
        raise ClientMetadataError("invalid_client", f"{shown} {why}") from None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True  # (one that is private was refused by `metadata_url_problem`)


def document_metadata(url: str, doc: object) -> dict[str, Any]:
    """The client metadata to keep from a fetched document, which must name itself as client_id."""
    if not isinstance(doc, dict):
        raise ClientMetadataError("invalid_client", "the client metadata document must be a JSON object")
    if doc.get("client_id") != url:
        raise ClientMetadataError("invalid_client", "the document's client_id must equal its URL")
    method = doc.get("token_endpoint_auth_method", "none")
    if method != "none":
        # No secret can be shared through a public document; key-based methods are not supported here.
        raise ClientMetadataError(
            "invalid_client", "a metadata-document client must use token_endpoint_auth_method none"
        )
    if "client_secret" in doc or "client_secret_expires_at" in doc:
        raise ClientMetadataError("invalid_client", "a client metadata document must not carry a client_secret")
    try:
        kept = registration_metadata({**doc, "token_endpoint_auth_method": "none"})
    except ClientMetadataError as exc:
        raise ClientMetadataError("invalid_client", exc.description) from None
    kept["client_id"] = url
    return kept
