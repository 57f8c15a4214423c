"""Fetching `media.url` without letting callers reach our own network (SSRF).

Addresses are judged by allow-list: only global unicast addresses outside every block of IANA's
special-purpose address registries (and outside multicast, the deprecated site-local and
IPv4-compatible forms) are fetched. Python's `is_global` is not used: it has been wrong for
IPv4-compatible and IPv4-translated forms, site-local and some IANA blocks. An IPv6 address that
stands for an IPv4 one (IPv4-mapped, NAT64's well-known prefix) is judged as that IPv4 address.

The host is resolved once and every address it resolves to is checked; the connection then goes
to the checked address itself (the name only travels as the Host header and as TLS SNI, so
certificates are still verified against it). Each redirect is checked the same way. One deadline
(`MEDIA_FETCH_TIMEOUT_SECONDS`) covers resolving, connecting, headers, body and every redirect,
so a server that trickles bytes cannot hold a request longer. Every refusal happens before any
connection to the refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

from gateway.core.errors import ApiError

MAX_REDIRECTS = 5
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_net = ipaddress.ip_network

# IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry), every entry, also those
# marked globally reachable (anycast services, AS112): no media server lives there. Plus multicast.
SPECIAL_IPV4 = [
    _net(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata endpoints)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, 192.0.0.8 dummy, NAT64 discovery…)
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # direct delegation AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 (limited broadcast)
    )
]
# Global unicast IPv6 is 2000::/3; everything outside it (loopback, unspecified, ::/96
# IPv4-compatible, ::ffff:0:0:0/96 IPv4-translated, 100::/64 discard, fc00::/7 unique-local,
# fec0::/10 site-local, fe80::/10 link-local, ff00::/8 multicast) is refused by that alone.
GLOBAL_UNICAST_IPV6 = _net("2000::/3")
# IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry) inside 2000::/3.
SPECIAL_IPV6 = [
    _net(n)
    for n in (
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48,
        # AMT 2001:3::/32, AS112 2001:4:112::/48, ORCHID 2001:10::/28 and 2001:20::/28, drone
        # remote ID 2001:30::/28, the anycast services in 2001:1::/48
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4
        "2620:4f:8000::/48",  # direct delegation AS112
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing SIDs
    )
]
# IPv6 forms that deliver to an IPv4 address: judged as that address. NAT64's local-use
# 64:ff9b:1::/48 is not one of them (it is outside 2000::/3, so refused).
IPV4_MAPPED = _net("::ffff:0:0/96")
NAT64_WELL_KNOWN = _net("64:ff9b::/96")

# Name resolution runs on these threads: a resolver that hangs past the deadline is left behind
# without holding up the request (asyncio.run would wait for its own default executor).
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="media-fetch-dns")


class FetchRefused(ApiError):
    """A `media.url` that is not fetched. A 422 by default: the request is well-formed, the URL is
    not one the gateway fetches (or could not fetch)."""

    def __init__(self, code: str, message: str, *, status: int = 422) -> None:
        super().__init__(message, code=code, status=status)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    filename: str


def address_forbidden(address: IPAddress) -> bool:
    """True for every address a URL from outside must not reach: anything but public unicast,
    unless an operator allowed its network (`MEDIA_FETCH_ALLOWED_NETWORKS`)."""
    allowed = [_net(n) for n in settings.MEDIA_FETCH_ALLOWED_NETWORKS]
    if any(address in network for network in allowed if network.version == address.version):
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in network for network in SPECIAL_IPV4)
    if address in IPV4_MAPPED or address in NAT64_WELL_KNOWN:
        return address_forbidden(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address not in GLOBAL_UNICAST_IPV6:
        return True
    return any(address in network for network in SPECIAL_IPV6)


async def resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.run_in_executor(
            _resolver, lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        )
    except (OSError, UnicodeError):
        raise FetchRefused("url_unresolvable", f"{host} does not resolve.") from None
    return list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )


async def _checked_target(url: str) -> tuple[str, str, str]:
    """The URL to connect to (with the checked address in place of the name), the Host header and
    the TLS server name."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:  # e.g. "http://[x/": a bracket that is no IPv6 address
        raise FetchRefused("url_invalid", "The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise FetchRefused("url_scheme", "Only http and https URLs can be fetched.")
    if parts.username or parts.password:
        raise FetchRefused("url_credentials", "URLs with credentials are not fetched.")
    host = parts.hostname
    if not host:
        raise FetchRefused("url_invalid", "The URL has no host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not addresses or any(address_forbidden(a) for a in addresses):
        raise FetchRefused("url_forbidden", f"{host} resolves to an address that is not public.")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return pinned, host_header, host


def fetch(url: str, *, max_bytes: int) -> Fetched:
    """GET `url` (following checked redirects) and return its body, at most `max_bytes`, all
    within `MEDIA_FETCH_TIMEOUT_SECONDS`. Raises FetchRefused."""
    seconds = settings.MEDIA_FETCH_TIMEOUT_SECONDS
    try:
        return asyncio.run(asyncio.wait_for(_fetch(url, max_bytes), seconds))
    except TimeoutError:
        raise FetchRefused(
            "url_timeout", f"The URL took longer than {seconds} s to download."
        ) from None


async def _fetch(url: str, max_bytes: int) -> Fetched:
    timeout = httpx.Timeout(None, connect=5.0)  # the whole fetch has one deadline (above)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            pinned, host_header, server_name = await _checked_target(url)
            try:
                async with client.stream(
                    "GET",
                    pinned,
                    headers={"Host": host_header, "User-Agent": "whatsapp-gateway"},
                    extensions={"sni_hostname": server_name},
                ) as response:
                    if response.is_redirect:
                        url = _redirected(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(
                            "url_fetch_failed", f"The URL answered {response.status_code}."
                        )
                    return await _read(response, url, max_bytes)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is not an HTTPError
                raise FetchRefused(
                    "url_fetch_failed", f"The URL could not be fetched ({type(exc).__name__})."
                ) from None
    raise FetchRefused("url_fetch_failed", f"More than {MAX_REDIRECTS} redirects.")


def _redirected(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError:
        raise FetchRefused("url_invalid", "A redirect went to an invalid URL.") from None


async def _read(response: httpx.Response, url: str, max_bytes: int) -> Fetched:
    too_large = FetchRefused(
        "payload_too_large", f"The file is larger than {max_bytes} bytes.", status=413
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    return Fetched(b"".join(chunks), content_type, urlsplit(url).path.rsplit("/", 1)[-1])
