"""Fetching `media.url` without letting callers reach our own network (SSRF).

The host is resolved once and every address it resolves to is checked (loopback, private,
link-local, shared 100.64/10, multicast, reserved, unspecified, and the IPv4-mapped, NAT64, 6to4
and Teredo forms of those); the connection then goes to the checked address itself (the name only
travels as the Host header and as TLS SNI, so certificates are still verified against it). Each
redirect is checked the same way. Size and time are limited. Every refusal happens before any
connection to the refused address.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

MAX_REDIRECTS = 5
NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    filename: str


def address_forbidden(address: IPAddress) -> bool:
    """True for every address a URL from outside must not reach."""
    allowed = [ipaddress.ip_network(n) for n in settings.MEDIA_FETCH_ALLOWED_NETWORKS]
    if any(address in network for network in allowed if network.version == address.version):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in network for network in NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_forbidden(embedded)
        if address.teredo:
            return True
    # is_global is False for private, loopback, link-local, shared (100.64/10), reserved,
    # unspecified and documentation ranges; multicast can be "global", so it is named too.
    return not address.is_global or address.is_multicast


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchRefused("url_unresolvable", f"{host} does not resolve.") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def _checked_target(url: str) -> tuple[str, str, str]:
    """The URL to connect to (with the checked address in place of the name), the Host header and
    the TLS server name."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchRefused("url_scheme", "Only http and https URLs can be fetched.")
    if parts.username or parts.password:
        raise FetchRefused("url_credentials", "URLs with credentials are not fetched.")
    host = parts.hostname
    if not host:
        raise FetchRefused("url_invalid", "The URL has no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchRefused("url_invalid", "The URL's port is invalid.") from None
    addresses = resolve(host, port)
    if not addresses or any(address_forbidden(a) for a in addresses):
        raise FetchRefused("url_forbidden", f"{host} resolves to an address that is not public.")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return pinned, host_header, host


def fetch(url: str, *, max_bytes: int) -> Fetched:
    """GET `url` (following checked redirects) and return its body, at most `max_bytes`."""
    deadline = time.monotonic() + settings.MEDIA_FETCH_TIMEOUT_SECONDS
    timeout = httpx.Timeout(settings.MEDIA_FETCH_TIMEOUT_SECONDS, connect=5.0)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            pinned, host_header, server_name = _checked_target(url)
            try:
                with client.stream(
                    "GET",
                    pinned,
                    headers={"Host": host_header, "User-Agent": "whatsapp-gateway"},
                    extensions={"sni_hostname": server_name},
                ) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(
                            "url_fetch_failed", f"The URL answered {response.status_code}."
                        )
                    return _read(response, url, max_bytes, deadline)
            except httpx.HTTPError as exc:
                raise FetchRefused(
                    "url_fetch_failed", f"The URL could not be fetched ({type(exc).__name__})."
                ) from None
    raise FetchRefused("url_fetch_failed", f"More than {MAX_REDIRECTS} redirects.")


def _read(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> Fetched:
    too_large = FetchRefused(
        "payload_too_large", f"The file is larger than {max_bytes} bytes.", status=413
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise FetchRefused("url_timeout", "The URL took too long to download.")
        chunks.append(chunk)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    return Fetched(b"".join(chunks), content_type, urlsplit(url).path.rsplit("/", 1)[-1])
